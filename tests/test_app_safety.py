"""The hint app on a user's desktop: it answers only its own page, refuses bombs and floods, and
survives what it cannot serve. A server with a stand-in generator: no network is compiled here."""

import collections
import http.client
import io
import json
import socket
import threading
import time

import numpy as np
import pytest
from PIL import Image

from colorize.colouring import app
from colorize.colouring import predict
from colorize.data import photos


def photo_bytes(width=64, height=48, image_format="PNG") -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(np.random.default_rng(width).integers(0, 256, (height, width, 3), np.uint8)).save(
    buffer, image_format
  )
  return buffer.getvalue()


class StandInGenerator:
  """A generator's face to the app: its vividness, and clones at another (as flax modules give)."""

  def __init__(self, vividness: float = 0.5):
    self.vividness = vividness

  def clone(self, vividness: float):
    return StandInGenerator(vividness)


@pytest.fixture
def served(monkeypatch):
  """(colorizer, port) of an app whose generator paints the photo's own pixels back; the generators
  it was called with are in `colorizer.called`."""

  def colour_group(generator, variables, group, size, multiple):
    del variables, size, multiple
    colorizer.called.append(generator)
    return [photo.rgb for photo in group]

  monkeypatch.setattr(predict, "colorize_group", colour_group)
  colorizer = app.Colorizer(StandInGenerator(), {}, 32, 8, max_pixels=1_000_000)
  colorizer.called = []
  server = app.http.server.ThreadingHTTPServer(("127.0.0.1", 0), app.handler_for(colorizer, b"<html>the page</html>"))
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  yield colorizer, server.server_address[1]
  server.shutdown()
  server.server_close()


def ask(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None):
  """(status, headers, body) of one raw request; the page's headers unless `headers` replaces them."""
  connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
  page = {"Host": f"127.0.0.1:{port}", app.REQUEST_HEADER: "1", "Content-Type": "application/json"}
  sent = page if headers is None else headers
  connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
  for name, value in sent.items():
    connection.putheader(name, value)
  if body or method == "POST":
    connection.putheader("Content-Length", str(len(body)))
  connection.endheaders(body)
  response = connection.getresponse()
  answer = response.status, dict(response.getheaders()), response.read()
  connection.close()
  return answer


def open_photo(port: int, data: bytes) -> tuple:
  status, _, body = ask(
    port, "POST", "/photo", data, {"Host": f"127.0.0.1:{port}", app.REQUEST_HEADER: "1", "X-Filename": "a.png"}
  )
  return status, json.loads(body)


def test_the_page_and_its_answers_refuse_frames_and_other_hosts_and_sites(served):
  _, port = served
  status, headers, body = ask(port, "GET", "/", headers={"Host": f"localhost:{port}"})
  assert status == 200 and body == b"<html>the page</html>"
  assert headers["X-Frame-Options"] == "DENY" and "frame-ancestors 'none'" in headers["Content-Security-Policy"]
  # DNS rebinding: a site's own name pointed at this machine; a Host of another port.
  for host in (f"evil.example:{port}", f"127.0.0.1:{port + 1}", "127.0.0.1", ""):
    status, _, body = ask(port, "GET", "/", headers={"Host": host})
    assert status == 403 and b"the page" not in body, host
  # A page of another site posting to the app (a form needs no preflight).
  status, _, body = ask(
    port, "POST", "/colorize", b"{}", {"Host": f"127.0.0.1:{port}", "Origin": "http://evil.example"}
  )
  assert status == 403 and "not other web sites" in json.loads(body)["error"]
  page = {"Host": f"127.0.0.1:{port}", "Origin": f"http://127.0.0.1:{port}"}
  status, _, body = ask(port, "POST", "/colorize", b"{}", page | {"Content-Type": "application/json"})
  assert status == 403 and app.REQUEST_HEADER in json.loads(body)["error"]  # No custom header: not the page.
  status, _, body = ask(
    port, "POST", "/colorize", b"{}", page | {app.REQUEST_HEADER: "1", "Content-Type": "text/plain"}
  )
  assert status == 400 and "application/json" in json.loads(body)["error"]
  status, _, body = ask(
    port, "POST", "/colorize", b'{"id": "x"}', page | {app.REQUEST_HEADER: "1", "Content-Type": "application/json"}
  )
  assert status == 400 and "no longer open" in json.loads(body)["error"]  # The page's own request is served.


