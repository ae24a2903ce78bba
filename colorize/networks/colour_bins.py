"""Colour as a distribution over quantised a,b (Zhang et al. 2016, "Colorful Image Colorization").

The a,b plane is cut into bins of 10 Lab units; the bins that hold some sRGB colour (261 of the
23 x 23 grid) are the classes. Training targets are soft: each pixel's true a,b spread over the
bins by a Gaussian of 5 Lab units (Zhang et al. keep the 5 nearest bins; here all of them, the
others holding 3-7% of the mass). A predicted distribution becomes one colour by the annealed mean at temperature T:
T = 1 is the mean (safe, desaturated where the network is unsure), T -> 0 the mode (vivid, and
wrong more often), T = 0.38 Zhang et al.'s choice.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from colorize import color

AB_BIN = 10.0  # Lab units per a,b bin (Zhang et al.'s grid).
AB_BINS = 23  # Bins centred on a, b = -110, -100, ..., 110: gray is the middle of one.
SOFT_SIGMA = 5.0  # Lab units: the spread of a soft-encoded target (Zhang et al.).


def ab_bin_index(normalized_lab, xp=jnp):
  """Flat index of each pixel's a,b bin on the AB_BINS x AB_BINS grid, [..., 3] -> [...]."""
  ab = normalized_lab[..., 1:] * color.LAB_SCALE[1]  # Lab units
  cells = xp.clip(xp.round(ab / AB_BIN) + AB_BINS // 2, 0, AB_BINS - 1).astype(xp.int32)
  return cells[..., 0] * AB_BINS + cells[..., 1]


@functools.cache
def gamut_bin_centres() -> np.ndarray:
  """a,b centres (Lab units, [Q, 2] float32) of the grid bins that some sRGB colour falls into.

  Found from a 64-level cube of RGB colours (finer cubes find the same 261 bins)."""
  levels = np.linspace(0.0, 1.0, 64, dtype=np.float32)
  rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
  occupied = np.unique(ab_bin_index(color.normalize_lab(color.rgb_to_lab(rgb, np)), np))
  cells = np.stack([occupied // AB_BINS, occupied % AB_BINS], axis=-1) - AB_BINS // 2
  return (cells * AB_BIN).astype(np.float32)


def num_bins() -> int:
  return len(gamut_bin_centres())


def gray_prior_logits(key, shape, dtype=jnp.float32):
  """An initial bias for logits over the bins: a Gaussian of one bin's width around gray.

  A regression head starts at gray (tanh(0) = 0); with a zero bias a bins head would start at the
  mean of the gamut's bins, a pink-orange cast (a, b = 15, 6) it then has to unlearn first."""
  del key
  squared_distances = np.sum(np.square(gamut_bin_centres()), axis=-1)
  return jnp.asarray(-squared_distances / (2.0 * AB_BIN**2), dtype).reshape(shape)


def soft_targets(normalized_ab, sigma: float = SOFT_SIGMA):
  """Soft-encoded targets: normalised a,b [..., 2] -> a distribution over the bins [..., Q]."""
  centres = jnp.asarray(gamut_bin_centres())
  ab = normalized_ab.astype(jnp.float32) * color.LAB_SCALE[1]
  squared = jnp.sum(jnp.square(ab[..., None, :] - centres), axis=-1)
  # Shifted by the nearest bin's distance: a colour far outside every bin still gets a target.
  logits = -(squared - jnp.min(squared, axis=-1, keepdims=True)) / (2.0 * sigma**2)
  return jax.nn.softmax(logits, axis=-1)


def cross_entropy(logits, normalized_ab, pixel_weights=None):
  """Mean over pixels of -sum_q target_q log p_q; logits [..., Q], a,b [..., 2] at the same size.

  `pixel_weights` [...] weight each pixel's term (class rebalancing)."""
  per_pixel = -jnp.sum(soft_targets(normalized_ab) * jax.nn.log_softmax(logits.astype(jnp.float32)), axis=-1)
  return jnp.mean(per_pixel if pixel_weights is None else per_pixel * pixel_weights)


def grid_to_gamut(grid_values: np.ndarray) -> np.ndarray:
  """Values over the AB_BINS x AB_BINS grid (flat) -> the same values over the gamut's bins [Q]."""
  cells = np.round(gamut_bin_centres() / AB_BIN).astype(np.int64) + AB_BINS // 2
  return np.asarray(grid_values).reshape(AB_BINS, AB_BINS)[cells[:, 0], cells[:, 1]]


def tilted_mean(logits, log_weights, tilt):
  """The mean colour of the distribution tilted towards rare colours: softmax(logits + tilt * log w).

  `log_weights` [Q] are the log of Zhang et al.'s rebalancing weights (`losses.rebalancing_weights`):
  tilt 1 divides the predicted distribution by the training photos' colour prior (mixed half and
  half with the uniform one), the posterior a colour-balanced training would give (logit
  adjustment, Menon et al. 2021); tilt 0 is the plain mean. logits [..., Q] -> normalised a,b [..., 2]."""
  adjusted = logits.astype(jnp.float32) + tilt * log_weights.astype(jnp.float32)
  return jax.nn.softmax(adjusted, axis=-1) @ jnp.asarray(gamut_bin_centres() / color.LAB_SCALE[1:])


def check_temperature(temperature: float, name: str) -> None:
  """Refuses a temperature the annealed mean cannot use; `name` is what the user set (a flag, a field)."""
  if not temperature > 0:
    raise ValueError(f"{name}={temperature} must be > 0 (1: the mean; lower: bolder; 0.38: Zhang et al.'s).")


def annealed_mean(logits, temperature: float):
  """The colour of each predicted distribution: logits [..., Q] -> normalised a,b [..., 2].

  softmax(logits / T) is the distribution sharpened (T < 1) or the distribution itself (T = 1)."""
  check_temperature(temperature, "temperature")
  probabilities = jax.nn.softmax(logits.astype(jnp.float32) / temperature, axis=-1)
  return probabilities @ jnp.asarray(gamut_bin_centres() / color.LAB_SCALE[1:])
