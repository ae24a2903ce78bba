"""Classic colorizers: what a model must beat before its colours are worth anything.

Each predicts a,b from the photo's lightness alone, with tables of the training photos' mean
colour, in NumPy on the host (no training, no network):

- `gray`: a = b = 0, the input itself;
- `mean_ab`: the training photos' mean a,b everywhere;
- `ab_of_l`: the mean a,b of the training pixels of the same lightness (per-L-bin means,
  interpolated between bin centres): dark -> blue-gray shadows, bright -> sky;
- `ab_of_l_texture`: the mean a,b per (lightness bin, 3x3 lightness-variance bin): smooth
  bright areas (sky) and textured mid-tones (foliage) get different colours; a cell with fewer
  than `min_count` training pixels falls back to `ab_of_l`.
"""

import dataclasses

import numpy as np
from scipy import ndimage

from colorize import color

NAMES = ("gray", "mean_ab", "ab_of_l", "ab_of_l_texture")
_L_BINS = 50  # Two L units a bin.
_VARIANCE_BINS = 8  # Quantiles of the training pixels' local variance.


@dataclasses.dataclass(frozen=True)
class ColourTables:
  mean_ab: np.ndarray  # [2]
  ab_by_l: np.ndarray  # [_L_BINS, 2], interpolated over empty bins
  variance_edges: np.ndarray  # [_VARIANCE_BINS - 1] inner edges of the local-variance bins
  ab_by_l_texture: np.ndarray  # [_L_BINS, _VARIANCE_BINS, 2], NaN where a cell is rare


def local_variance(lightness: np.ndarray) -> np.ndarray:
  """Variance of L over each pixel's 3x3 neighbourhood, [H, W] -> [H, W]."""
  mean = ndimage.uniform_filter(lightness, 3, mode="reflect")
  return np.maximum(ndimage.uniform_filter(lightness * lightness, 3, mode="reflect") - mean * mean, 0.0)


def _l_bin(lightness: np.ndarray) -> np.ndarray:
  return np.clip((lightness * (_L_BINS / 100.0)).astype(np.int64), 0, _L_BINS - 1)


def _l_centres() -> np.ndarray:
  return (np.arange(_L_BINS) + 0.5) * (100.0 / _L_BINS)


def _lab_pixels(photos) -> tuple:
  """(L, a, b, local variance) of every pixel of uint8 RGB photos, as flat float32 arrays."""
  columns = [[], [], [], []]
  for photo in photos:
    lab = color.rgb_to_lab(np.asarray(photo, np.float32) / 255.0, np)
    for column, values in zip(columns, (*np.moveaxis(lab, -1, 0), local_variance(lab[..., 0])), strict=True):
      column.append(values.ravel())
  if not columns[0]:
    raise ValueError("the classic colorizers need at least one training photo.")
  return tuple(np.concatenate(column) for column in columns)


def fit(photos, min_count: int = 200) -> ColourTables:
  """The tables of every classic colorizer from uint8 RGB training photos (any sizes)."""
  lightness, a, b, variance = _lab_pixels(photos)
  ab = np.stack([a, b], axis=-1).astype(np.float64)
  l_bins = _l_bin(lightness)
  counts = np.bincount(l_bins, minlength=_L_BINS)
  sums = np.stack([np.bincount(l_bins, ab[:, i], minlength=_L_BINS) for i in range(2)], axis=-1)
  filled = counts > 0
  centres = _l_centres()
  ab_by_l = np.stack([np.interp(centres, centres[filled], sums[filled, i] / counts[filled]) for i in range(2)], -1)

  edges = np.quantile(variance, np.linspace(0, 1, _VARIANCE_BINS + 1)[1:-1])
  cells = l_bins * _VARIANCE_BINS + np.searchsorted(edges, variance)
  cell_counts = np.bincount(cells, minlength=_L_BINS * _VARIANCE_BINS)
  cell_sums = np.stack([np.bincount(cells, ab[:, i], minlength=cell_counts.size) for i in range(2)], axis=-1)
  with np.errstate(invalid="ignore", divide="ignore"):
    by_cell = np.where((cell_counts >= min_count)[:, None], cell_sums / cell_counts[:, None], np.nan)
  return ColourTables(
    mean_ab=ab.mean(axis=0).astype(np.float32),
    ab_by_l=ab_by_l.astype(np.float32),
    variance_edges=edges.astype(np.float32),
    ab_by_l_texture=by_cell.reshape(_L_BINS, _VARIANCE_BINS, 2).astype(np.float32),
  )


def predict_ab(tables: ColourTables | None, name: str, lightness: np.ndarray) -> np.ndarray:
  """a,b [H, W, 2] that the classic colorizer `name` gives a photo of lightness [H, W] (0..100).

  `tables` may be None for `gray`, which needs none."""
  if name == "gray":
    return np.zeros((*lightness.shape, 2), np.float32)
  if name == "mean_ab":
    return np.broadcast_to(tables.mean_ab, (*lightness.shape, 2)).astype(np.float32)
  centres = _l_centres()
  by_l = np.stack([np.interp(lightness, centres, tables.ab_by_l[:, i]) for i in range(2)], axis=-1)
  if name == "ab_of_l":
    return by_l.astype(np.float32)
  if name == "ab_of_l_texture":
    texture_bin = np.searchsorted(tables.variance_edges, local_variance(lightness))
    by_cell = tables.ab_by_l_texture[_l_bin(lightness), texture_bin]
    return np.where(np.isnan(by_cell), by_l, by_cell).astype(np.float32)
  raise ValueError(f"unknown classic colorizer {name!r}; use one of {', '.join(NAMES)}.")


def colorize(tables: ColourTables | None, name: str, rgb_uint8: np.ndarray) -> np.ndarray:
  """uint8 RGB [H, W, 3] -> uint8 RGB with its own lightness and the colorizer's a,b."""
  lightness = color.lightness(rgb_uint8)
  lab = np.concatenate([lightness[..., None], predict_ab(tables, name, lightness)], axis=-1)
  return color.lab_to_uint8_rgb(lab, np)
