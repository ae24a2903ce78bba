"""User colour hints (Zhang et al. 2017, "Real-Time User-Guided Image Colorization"): points of
known a,b given to the generator beside L.

A hint is a square patch: its top-left pixel, its side and one a,b colour. The generator sees
three extra channels: a/110 and b/110 over the hinted pixels and a mask of them, zero elsewhere
(where patches overlap, the later point wins). Training draws hints from the real photo: per
photo a geometric number of points (sometimes none), each the mean a,b of a patch 1 to
`max_size` pixels square at a random place. Users give points in their photo's own pixels
(`from_user_points`), which are mapped onto the generator's smaller input.
"""

import collections
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from colorize import color

CHANNELS = 3  # a, b, mask.
_POINT_KEYS = {"x", "y", "rgb", "size"}
DEFAULT_SIZE = 3  # A point's side in the generator's input pixels when the user gives no size.
MAX_POINTS = 1_000  # Per photo: more is a mistake, and each costs memory [H, W] when encoded.


# ----------------------------------------------------------------------------- the encoding


def _covers(tops, lefts, sizes, height: int, width: int, xp=jnp):
  """[K, H, W] bool: whether each point's patch covers each pixel."""
  rows, cols = xp.arange(height), xp.arange(width)
  in_rows = (rows[None, :] >= tops[:, None]) & (rows[None, :] < (tops + sizes)[:, None])
  in_cols = (cols[None, :] >= lefts[:, None]) & (cols[None, :] < (lefts + sizes)[:, None])
  return in_rows[:, :, None] & in_cols[:, None, :]


def encode(tops, lefts, sizes, ab, valid, height: int, width: int, xp=jnp):
  """Points (int [K] each; a,b in Lab units [K, 2]; valid bool [K]) -> hint channels [H, W, 3].

  Channels: a/110, b/110 (the network's scale) where a point's patch lies, and 1 in the mask
  there; zeros elsewhere. A later point overwrites an earlier one where they overlap. `xp=numpy`
  for the host (no compilation per number of points): painted patch by patch in [H, W, 3] memory,
  whatever the number of points (the traced version holds [K, H, W] and is for a few points).
  """
  if xp is np:
    return _painted_in_place(tops, lefts, sizes, ab, valid, height, width)
  return _painted(_covers(tops, lefts, sizes, height, width, xp), ab, valid, xp)


def _painted_in_place(tops, lefts, sizes, ab, valid, height: int, width: int) -> np.ndarray:
  """`encode` on the host: each valid point's patch painted over the earlier ones."""
  channels = np.zeros((height, width, CHANNELS), np.float32)
  colours = np.asarray(ab, np.float32) / color.LAB_SCALE[1]
  for top, left, size, (a, b), keep in zip(tops, lefts, sizes, colours, valid, strict=True):
    if keep:  # Clipped at 0 like `_covers`: a negative index would count from the far edge.
      bottom, right = int(top) + int(size), int(left) + int(size)
      channels[max(int(top), 0) : max(bottom, 0), max(int(left), 0) : max(right, 0)] = (a, b, 1.0)
  return channels


def _painted(covers, ab, valid, xp):
  """`encode` from the points' patches [K, H, W]."""
  covers = covers & valid[:, None, None]
  order = xp.arange(1, covers.shape[0] + 1)[:, None, None]
  last = xp.max(xp.where(covers, order, 0), axis=0)  # 1 + index of the last covering point, 0: none.
  hinted = last > 0
  colour = xp.asarray(ab, xp.float32)[xp.maximum(last - 1, 0)] / color.LAB_SCALE[1]
  channels = xp.concatenate([xp.where(hinted[..., None], colour, 0.0), hinted[..., None]], axis=-1)
  return channels.astype(xp.float32)


# ----------------------------------------------------------------------------- simulated hints


def simulated_points(key, height: int, width: int, count, max_points: int, max_size: int):
  """`count` (int scalar, at most `max_points`) random patches 1 to `max_size` px square:
  (tops, lefts, sizes, valid), each [max_points]."""
  size_key, top_key, left_key = jax.random.split(key, 3)
  sizes = jax.random.randint(size_key, (max_points,), 1, max_size + 1)
  tops = jax.random.randint(top_key, (max_points,), 0, height - sizes + 1)
  lefts = jax.random.randint(left_key, (max_points,), 0, width - sizes + 1)
  return tops, lefts, sizes, jnp.arange(max_points) < count


