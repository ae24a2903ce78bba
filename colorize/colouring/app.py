"""The hint app (`--mode=app`): a local web page to colour a photo and steer it with colour points.

A small server of Python's standard library; the page (`app_page.html`) does the drawing. The
photo is sent once (POST /photo) and kept in memory; every change of the points asks for a
preview at most `PREVIEW_SIDE` pixels on its long side (POST /colorize), and the download asks
for the full resolution, coloured exactly as `--mode=colorize --hints` colours it: the photo's
own L kept.
"""

import collections
import dataclasses
import http.server
import io
import ipaddress
import json
import os
import re
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid

import numpy as np
from PIL import Image

from colorize.colouring import hint_points
from colorize.colouring import predict
from colorize.data import photos
from colorize.networks import inference
from colorize.networks import models

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app_page.html")
PREVIEW_SIDE = 768  # Pixels on the long side of the previews: 0.14 s on 2 CPU cores (bundled model).
KEPT_PIXELS = 4 * photos.APP_MAX_PIXELS  # Photos held in memory, at most: the least recently used is forgotten first.
KEPT_PHOTOS = 8
MAX_UPLOAD = 200 * 2**20  # Bytes of a photo.
MAX_REQUEST = 2**20  # Bytes of a colour request: 1,000 points are about 60 KB.
MIN_UPLOAD_RATE = 64 * 2**10  # Bytes per second: a body slower than this (after a minute) is dropped.
DECODES_AT_ONCE = 2  # Uploads read and decoded at once; more get 503 "busy".
COLOURINGS_WAITING = 4  # Colour requests admitted at once (one runs, the others wait); more get 503 "busy".
SOCKET_SECONDS = 60  # A client silent this long is dropped (a slow upload must not hold a thread forever).
# The page's own header: a cross-site form or fetch cannot send it without a CORS preflight, which the app refuses.
VIVIDNESS_STOPS = (0.0, 0.25, 0.5, 0.75, 1.0)  # The page's slider (docs/quality.md).
REQUEST_HEADER = "X-Colorize-App"
POINTS_FORMAT = 'a /colorize request is {"id": "<photo id>", "points": [...], "full": false}.'


class AppError(ValueError):
  """A request the app cannot serve; its message is shown on the page."""


class Busy(AppError):
  """Too many requests at once: the page retries (503)."""


@dataclasses.dataclass
class Colorizer:
  """A generator and the photos the page has opened."""

  generator: object
  variables: dict
  size: int
  multiple: int
  max_pixels: int = photos.APP_MAX_PIXELS
  photos: collections.OrderedDict = dataclasses.field(default_factory=collections.OrderedDict)  # id -> (photo, preview)
  lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)  # Guards `photos`.
  generator_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)  # One generator call at a time.
  decodes: threading.BoundedSemaphore = dataclasses.field(
    default_factory=lambda: threading.BoundedSemaphore(DECODES_AT_ONCE)
  )
  colourings: threading.BoundedSemaphore = dataclasses.field(
    default_factory=lambda: threading.BoundedSemaphore(COLOURINGS_WAITING)
  )

  def open_photo(self, data: bytes, name: str) -> dict:
    """Decodes an uploaded file as colorize does (EXIF rotation, colour profiles); its id and size."""
    with tempfile.TemporaryDirectory(prefix="colorize-app-") as folder:
      path = os.path.join(folder, "upload")  # Pillow reads the format from the bytes, not the name.
      with open(path, "wb") as f:
        f.write(data)
      try:
        photo = photos.load_photo(path, "", self.max_pixels)
      except photos.BadPhoto as error:
        raise AppError(f"{name}: {error}") from None
    photo_id = uuid.uuid4().hex
    entry = photo, preview(photo)  # The preview made once, not at every click.
    with self.lock:
      self.photos[photo_id] = entry
      forget_least_recent(self.photos, KEPT_PHOTOS, KEPT_PIXELS)
    height, width = photo.rgb.shape[:2]
    return {"id": photo_id, "width": width, "height": height, "vividness": self.generator.vividness}

  def opened(self, photo_id: str) -> tuple:
    """(photo, preview) of an open photo, now the most recently used."""
    with self.lock:  # Another upload may forget it meanwhile: look it up and mark it in one step.
      entry = self.photos.get(photo_id)
      if entry is None:
        raise AppError("this photo is no longer open on the server: open it again.")
      self.photos.move_to_end(photo_id)
      return entry

  def colorize(self, photo_id: str, points: list, full: bool, vividness=None) -> tuple:
    """(PNG bytes, seconds): the photo with the points' colours, a preview or at full resolution,
    at one of the slider's `VIVIDNESS_STOPS` (None: the model's own)."""
    if not isinstance(photo_id, str) or not isinstance(points, list):
      raise AppError(POINTS_FORMAT)
    generator = self.generator if vividness is None else self.generator.clone(vividness=slider_stop(vividness))
    photo, small = self.opened(photo_id)
    try:
      height, width = photo.rgb.shape[:2]
      user_points = hint_points.user_points(points, height, width, "the page's points")
    except hint_points.BadHints as error:
      raise AppError(str(error)) from None
    start = time.perf_counter()
    shown = photo if full else small
    shown = dataclasses.replace(shown, hints=scaled_points(user_points, photo, shown))
    with self.generator_lock:
      (result,) = predict.colorize_group(generator, self.variables, [shown], self.size, self.multiple)
    buffer = io.BytesIO()
    Image.fromarray(result).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue(), time.perf_counter() - start


