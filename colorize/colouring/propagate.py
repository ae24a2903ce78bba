"""Colour hints that fill what they touch: Levin, Lischinski & Weiss 2004, "Colorization using
Optimization", on the generator's colours.

A user's point says what colour a place has; the generator has already coloured the whole photo.
What spreads is the residual, the point's colour minus the generator's there: to neighbours of
similar lightness, far (the decay is tiny), and not across edges. With Levin's affinities w_pq
between a pixel p and each neighbour q of its 3x3 window (exp(-(L_p - L_q)^2 / (2 s_p^2)), s_p^2
the variance of L* in the window, normalised to sum 1 over the window), the residual field r
(one per a,b channel) minimises, with the points as soft constraints,

    smoothness(r) + decay * sum_p r_p^2 + weight * sum_{hinted p} (r_p - h_p)^2

where smoothness is Levin's sum_p (r_p - sum_q w_pq r_q)^2 (`form="levin"`), or its graph
Laplacian form sum over neighbour pairs {p,q} of w_pq (r_p - r_q)^2, w symmetrised (`form="laplacian"`, as in
Lischinski et al. 2006): a 9-point instead of a 25-point stencil, several times faster to
factorise at the same size (docs/hints.md has both measured). The gradient set to zero is one
sparse symmetric positive-definite system, factorised once (SciPy's SuperLU) and solved for a
and b, at the generator's size; the result is upsampled onto the photo like the generator's own.
"""

import dataclasses

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from colorize import color


@dataclasses.dataclass(frozen=True)
class Spread:
  """How far and along what a point's colour travels (tuned: docs/hints.md)."""

  decay: float = 1e-4  # Pull of the residual towards 0 (the generator's own colour), per pixel.
  weight: float = 100.0  # Pull of a hinted pixel towards its point's colour.
  min_variance: float = 4.0  # Floor of a window's L* variance (L* in 0..100): flat regions still differ.
  # Cap of a window's L* variance: across an edge of more than a few times its root the affinity
  # vanishes, so a point's colour fills its region and stops there (Levin's uncapped variance lets
  # the colour leak across every edge once the decay is small).
  max_variance: float = 16.0
  form: str = "laplacian"  # The smoothness term: "laplacian" (9-point, fast) or "levin" (Levin's own, 25-point).


SPREAD = Spread()  # The setting every mode uses.


def affinity(lightness: np.ndarray, min_variance: float, max_variance: float = np.inf) -> scipy.sparse.csr_matrix:
  """Levin's W [N, N] (N = H * W pixels, row-major) over the 3x3 windows of an L* plane [H, W],
  each window's variance held in [min_variance, max_variance]."""
  height, width = lightness.shape
  light = lightness.astype(np.float64)
  shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
  # Each window's variance over its pixels inside the photo (a corner's window holds 4).
  padded, inside = np.pad(light, 1), np.pad(np.ones_like(light), 1)
  windows = [(slice(1 + dy, 1 + dy + height), slice(1 + dx, 1 + dx + width)) for dy, dx in shifts]
  count = sum(inside[w] for w in windows)
  mean = sum(padded[w] for w in windows) / count
  variance = np.clip(sum(padded[w] ** 2 for w in windows) / count - mean**2, min_variance, max_variance)
  rows, cols = [], []
  index = np.arange(height * width).reshape(height, width)
  weights = []
  for dy, dx in shifts:
    if dy == 0 and dx == 0:
      continue
    ys, xs = slice(max(0, -dy), height - max(0, dy)), slice(max(0, -dx), width - max(0, dx))
    neighbour = (slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx))
    w = np.exp(-((light[ys, xs] - light[neighbour]) ** 2) / (2 * variance[ys, xs]))
    rows.append(index[ys, xs].ravel())
    cols.append(index[neighbour].ravel())
    weights.append(w.ravel())
  rows, cols, values = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
  totals = np.bincount(rows, weights=values, minlength=height * width)
  return scipy.sparse.csr_matrix((values / totals[rows], (rows, cols)), shape=(height * width, height * width))


def smoothness(lightness: np.ndarray, spread: Spread) -> scipy.sparse.csr_matrix:
  """The smoothness term's matrix S (energy r^T S r): (I - W)^T (I - W) for "levin", the graph
  Laplacian D - (W + W^T) / 2 for "laplacian"."""
  weights = affinity(lightness, spread.min_variance, spread.max_variance)
  if spread.form == "levin":
    difference = scipy.sparse.identity(lightness.size, format="csr") - weights
    return (difference.T @ difference).tocsr()
  if spread.form == "laplacian":
    symmetric = (weights + weights.T) / 2
    return (scipy.sparse.diags(np.asarray(symmetric.sum(axis=1)).ravel()) - symmetric).tocsr()
  raise ValueError(f"Spread.form={spread.form!r} is unknown; use 'laplacian' or 'levin'.")


def system(lightness: np.ndarray, hinted: np.ndarray, spread: Spread) -> scipy.sparse.csc_matrix:
  """The energy's matrix: S + decay I + weight diag(hinted)."""
  diagonal = spread.decay + spread.weight * hinted.ravel().astype(np.float64)
  return (smoothness(lightness, spread) + scipy.sparse.diags(diagonal)).tocsc()


def residual(lightness: np.ndarray, hinted: np.ndarray, targets: np.ndarray, spread: Spread) -> np.ndarray:
  """The residual a,b field [H, W, 2] that minimises the energy, for an L* plane [H, W], hinted
  pixels (bool [H, W]) and their residual targets [H, W, 2] (read where hinted)."""
  matrix = system(lightness, hinted, spread)
  right = spread.weight * (targets.reshape(-1, 2) * hinted.reshape(-1, 1)).astype(np.float64)
  # Minimum-degree ordering of the symmetric pattern: 3-5x faster than SuperLU's default here.
  solved = scipy.sparse.linalg.splu(matrix, permc_spec="MMD_AT_PLUS_A").solve(right)
  return solved.reshape(*lightness.shape, 2).astype(np.float32)


def spread_hints(lightness: np.ndarray, ab: np.ndarray, hint_channels: np.ndarray, spread: Spread) -> np.ndarray:
  """The generator's a,b [H, W, 2] with the hints' residual spread over the photo, at the
  generator's size: `lightness` L* [H, W], `hint_channels` [H, W, 3] (`hint_points.for_network`:
  a/110, b/110 and a mask). Without a hinted pixel, `ab` itself."""
  hinted = hint_channels[..., 2] > 0
  if not hinted.any():
    return ab
  targets = hint_channels[..., :2] * color.LAB_SCALE[1] - ab  # The channels hold a/110, b/110.
  return ab + residual(lightness, hinted, targets, spread)