@pytest.mark.parametrize("method", ["PUT", "DELETE", "OPTIONS", "PATCH"])
def test_other_methods_get_a_json_405(served, method):
  _, port = served
  status, headers, body = ask(port, method, "/colorize", b"{}")
  assert status == 405 and headers["Allow"] == "GET, POST" and "GET and POST" in json.loads(body)["error"]


@pytest.mark.parametrize("length", ["\u00b2", "9" * 5000, "-1", "", "1e3"])
def test_a_bad_content_length_is_a_json_error_and_the_server_goes_on(served, length):
  _, port = served
  connection = socket.create_connection(("127.0.0.1", port), timeout=30)
  head = (
    f"POST /colorize HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{app.REQUEST_HEADER}: 1\r\nContent-Length: {length}\r\n\r\n"
  )
  connection.sendall(head.encode())
  answer = connection.makefile("rb").read()
  connection.close()
  assert answer.startswith(b"HTTP/1.0 400") and b"Content-Length" in answer.split(b"\r\n\r\n", 1)[1], answer[:300]
  assert ask(port, "GET", "/")[0] == 200


def test_a_bomb_is_refused_from_its_header_before_decoding(served, tmp_path):
  colorizer, port = served
  colorizer.max_pixels = photos.APP_MAX_PIXELS  # The app's default.
  buffer = io.BytesIO()
  Image.new("1", (13000, 13000)).save(buffer, "PNG")  # 20 KB that decode to 169 megapixels.
  start = time.perf_counter()
  status, answer = open_photo(port, buffer.getvalue())
  assert time.perf_counter() - start < 1.0
  assert status == 400 and "image too large: 13000x13000" in answer["error"] and "--max_pixels" in answer["error"]
  colorizer.max_pixels = 2000  # --max_pixels is honoured.
  status, answer = open_photo(port, photo_bytes(64, 48))
  assert status == 400 and "3,072 pixels > --max_pixels=2,000" in answer["error"]


def test_the_least_recently_used_photo_is_forgotten(served, monkeypatch):
  colorizer, port = served
  monkeypatch.setattr(app, "KEPT_PHOTOS", 2)
  first, second = (open_photo(port, photo_bytes(w))[1]["id"] for w in (64, 72))
  assert ask(port, "POST", "/colorize", json.dumps({"id": first, "points": []}).encode())[0] == 200  # Used again.
  third = open_photo(port, photo_bytes(80))[1]["id"]
  assert list(colorizer.photos) == [first, third]  # The second, not the first opened, is forgotten.
  # A pixel budget too: of three photos of 100 pixels, two fit in 250.
  store = collections.OrderedDict(
    (name, (predict.photos.Photo("", "", np.zeros((10, 10, 3)), None), None)) for name in "abc"
  )
  app.forget_least_recent(store, 8, 250)
  assert list(store) == ["b", "c"]


def test_busy_requests_get_503_and_failures_inside_become_json(served, monkeypatch):
  colorizer, port = served
  photo_id = open_photo(port, photo_bytes())[1]["id"]
  request = json.dumps({"id": photo_id, "points": []}).encode()
  for _ in range(app.COLOURINGS_WAITING):
    colorizer.colourings.acquire()
  status, headers, body = ask(port, "POST", "/colorize", request)
  assert status == 503 and headers["Retry-After"] == "1" and "busy" in json.loads(body)["error"]
  for _ in range(app.COLOURINGS_WAITING):
    colorizer.colourings.release()
  for _ in range(app.DECODES_AT_ONCE):
    colorizer.decodes.acquire()
  assert open_photo(port, photo_bytes())[0] == 503
  for _ in range(app.DECODES_AT_ONCE):
    colorizer.decodes.release()

  for error, status in ((MemoryError(), 507), (RuntimeError("XlaRuntimeError: RESOURCE_EXHAUSTED"), 500)):

    def fail(*args, error=error):
      raise error

    monkeypatch.setattr(predict, "colorize_group", fail)
    answer = ask(port, "POST", "/colorize", request)
    assert answer[0] == status and "error" in json.loads(answer[2])
  assert ask(port, "GET", "/")[0] == 200


def test_a_photo_forgotten_while_it_is_asked_for_is_a_message_not_a_dropped_request(served):
  """The old code looked the id up, then read it, unlocked: an upload in between could forget it."""
  colorizer, _ = served

  class ForgetfulStore(collections.OrderedDict):  # Holds the photo when asked, has lost it when read.
    def __contains__(self, key):
      return True

  colorizer.photos = ForgetfulStore()
  with pytest.raises(app.AppError, match="no longer open"):
    colorizer.colorize("gone", [], full=False)


