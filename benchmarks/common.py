"""Helpers shared by the benchmark scripts: output lines, test photos, peak memory."""

import json
import os
import resource
import sys
import time

import numpy as np
from PIL import Image

SHARED_PHOTOS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "photos", "train")


def emit(row: dict) -> dict:
  print(json.dumps(row), flush=True)
  return row


def print_table(rows: list, columns: list) -> None:
  """A Markdown table of `columns` (keys of the rows) on stderr, after the JSON lines."""
  print("\n| " + " | ".join(columns) + " |", file=sys.stderr)
  print("|" + "---|" * len(columns), file=sys.stderr)
  for row in rows:
    print("| " + " | ".join(str(row.get(c, "-")) for c in columns) + " |", file=sys.stderr)


def cpu_model() -> str:
  """lscpu's "Model name" (CPU figures mean little without it), or the platform's guess."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  import platform

  return platform.processor() or platform.machine()


def call_seconds(fn, *args, repeats: int) -> list:
  """Seconds of each of `repeats` calls of a jax function (results awaited), after one untimed call that compiles."""
  import jax

  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return times


def peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# scikit-image's bundled colour photos, with (author, licence) from their docstrings.
PHOTOS_LIKE = (
  ("astronaut", ("NASA", "public domain")),
  ("coffee", ("Rachel Michetti", "CC0")),
  ("chelsea", ("Stefan van der Walt", "CC0")),
  ("rocket", ("SpaceX", "public domain")),
)


def photo_like(height: int, width: int, seed: int = 0) -> np.ndarray:
  """A colour photo of any size: one of scikit-image's bundled photos, resized (offline, no ../shared)."""
  import skimage.data

  image = Image.fromarray(getattr(skimage.data, PHOTOS_LIKE[seed % len(PHOTOS_LIKE)][0])())
  return np.asarray(image.resize((width, height), Image.BICUBIC))


def photo_like_credit(seed: int) -> tuple:
  """(author, licence) of `photo_like(..., seed)`."""
  return PHOTOS_LIKE[seed % len(PHOTOS_LIKE)][1]


def write_jpeg(path: str, image: np.ndarray, quality: int = 90) -> str:
  Image.fromarray(image).save(path, quality=quality)
  return path


def photo_folder(folder: str, count: int, height: int = 256, width: int = 256) -> str:
  """`folder` filled with `count` JPEGs: the shared photos when present, else resized bundled ones."""
  os.makedirs(folder, exist_ok=True)
  shared = sorted(os.listdir(SHARED_PHOTOS)) if os.path.isdir(SHARED_PHOTOS) else []
  for i in range(count):
    if shared:
      image = np.asarray(Image.open(os.path.join(SHARED_PHOTOS, shared[i % len(shared)])).convert("RGB"))
      if image.shape[:2] != (height, width):
        image = np.asarray(Image.fromarray(image).resize((width, height), Image.BICUBIC))
    else:
      image = photo_like(height, width, seed=i)
    write_jpeg(os.path.join(folder, f"photo_{i:04d}.jpg"), image)
  return folder
