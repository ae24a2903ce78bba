"""A user's colour points: hint files (JSON) read and checked, points from the page or a file
validated against their photo, and mapped onto the generator's input (docs/hints.md)."""

import collections
import json
import os

import numpy as np

from colorize import color
from colorize import hints

_POINT_KEYS = {"x", "y", "rgb", "size"}


DEFAULT_SIZE = 3  # A point's side in the generator's input pixels when the user gives no size.


MAX_POINTS = 1_000  # Per photo: more is a mistake, and each costs memory [H, W] when encoded.


class BadHints(ValueError):
  """A hint file that cannot be used; the message names the file and the point."""


def read_points(path: str) -> list:
  """A hint file -> its parsed JSON (`user_points` checks it, with the photo, naming the file)."""
  try:
    with open(path, encoding="utf-8") as f:
      points = json.load(f)
  except RecursionError:
    raise BadHints(f"{path}: nested too deeply to be a list of points") from None
  except (OSError, UnicodeDecodeError) as error:
    raise BadHints(f"{path}: cannot read it ({error})") from None
  except json.JSONDecodeError as error:
    raise BadHints(f"{path}: not JSON ({error.msg} at line {error.lineno}); see docs/hints.md for the format") from None
  return points


def check_points(points, source: str) -> None:
  """Raises BadHints, naming `source` and the point, unless `points` is a list of well-formed points."""
  if not isinstance(points, list):
    raise BadHints(f'{source}: must hold a list of points such as [{{"x": 120, "y": 45, "rgb": [200, 30, 40]}}]')
  if len(points) > MAX_POINTS:
    raise BadHints(f"{source}: {len(points)} points, more than the {MAX_POINTS} a photo may have")
  for number, point in enumerate(points, 1):
    _check_point(source, number, point)


def _is_int(value) -> bool:
  return isinstance(value, int) and not isinstance(value, bool)


def _check_point(path: str, number: int, point) -> None:
  where = f"{path}: point {number}"
  if not isinstance(point, dict):
    raise BadHints(f'{where} is not an object like {{"x": 120, "y": 45, "rgb": [200, 30, 40]}}')
  if unknown := sorted(set(point) - _POINT_KEYS):
    raise BadHints(f"{where} has unknown key(s) {', '.join(unknown)}; use x, y, rgb and optionally size")
  if missing := sorted({"x", "y", "rgb"} - set(point)):
    raise BadHints(f"{where} lacks {', '.join(missing)}")
  if not (_is_int(point["x"]) and _is_int(point["y"])):
    raise BadHints(f"{where}: x and y must be whole pixel numbers, not {point['x']!r}, {point['y']!r}")
  rgb = point["rgb"]
  if not (isinstance(rgb, list) and len(rgb) == 3 and all(_is_int(v) and 0 <= v <= 255 for v in rgb)):
    raise BadHints(f"{where}: rgb must be three whole numbers in 0..255, not {rgb!r}")
  if "size" in point and not (_is_int(point["size"]) and point["size"] >= 1):
    raise BadHints(f"{where}: size must be a whole number of pixels >= 1, not {point['size']!r}")


def user_points(points: list, height: int, width: int, source: str = "hints") -> np.ndarray:
  """Points (as parsed JSON) -> float32 [N, 5]: x, y, size (0: the default), a, b, in the photo's pixels.

  Raises BadHints, naming `source` and the point, for anything but a list of well-formed points
  (`check_points`) inside the photo (`height` x `width`): the one check of a file's and the app's."""
  check_points(points, source)
  rows = []
  for number, point in enumerate(points, 1):
    if not (0 <= point["x"] < width and 0 <= point["y"] < height):
      raise BadHints(
        f"{source}: point {number} at x={point['x']}, y={point['y']} lies outside the photo ({width}x{height} px)"
      )
    if point.get("size", 1) > max(height, width):
      raise BadHints(f"{source}: point {number} has size {point['size']}, larger than the photo ({width}x{height} px)")
    a, b = np.asarray(color.rgb_to_lab(np.asarray(point["rgb"], np.float32) / 255.0, np))[1:]
    rows.append([point["x"], point["y"], point.get("size", 0), a, b])
  return np.asarray(rows, np.float32).reshape(-1, 5)


def hint_files(hints: str, found: list) -> dict:
  """{photo path: its hint file} for (path, name relative to --input) pairs; photos without one are left out.

  `hints` is one file (for the one photo) or a folder mirroring --input: the photo `a/img.jpg` takes
  `a/img.json`, or `a/img.jpg.json` where another photo of that folder is also named `img`. Raises
  BadHints for a `<stem>.json` that photos of two formats would share."""
  if not hints:
    return {}
  if os.path.isfile(hints):
    return {path: hints for path, _ in found}
  by_name, by_stem = {}, collections.defaultdict(list)
  for path, name in found:
    by_stem[os.path.splitext(name)[0]].append(path)
    for candidate in (name + ".json", os.path.splitext(name)[0] + ".json"):
      if os.path.isfile(os.path.join(hints, candidate)):
        by_name[path] = os.path.join(hints, candidate)
        break
  for stem, paths in by_stem.items():
    shared = [p for p in paths if by_name.get(p) == os.path.join(hints, stem + ".json")]
    if len(shared) > 1:
      raise BadHints(
        f"{os.path.join(hints, stem + '.json')} would apply to {len(shared)} photos ({', '.join(shared)}): "
        f"name it after one photo with its extension, e.g. {os.path.basename(shared[0])}.json"
      )
  return by_name


def for_network(points: np.ndarray, photo_shape: tuple, network_shape: tuple) -> np.ndarray:
  """Hint channels [h, w, 3] for the generator's input (h, w) from points [N, 5] in photo pixels.

  A point's patch is centred on its pixel; its side scales with the photo (at least one input
  pixel; `DEFAULT_SIZE` input pixels when the point gives none)."""
  (photo_h, photo_w), (height, width) = photo_shape, network_shape
  if len(points) == 0:
    return hints.none(height, width, np)
  x, y, size, a, b = np.asarray(points, np.float64).T
  scale_y, scale_x = height / photo_h, width / photo_w
  sizes = np.where(size > 0, np.maximum(1, np.round(size * min(scale_y, scale_x))), DEFAULT_SIZE).astype(np.int32)
  sizes = np.minimum(sizes, min(height, width))
  centre_y = np.floor((y + 0.5) * scale_y).astype(np.int32)
  centre_x = np.floor((x + 0.5) * scale_x).astype(np.int32)
  tops = np.clip(centre_y - sizes // 2, 0, height - sizes)
  lefts = np.clip(centre_x - sizes // 2, 0, width - sizes)
  ab = np.stack([a, b], axis=-1)
  return hints.encode(tops, lefts, sizes, ab, np.ones(len(points), bool), height, width, np)
