"""Colorization metrics (DESIGN section 5), shared by the train step, validation and evaluate."""

import jax
import jax.numpy as jnp
import numpy as np

from colorize import color


def pixel_accuracy(predicted_lab, real_lab, threshold: float = 2.0):
  """Share of pixels with |dL| <= t and |da|, |db| <= 2.2 t, after rounding (Lab units).

  The reference code's accuracy@t; inputs are Lab in real units ([0, 100], [-128, 128]).
  Returns one value per image, shape [B].
  """
  diff = jnp.abs(jnp.round(predicted_lab) - jnp.round(real_lab))
  tolerance = jnp.array([threshold, 2.2 * threshold, 2.2 * threshold])
  hit = jnp.all(diff <= tolerance, axis=-1)
  return hit.reshape(hit.shape[0], -1).mean(axis=1)


def pixel_accuracy_normalized(predicted, real, threshold: float = 2.0):
  """pixel_accuracy for images in the network's normalised Lab space."""
  return pixel_accuracy(color.denormalize_lab(predicted), color.denormalize_lab(real), threshold)


# ----------------------------------------------------------------------------- RGB image metrics
# Per-image values, shape [B], from float RGB in [0, 255] of shape [B, H, W, 3].


def mae_rgb(predicted, real):
  """Mean absolute error over the RGB channels, 0..255 (the paper's MAE)."""
  return jnp.abs(predicted - real).mean(axis=(1, 2, 3))


def psnr(predicted, real, data_range: float = 255.0):
  mse = jnp.square(predicted - real).mean(axis=(1, 2, 3))
  return 10.0 * jnp.log10(data_range**2 / jnp.maximum(mse, 1e-10))


def _box_mean(x, size: int):
  window = (1, size, size, 1)
  return jax.lax.reduce_window(x, 0.0, jax.lax.add, window, (1, 1, 1, 1), "VALID") / size**2


def ssim(predicted, real, data_range: float = 255.0, window: int = 7):
  """SSIM as scikit-image's `structural_similarity` defaults: 7x7 uniform window, sample
  covariance, K1 0.01, K2 0.03, borders cropped, averaged over the channels."""
  c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
  mean_x, mean_y = _box_mean(predicted, window), _box_mean(real, window)
  covariance_norm = window**2 / (window**2 - 1.0)
  var_x = covariance_norm * (_box_mean(predicted * predicted, window) - mean_x**2)
  var_y = covariance_norm * (_box_mean(real * real, window) - mean_y**2)
  cov_xy = covariance_norm * (_box_mean(predicted * real, window) - mean_x * mean_y)
  numerator = (2 * mean_x * mean_y + c1) * (2 * cov_xy + c2)
  denominator = (mean_x**2 + mean_y**2 + c1) * (var_x + var_y + c2)
  return (numerator / denominator).mean(axis=(1, 2, 3))


def colorfulness(rgb, xp=jnp):
  """Hasler & Suesstrunk (2003): std and mean of the opponent channels rg and yb.

  Of each image of float RGB [..., H, W, 3] in [0, 255]; `xp` is jax.numpy or NumPy.
  """
  red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
  rg, yb = red - green, 0.5 * (red + green) - blue
  pixels = (-2, -1)
  std = xp.sqrt(rg.var(axis=pixels) + yb.var(axis=pixels))
  mean = xp.sqrt(rg.mean(axis=pixels) ** 2 + yb.mean(axis=pixels) ** 2)
  return std + 0.3 * mean


def with_derived_metrics(averages: dict) -> dict:
  """Adds the keys computed from averaged ones: each colourfulness gap to the real images
  (DESIGN section 5; for the model, `gray/` and `kept_l/` when present) and D's total loss."""
  derived = dict(averages)
  for prefix in ("", "gray/", "kept_l/"):
    if f"{prefix}colorfulness" in averages:
      gap = abs(averages[f"{prefix}colorfulness"] - averages["real_colorfulness"])
      derived[f"{prefix}delta_colorfulness"] = gap
  if "d_loss_real" in averages:
    derived["d_loss"] = averages["d_loss_real"] + averages["d_loss_fake"]
  return derived


def image_metrics(predicted_lab, real_uint8):
  """Every per-image metric of DESIGN section 5 for normalised-Lab predictions vs uint8 RGB truth."""
  predicted_rgb = color.normalized_lab_to_uint8_rgb(predicted_lab)
  return _scores(predicted_lab, predicted_rgb, real_uint8)


def output_metrics(predicted_uint8, real_uint8):
  """image_metrics of finished uint8 RGB outputs (what the colorize mode writes), [B, H, W, 3]."""
  return _scores(color.uint8_rgb_to_normalized_lab(predicted_uint8), predicted_uint8, real_uint8)


jitted_output_metrics = jax.jit(output_metrics)  # For callers outside a jitted step: evaluate, benchmarks.


def _scores(predicted_lab, predicted_uint8, real_uint8):
  real_lab = color.uint8_rgb_to_normalized_lab(real_uint8)
  predicted_rgb = predicted_uint8.astype(jnp.float32)
  real_rgb = real_uint8.astype(jnp.float32)
  return {
    "accuracy": pixel_accuracy_normalized(predicted_lab, real_lab),
    "mae_rgb": mae_rgb(predicted_rgb, real_rgb),
    "psnr": psnr(predicted_rgb, real_rgb),
    "ssim": ssim(predicted_rgb, real_rgb),
    "colorfulness": colorfulness(predicted_rgb),
    "real_colorfulness": colorfulness(real_rgb),
  }


def bootstrap_interval(values: np.ndarray, samples: int = 10_000, seed: int = 0) -> tuple:
  """95% percentile-bootstrap interval of the mean of per-image values (or of paired differences)."""
  values = np.asarray(values, np.float64)
  if len(values) == 0:
    return float("nan"), float("nan")
  rng = np.random.default_rng(seed)
  means = values[rng.integers(0, len(values), (samples, len(values)))].mean(axis=1)
  return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))
