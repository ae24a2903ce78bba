"""Loads the hint app (`--mode=app`) as a crowd of pages would: uploads, previews with points and
full-size downloads from many clients at once, on loopback only.

    python -m benchmarks.app_load                 # 16 clients for 30 s, 1200x800 photos, the bundled model
    python -m benchmarks.app_load --quick         # 4 clients for 8 s, 640x480 photos (CI smoke run)

The app runs as `python main.py --mode=app` in a process of its own, so its peak memory is its own.
Each client opens one photo, then asks for previews with 0-10 random points; every tenth request
is a full-size download. Reports the p50/p95 latency of each kind, the share answered 503 (busy,
retried by the page), the share of requests for a photo the server had forgotten (it keeps 8:
the client opens it again), other errors, the server's peak resident memory, and whether the
server still answers at the end. Prints one JSON line.
"""

import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time

import numpy as np
from absl import app
from absl import flags
from PIL import Image

from benchmarks import common

flags.DEFINE_integer("clients", 16, "Clients asking at once.")
flags.DEFINE_float("seconds", 30.0, "How long the clients ask.")
flags.DEFINE_string("weights", None, "An exported generator folder; default: the bundled weights/.")
flags.DEFINE_bool("quick", False, "4 clients for 8 s, 640x480 photos.")
FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = {"X-Colorize-App": "1"}  # What the app's page sends (colorize/colouring/app.py REQUEST_HEADER).


def free_port() -> int:
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> tuple:
  """(status, body) of one request to the app on loopback."""
  connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
  try:
    connection.request(method, path, body=body, headers=HEADER | (headers or {}))
    response = connection.getresponse()
    return response.status, response.read()
  finally:
    connection.close()


def start_app(port: int, weights: str | None) -> subprocess.Popen:
  command = [sys.executable, os.path.join(REPO, "main.py"), "--mode=app", f"--port={port}", "--host=127.0.0.1"]
  server = subprocess.Popen(
    command + ([f"--weights={weights}"] if weights else []), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
  )
  deadline = time.time() + 300
  while time.time() < deadline:
    if server.poll() is not None:
      raise RuntimeError(f"the app exited: {server.stderr.read().decode()[-2000:]}")
    try:
      if request(port, "GET", "/")[0] == 200:
        return server
    except OSError:
      time.sleep(0.5)
  raise RuntimeError("the app did not answer within 300 s")


def memory_mb(pid: int, field: str) -> float:
  """VmRSS (now) or VmHWM (peak) of a process, in MB, from /proc."""
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024
  return 0.0


def jpeg(height: int, width: int, seed: int) -> bytes:
  buffer = io.BytesIO()
  Image.fromarray(common.photo_like(height, width, seed)).save(buffer, "JPEG", quality=90)
  return buffer.getvalue()


def client(port: int, photo: bytes, size: tuple, stop_at: float, seed: int, log: list) -> None:
  """One page: opens its photo, then previews with random points until `stop_at`; (kind, status, seconds) to `log`."""
  rng = np.random.default_rng(seed)
  height, width = size
  photo_id = None
  count = 0
  while time.time() < stop_at:
    start = time.perf_counter()
    if photo_id is None:
      status, body = request(port, "POST", "/photo", photo, {"X-Filename": f"photo{seed}.jpg"})
      log.append(("open", status, time.perf_counter() - start))
      if status == 200:
        photo_id = json.loads(body)["id"]
      else:
        time.sleep(0.25)
      continue
    count += 1
    points = [
      {"x": int(rng.integers(width)), "y": int(rng.integers(height)), "rgb": rng.integers(0, 256, 3).tolist()}
      for _ in range(int(rng.integers(0, 11)))
    ]
    full = count % 10 == 0
    body = json.dumps({"id": photo_id, "points": points, "full": full}).encode()
    status, answer = request(port, "POST", "/colorize", body, {"Content-Type": "application/json"})
    if status == 400 and b"no longer open" in answer:
      status, photo_id = "forgotten", None  # The server forgot it (the least recently used): open it again.
    log.append(("full" if full else "preview", status, time.perf_counter() - start))
    if status == 503:
      time.sleep(0.25)  # The page's retry.


def summary(log: list, kind: str) -> dict:
  served = [seconds for k, status, seconds in log if k == kind and status == 200]
  asked = [status for k, status, _ in log if k == kind]
  if not asked:
    return {}
  return {
    f"{kind}_requests": len(asked),
    f"{kind}_busy_share": round(sum(s == 503 for s in asked) / len(asked), 3),
    f"{kind}_forgotten_share": round(sum(s == "forgotten" for s in asked) / len(asked), 3),
    f"{kind}_errors": sum(s not in (200, 503, "forgotten") for s in asked),
    **({f"{kind}_p50_s": round(float(np.percentile(served, 50)), 3)} if served else {}),
    **({f"{kind}_p95_s": round(float(np.percentile(served, 95)), 3)} if served else {}),
  }


def main(argv):
  del argv
  clients, seconds = (4, 8.0) if FLAGS.quick else (FLAGS.clients, FLAGS.seconds)
  size = (480, 640) if FLAGS.quick else (800, 1200)
  port = free_port()
  server = start_app(port, FLAGS.weights)
  try:
    photos = [jpeg(*size, seed) for seed in range(clients)]
    log, peak_rss = [], [memory_mb(server.pid, "VmRSS")]
    stop_at = time.time() + seconds
    threads = [
      threading.Thread(target=client, args=(port, photos[i], size, stop_at, i, log), daemon=True)
      for i in range(clients)
    ]
    for thread in threads:
      thread.start()
    while any(thread.is_alive() for thread in threads):
      peak_rss.append(memory_mb(server.pid, "VmRSS"))
      time.sleep(0.25)
    still_answering = request(port, "GET", "/")[0] == 200
    row = {
      "benchmark": "app_load",
      "quick": FLAGS.quick,
      "clients": clients,
      "seconds": seconds,
      "photo": f"{size[1]}x{size[0]}",
      "cpu": common.cpu_model(),
      "cores": os.cpu_count(),
      **summary(log, "open"),
      **summary(log, "preview"),
      **summary(log, "full"),
      "server_rss_start_mb": round(peak_rss[0]),
      "server_rss_peak_mb": round(memory_mb(server.pid, "VmHWM")),
      "still_answering": still_answering,
    }
  finally:
    server.terminate()
    server.wait(timeout=60)
  common.emit(row)
  if not still_answering:
    sys.exit("the app stopped answering under load")


if __name__ == "__main__":
  app.run(main)
