"""User colour hints (Zhang et al. 2017, "Real-Time User-Guided Image Colorization"): points of
known a,b given to the generator beside L.

A hint is a square patch: its top-left pixel, its side and one a,b colour. The generator sees
three extra channels: a/110 and b/110 over the hinted pixels and a mask of them, zero elsewhere
(where patches overlap, the later point wins). Training draws hints from the real photo: per
photo a geometric number of points (sometimes none), each the mean a,b of a patch 1 to
`max_size` pixels square at a random place. Users give points in their photo's own pixels,
which `colouring/hint_points.py` checks and maps onto the generator's smaller input.
"""

import jax
import jax.numpy as jnp
import numpy as np

from colorize import color

CHANNELS = 3  # a, b, mask.


# ----------------------------------------------------------------------------- the encoding


def none(height: int, width: int, xp=jnp, batch: tuple = ()):
  """The hint channels of no point ([*batch, H, W, 3] zeros): what a hints generator sees when
  it colours on its own, the automatic mode."""
  return xp.zeros((*batch, height, width, CHANNELS), xp.float32)


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