def training_count(key, p: float, none_fraction: float, max_points: int):
  """How many points one training photo gets: geometric, P(n) = (1 - p)^n p (Zhang et al. 2017:
  p = 1/8), and none at all for a further `none_fraction` of photos; at most `max_points`."""
  count_key, none_key = jax.random.split(key)
  uniform = jax.random.uniform(count_key, minval=jnp.finfo(jnp.float32).tiny)
  count = jnp.floor(jnp.log(uniform) / jnp.log1p(-p)).astype(jnp.int32)
  count = jnp.where(jax.random.uniform(none_key) < none_fraction, 0, count)
  return jnp.minimum(count, max_points)


def simulate(key, ab, hint_config, count=None):
  """Hint channels [H, W, 3] drawn from the real a,b [H, W, 2] (Lab units) of one photo:
  `count` points, or a training draw (`training_count`) when None; each point the mean a,b of its
  patch."""
  count_key, place_key = jax.random.split(key)
  if count is None:
    count = training_count(count_key, hint_config.geometric_p, hint_config.none_fraction, hint_config.max_points)
  height, width = ab.shape[:2]
  tops, lefts, sizes, valid = simulated_points(
    place_key, height, width, count, hint_config.max_points, hint_config.max_size
  )
  covers = _covers(tops, lefts, sizes, height, width)  # Once: for the patches' means and for painting them.
  means = jnp.einsum("khw,hwc->kc", covers.astype(ab.dtype), ab) / (sizes.astype(ab.dtype) ** 2)[:, None]
  return _painted(covers, means, valid, jnp)


def simulate_batch(keys, lab_normalized, hint_config):
  """Training hints [B, H, W, 3] for a batch of normalised Lab [B, H, W, 3], one key per photo."""
  ab = lab_normalized[..., 1:].astype(jnp.float32) * color.LAB_SCALE[1]
  return jax.vmap(lambda key, photo_ab: simulate(key, photo_ab, hint_config))(keys, ab)


def points_from_photo(rgb: np.ndarray, count: int, rng: np.random.Generator, max_size: int = 9) -> np.ndarray:
  """`count` points as a user might give them, read off the real photo (uint8 [H, W, 3]): each the
  mean a,b of a square patch 1 to `max_size` pixels wide at a uniformly random place; [count, 5]
  as `user_points` gives them (x, y at the patch's centre pixel)."""
  height, width = rgb.shape[:2]
  ab = np.asarray(color.rgb_to_lab(rgb / 255.0, np))[..., 1:]
  rows = []
  for _ in range(count):
    size = int(rng.integers(1, max_size + 1))
    top, left = int(rng.integers(0, height - size + 1)), int(rng.integers(0, width - size + 1))
    a, b = ab[top : top + size, left : left + size].reshape(-1, 2).mean(axis=0)
    rows.append([left + size // 2, top + size // 2, size, a, b])
  return np.asarray(rows, np.float32).reshape(-1, 5)


# ----------------------------------------------------------------------------- the user's points


class BadHints(ValueError):
  """A hint file that cannot be used; the message names the file and the point."""


def read_points(path: str) -> list:
  """A hint file -> its points as dicts, checked for keys and types (not yet against a photo)."""
  try:
    with open(path, encoding="utf-8") as f:
      points = json.load(f)
  except RecursionError:
    raise BadHints(f"{path}: nested too deeply to be a list of points") from None
  except (OSError, UnicodeDecodeError) as error:
    raise BadHints(f"{path}: cannot read it ({error})") from None
  except json.JSONDecodeError as error:
    raise BadHints(f"{path}: not JSON ({error.msg} at line {error.lineno}); see docs/hints.md for the format") from None
  check_points(points, path)
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
  """Checked points -> float32 [N, 5]: x, y, size (0: the default), a, b, in the photo's pixels.

  Raises BadHints for a point outside the photo (`height` x `width`)."""
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
    return np.zeros((height, width, CHANNELS), np.float32)
  x, y, size, a, b = np.asarray(points, np.float64).T
  scale_y, scale_x = height / photo_h, width / photo_w
  sizes = np.where(size > 0, np.maximum(1, np.round(size * min(scale_y, scale_x))), DEFAULT_SIZE).astype(np.int32)
  sizes = np.minimum(sizes, min(height, width))
  centre_y = np.floor((y + 0.5) * scale_y).astype(np.int32)
  centre_x = np.floor((x + 0.5) * scale_x).astype(np.int32)
  tops = np.clip(centre_y - sizes // 2, 0, height - sizes)
  lefts = np.clip(centre_x - sizes // 2, 0, width - sizes)
  ab = np.stack([a, b], axis=-1)
  return encode(tops, lefts, sizes, ab, np.ones(len(points), bool), height, width, np)