def test_a_silent_client_is_dropped(served, monkeypatch):
  _, port = served
  colorizer = app.Colorizer(None, {}, 32, 8)
  handler = app.handler_for(colorizer, b"page")
  assert handler.timeout == app.SOCKET_SECONDS > 0  # A socket timeout, so a stalled client frees its thread.
  monkeypatch.setattr(handler, "timeout", 0.3)
  server = app.http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  connection = socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10)
  connection.sendall(b"POST /photo HTTP/1.1\r\n")  # And then nothing.
  start = time.perf_counter()
  assert connection.recv(100) == b""  # Closed by the server.
  assert time.perf_counter() - start < 5
  connection.close()
  server.shutdown()
  server.server_close()


def test_a_host_other_than_loopback_is_warned_about(monkeypatch, capsys):
  assert app.is_loopback("127.0.0.1") and app.is_loopback("localhost") and app.is_loopback("::1")
  assert not app.is_loopback("0.0.0.0") and not app.is_loopback("192.168.1.5")

  class Server:
    server_address = ("0.0.0.0", 8000)

    def serve_forever(self):
      raise KeyboardInterrupt

    def server_close(self):
      pass

  made = []
  monkeypatch.setattr(app, "make_server", lambda *args: made.append(args) or Server())
  config = type("C", (), {"model": type("M", (), {"hints": True})()})()
  app.serve(config, "weights", "0.0.0.0", 8000)
  assert "WARNING: --host=0.0.0.0 lets other machines" in capsys.readouterr().err
  app.serve(config, "weights", "127.0.0.1", 8000, 1234)
  assert "WARNING" not in capsys.readouterr().err
  assert [args[-1] for args in made] == [
    photos.APP_MAX_PIXELS,
    1234,
  ]  # --max_pixels reaches the server; a desktop's default.
  assert photos.APP_MAX_PIXELS <= 64_000_000


def test_port_80_and_big_or_trickled_bodies(served, monkeypatch):
  colorizer, port = served
  assert app.allowed_host("localhost", 80) and app.allowed_host("127.0.0.1:80", 80)  # Browsers drop ":80".
  assert not app.allowed_host("localhost", 8000)
  # Refused from its header, before the body is read: only the header is sent (sending the body
  # would race the server's closing the connection: a broken pipe).
  with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:
    head = (
      f"POST /colorize HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{app.REQUEST_HEADER}: 1\r\n"
      f"Content-Type: application/json\r\nContent-Length: {app.MAX_REQUEST + 10}\r\n\r\n"
    )
    connection.sendall(head.encode())
    response = http.client.HTTPResponse(connection)
    response.begin()
    assert response.status == 400 and "at most" in json.loads(response.read())["error"]
  # A body trickled slower than the minimum rate is dropped at its deadline, not after each read's timeout.
  monkeypatch.setattr(app, "SOCKET_SECONDS", 0.5)
  monkeypatch.setattr(app, "MIN_UPLOAD_RATE", 10**9)
  connection = socket.create_connection(("127.0.0.1", port), timeout=30)
  head = f"POST /photo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{app.REQUEST_HEADER}: 1\r\nContent-Length: 1000\r\n\r\n"
  connection.sendall(head.encode())
  start, closed = time.perf_counter(), False
  for _ in range(20):
    time.sleep(0.3)
    try:
      connection.sendall(b"x")
    except OSError:
      closed = True
      break
  closed = closed or connection.recv(100) == b""
  assert closed and time.perf_counter() - start < 5
  connection.close()
  assert ask(port, "GET", "/")[0] == 200


def test_the_vividness_slider_reaches_the_generator_and_only_its_stops_are_taken(served):
  colorizer, port = served
  status, opened = open_photo(port, photo_bytes())
  assert status == 200 and opened["vividness"] == 0.5  # The model's own, for the slider's start.
  for vividness in (0.0, 1.0, None):
    request = {"id": opened["id"], "points": [], **({} if vividness is None else {"vividness": vividness})}
    assert ask(port, "POST", "/colorize", json.dumps(request).encode())[0] == 200
  assert [generator.vividness for generator in colorizer.called] == [0.0, 1.0, 0.5]
  for wrong in (0.3, "1", True, -0.25, [1]):
    request = json.dumps({"id": opened["id"], "points": [], "vividness": wrong}).encode()
    status, _, body = ask(port, "POST", "/colorize", request)
    assert status == 400 and json.loads(body)["error"].startswith("vividness is one of 0, 0.25, 0.5, 0.75, 1, not")
  assert len(colorizer.called) == 3  # Refused before any colouring.
