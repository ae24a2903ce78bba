"""The hint app (`--mode=app`): a local web page to colour a photo and steer it with colour points.

A small server of Python's standard library; the page (`app_page.html`) does the drawing. The
photo is sent once (POST /photo) and kept in memory; every change of the points asks for a
preview at most `PREVIEW_SIDE` pixels on its long side (POST /colorize), and the download asks
for the full resolution, coloured exactly as `--mode=colorize --hints` colours it: the photo's
own L kept.
"""

import dataclasses
import http.server
import io
import json
import os
import tempfile
import threading
import time
import urllib.parse
import uuid

import numpy as np
from PIL import Image

from colorize import hints as hints_lib
from colorize import inference
from colorize import models
from colorize import photos
from colorize import predict

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "app_page.html")
PREVIEW_SIDE = 768  # Pixels on the long side of the previews: 0.14 s on 2 CPU cores (bundled model).
KEPT_PHOTOS = 8  # Photos held in memory; the oldest is forgotten first.
MAX_UPLOAD = 200 * 2**20  # Bytes.


class AppError(ValueError):
  """A request the app cannot serve; its message is shown on the page."""


@dataclasses.dataclass
class Colorizer:
  """A generator and the photos the page has opened."""

  generator: object
  variables: dict
  size: int
  multiple: int
  takes_hints: bool
  max_pixels: int = 200_000_000
  photos: dict = dataclasses.field(default_factory=dict)  # id -> (the photo, its preview).
  lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

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
    with self.lock:
      self.photos[photo_id] = photo, preview(photo)  # The preview made once, not at every click.
      while len(self.photos) > KEPT_PHOTOS:
        self.photos.pop(next(iter(self.photos)))
    height, width = photo.rgb.shape[:2]
    return {"id": photo_id, "width": width, "height": height, "hints": self.takes_hints}

  def colorize(self, photo_id: str, points: list, full: bool) -> tuple:
    """(PNG bytes, seconds): the photo with the points' colours, a preview or at full resolution."""
    if not isinstance(photo_id, str) or not isinstance(points, list):
      raise AppError('a /colorize request is {"id": "<photo id>", "points": [...], "full": false}.')
    if photo_id not in self.photos:
      raise AppError("this photo is no longer open on the server: open it again.")
    photo, small = self.photos[photo_id]
    if points and not self.takes_hints:
      raise AppError("this model colours automatically (trained without hints): use a model trained with hints.")
    try:
      hints_lib.check_points(points, "the page's points")
      height, width = photo.rgb.shape[:2]
      user_points = hints_lib.user_points(points, height, width, "the page's points")
    except hints_lib.BadHints as error:
      raise AppError(str(error)) from None
    start = time.perf_counter()
    shown = photo if full else small
    shown = dataclasses.replace(shown, hints=scaled_points(user_points, photo, shown) if self.takes_hints else None)
    with self.lock:  # One generator call at a time.
      (result,) = predict.colorize_group(self.generator, self.variables, [shown], self.size, self.multiple)
    buffer = io.BytesIO()
    Image.fromarray(result).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue(), time.perf_counter() - start


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


def handler_for(colorizer: Colorizer, page: bytes):
  """The request handler class of one app."""

  class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # Quiet: the console shows the address and errors only.
      pass

    def send(self, status: int, body: bytes, content_type: str, headers: dict | None = None):
      self.send_response(status)
      self.send_header("Content-Type", content_type)
      self.send_header("Content-Length", str(len(body)))
      self.send_header("Cache-Control", "no-store")
      for name, value in (headers or {}).items():
        self.send_header(name, value)
      self.end_headers()
      self.wfile.write(body)

    def send_json(self, status: int, content: dict):
      self.send(status, json.dumps(content).encode(), "application/json")

    def do_GET(self):
      if self.path in ("/", "/index.html"):
        self.send(200, page, "text/html; charset=utf-8")
      else:
        self.send_json(404, {"error": f"no page at {self.path}"})

    def do_POST(self):
      length = self.headers.get("Content-Length", "")
      if not length.isdigit():
        self.send_json(411, {"error": "the request needs a Content-Length"})
        return
      if int(length) > MAX_UPLOAD:
        self.send_json(413, {"error": f"the file is larger than {MAX_UPLOAD // 2**20} MB"})
        return
      body = self.rfile.read(int(length))
      try:
        if self.path == "/photo":
          name = urllib.parse.unquote(self.headers.get("X-Filename", "photo"))
          self.send_json(200, colorizer.open_photo(body, name))
        elif self.path == "/colorize":
          request = json.loads(body or b"{}")
          if not isinstance(request, dict):
            raise AppError('a /colorize request is {"id": "<photo id>", "points": [...], "full": false}.')
          png, seconds = colorizer.colorize(request.get("id"), request.get("points", []), bool(request.get("full")))
          self.send(200, png, "image/png", {"X-Seconds": f"{seconds:.3f}"})
        else:
          self.send_json(404, {"error": f"nothing to post at {self.path}"})
      except (AppError, ValueError, RecursionError) as error:  # JSON and Unicode errors are ValueErrors.
        self.send_json(400, {"error": str(error) if isinstance(error, AppError) else f"a bad request ({error})"})

  return Handler


def make_server(config, workdir: str, host: str = "127.0.0.1", port: int = 8000) -> http.server.ThreadingHTTPServer:
  """The app's server for the generator of a run or a bundle (not yet serving)."""
  if not 0 <= port <= 65535:
    raise AppError(f"--port={port} is not a port: pass a number in 1..65535 (0: any free one).")
  generator, variables, _ = inference.load_generator(config, workdir)
  colorizer = Colorizer(
    generator, variables, config.image_size, models.input_multiple(config.model), bool(config.model.hints)
  )
  with open(PAGE, "rb") as f:
    page = f.read()
  try:
    return http.server.ThreadingHTTPServer((host, port), handler_for(colorizer, page))
  except OSError as error:
    raise AppError(f"cannot listen on {host}:{port} ({error.strerror or error}): pass another --port.") from None


def serve(config, workdir: str, host: str, port: int) -> None:
  """The app mode: serves until Ctrl+C."""
  server = make_server(config, workdir, host, port)
  hints_note = "" if config.model.hints else " (this model takes no hints: it colours automatically)"
  print(f"Colorize app with {workdir}{hints_note}: open http://{host}:{server.server_address[1]}  (Ctrl+C stops)")
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()