def slider_stop(vividness) -> float:
  """The page's vividness, one of VIVIDNESS_STOPS (each compiles the generator once: a few seconds)."""
  if isinstance(vividness, bool) or not isinstance(vividness, (int, float)) or float(vividness) not in VIVIDNESS_STOPS:
    raise AppError(f"vividness is one of {', '.join(f'{v:g}' for v in VIVIDNESS_STOPS)}, not {vividness!r}.")
  return float(vividness)


def forget_least_recent(store: collections.OrderedDict, max_photos: int, max_pixels: int) -> None:
  """Drops the least recently used photos (the store's first) until at most `max_photos` photos of at
  most `max_pixels` pixels in all are kept; the newest is always kept."""

  def pixels():
    return sum(photo.rgb.shape[0] * photo.rgb.shape[1] for photo, _ in store.values())

  while len(store) > 1 and (len(store) > max_photos or pixels() > max_pixels):
    store.popitem(last=False)


class slot:
  """A context holding one place of a semaphore, or raising Busy at once when none is free."""

  def __init__(self, semaphore: threading.BoundedSemaphore, what: str):
    self.semaphore, self.what = semaphore, what

  def __enter__(self):
    if not self.semaphore.acquire(blocking=False):
      raise Busy(f"the app is busy {self.what}: retry in a moment.")

  def __exit__(self, *exc):
    self.semaphore.release()


def scaled_points(points: np.ndarray, photo: photos.Photo, shown: photos.Photo) -> np.ndarray:
  """Points [N, 5] in `photo`'s pixels -> in `shown`'s (a resized copy): pixel centres map to
  pixel centres, each axis by its own scale."""
  (height, width), (shown_h, shown_w) = photo.rgb.shape[:2], shown.rgb.shape[:2]
  scale_x, scale_y = shown_w / width, shown_h / height
  x, y, size, a, b = points.T
  return np.stack([(x + 0.5) * scale_x - 0.5, (y + 0.5) * scale_y - 0.5, size * min(scale_x, scale_y), a, b], -1)


def preview(photo: photos.Photo) -> photos.Photo:
  """The photo at most `PREVIEW_SIDE` pixels on its long side (alpha dropped)."""
  height, width = photo.rgb.shape[:2]
  scale = min(1.0, PREVIEW_SIDE / max(height, width))
  if scale == 1.0:
    return dataclasses.replace(photo, alpha=None)
  size = (max(1, round(width * scale)), max(1, round(height * scale)))
  return dataclasses.replace(photo, rgb=np.asarray(Image.fromarray(photo.rgb).resize(size, Image.LANCZOS)), alpha=None)


def content_length(value: str | None) -> int:
  """The body's size from a Content-Length header; AppError unless it is 1 to 12 ASCII digits."""
  if value is None or not re.fullmatch(r"[0-9]{1,12}", value.strip()):
    raise AppError("the request needs a Content-Length (a number of bytes).")
  return int(value)


def is_loopback(host: str) -> bool:
  """Whether `host` (a name or an address) is this machine only."""
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host.strip("[]")).is_loopback
  except ValueError:
    return False


def allowed_host(header: str | None, port: int) -> bool:
  """Whether a request's Host names this app: `localhost` or an IP address, with the app's port.

  A page of another site that rebinds its own domain name to this machine (DNS rebinding) sends
  that name as its Host: refusing names other than localhost stops it reading the app's answers."""
  if not header:
    return False
  parsed = urllib.parse.urlsplit("//" + header)
  try:
    host, header_port = parsed.hostname, parsed.port
  except ValueError:
    return False
  if (header_port or 80) != port or not host:  # Browsers leave out port 80.
    return False
  if host == "localhost":
    return True
  try:
    ipaddress.ip_address(host)
  except ValueError:
    return False
  return True


def handler_for(colorizer: Colorizer, page: bytes):
  """The request handler class of one app: it answers only its own page.

  Long as a whole, short in its parts: a class made per app (http.server builds one handler per
  request from a class, so the colorizer and page are bound here), whose methods are each a few lines."""

  class Handler(http.server.BaseHTTPRequestHandler):
    timeout = SOCKET_SECONDS  # Sets the socket's timeout: a stalled client is dropped, its thread freed.

    def log_message(self, *args):  # Quiet: the console shows the address and errors only.
      pass

    def send(self, status: int, body: bytes, content_type: str, headers: dict | None = None):
      self.send_response(status)
      self.send_header("Content-Type", content_type)
      self.send_header("Content-Length", str(len(body)))
      self.send_header("Cache-Control", "no-store")
      # Never inside another site's frame (clickjacking), never sniffed as another type.
      self.send_header("X-Frame-Options", "DENY")
      self.send_header("Content-Security-Policy", "frame-ancestors 'none'")
      self.send_header("X-Content-Type-Options", "nosniff")
      for name, value in (headers or {}).items():
        self.send_header(name, value)
      self.end_headers()
      self.wfile.write(body)

    def send_json(self, status: int, content: dict, headers: dict | None = None):
      self.send(status, json.dumps(content).encode(), "application/json", headers)

    def send_error(self, code, message=None, explain=None):
      """http.server's own errors (a malformed request line, an unknown method) as JSON too."""
      del explain
      self.close_connection = True
      self.send_json(code, {"error": message or http.HTTPStatus(code).phrase})

    def body(self, length: int) -> bytes:
      """The request's body, read against an overall deadline (the socket timeout bounds one
      read only: a client trickling a byte a minute would hold its thread and slot for ever)."""
      deadline = time.monotonic() + SOCKET_SECONDS + length / MIN_UPLOAD_RATE
      chunks, left = [], length
      while left:
        if time.monotonic() > deadline:
          raise TimeoutError("the request's body came too slowly")
        chunk = self.rfile.read1(min(left, 2**16))
        if not chunk:
          raise ConnectionError("the client closed the connection")
        chunks.append(chunk)
        left -= len(chunk)
      return b"".join(chunks)

    def foreign(self) -> str | None:
      """Why this request is not from the app's own page, or None."""
      if not allowed_host(self.headers.get("Host"), self.server.server_address[1]):
        return "this app answers only at its own address (http://localhost:PORT or http://127.0.0.1:PORT)."
      origin = self.headers.get("Origin")
      if origin is not None and origin != f"http://{self.headers['Host']}":
        return "this app answers only its own page, not other web sites."
      return None

    def do_GET(self):
      if why := self.foreign():
        self.send_json(403, {"error": why})
      elif self.path in ("/", "/index.html"):
        self.send(200, page, "text/html; charset=utf-8")
      else:
        self.send_json(404, {"error": f"no page at {self.path}"})

    def do_POST(self):
      try:
        self.close_connection = True  # An unread or refused body must not be read as the next request.
        if why := self.foreign():
          self.send_json(403, {"error": why})
          return
        if self.headers.get(REQUEST_HEADER) != "1":
          self.send_json(403, {"error": f"requests come from the app's page (the {REQUEST_HEADER} header)."})
          return
        length = content_length(self.headers.get("Content-Length"))
        if length > MAX_UPLOAD:
          self.send_json(413, {"error": f"the file is larger than {MAX_UPLOAD // 2**20} MB"})
          return
        if self.path == "/photo":
          with slot(colorizer.decodes, "opening other photos"):  # Before reading: bodies are large.
            name = urllib.parse.unquote(self.headers.get("X-Filename", "photo"))
            self.send_json(200, colorizer.open_photo(self.body(length), name))
        elif self.path == "/colorize":
          if self.headers.get("Content-Type", "").split(";")[0].strip() != "application/json":
            raise AppError("a /colorize request is JSON (Content-Type: application/json).")
          if length > MAX_REQUEST:
            raise AppError(f"a colour request is at most {MAX_REQUEST // 2**10} KB.")
          request = json.loads(self.body(length) or b"{}")
          if not isinstance(request, dict):
            raise AppError(POINTS_FORMAT)
          with slot(colorizer.colourings, "colouring other requests"):
            png, seconds = colorizer.colorize(
              request.get("id"), request.get("points", []), bool(request.get("full")), request.get("vividness")
            )
          self.send(200, png, "image/png", {"X-Seconds": f"{seconds:.3f}"})
        else:
          self.send_json(404, {"error": f"nothing to post at {self.path}"})
      except Busy as error:
        self.send_json(503, {"error": str(error)}, {"Retry-After": "1"})
      except (AppError, ValueError, RecursionError) as error:  # JSON and Unicode errors are ValueErrors.
        self.send_json(400, {"error": str(error) if isinstance(error, AppError) else f"a bad request ({error})"})
      except (TimeoutError, ConnectionError):
        self.close_connection = True  # The client went away or stalled: nobody to answer.
      except MemoryError:
        self.send_json(507, {"error": "not enough memory for this photo: open a smaller one (--max_pixels)."})
      except Exception as error:  # noqa: BLE001 (an XLA or other failure: the server must go on)
        traceback.print_exc(file=sys.stderr)
        self.send_json(500, {"error": f"the server could not do this ({type(error).__name__}: {error})"[:500]})

    def refuse_method(self):
      self.send_json(
        405, {"error": f"{self.command} is not served here: the app takes GET and POST."}, {"Allow": "GET, POST"}
      )

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = do_TRACE = do_CONNECT = refuse_method

  return Handler


def make_server(
  config, workdir: str, host: str = "127.0.0.1", port: int = 8000, max_pixels: int = photos.APP_MAX_PIXELS
) -> http.server.ThreadingHTTPServer:
  """The app's server for the generator of a run or a bundle (not yet serving)."""
  if not 0 <= port <= 65535:
    raise AppError(f"--port={port} is not a port: pass a number in 1..65535 (0: any free one).")
  generator, variables, _ = inference.load_generator(config, workdir)
  colorizer = Colorizer(generator, variables, config.image_size, models.input_multiple(config.model), max_pixels)
  with open(PAGE, "rb") as f:
    page = f.read()
  try:
    return http.server.ThreadingHTTPServer((host, port), handler_for(colorizer, page))
  except OSError as error:
    raise AppError(f"cannot listen on {host}:{port} ({error.strerror or error}): pass another --port.") from None


def serve(config, workdir: str, host: str, port: int, max_pixels: int = photos.APP_MAX_PIXELS) -> None:
  """The app mode: serves until Ctrl+C."""
  server = make_server(config, workdir, host, port, max_pixels)
  if not is_loopback(host):
    print(
      f"WARNING: --host={host} lets other machines of your network use this app (and read the photos opened in it); "
      "--host=127.0.0.1 keeps it to this machine.",
      file=sys.stderr,
    )
  print(f"Colorize app with {workdir}: open http://{host}:{server.server_address[1]}  (Ctrl+C stops)")
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()
