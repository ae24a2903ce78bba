"""The GAN objective (DESIGN section 2) on logits and normalised Lab images, and the optional
class-rebalancing weights of the regression term (Zhang et al. 2016, section 2.2)."""

import jax.numpy as jnp
import numpy as np
import optax
from scipy import ndimage

from colorize import color
from colorize.networks import colour_bins


def sigmoid_cross_entropy(logits, label: float):
  return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)).mean()


def discriminator_loss(real_logits, fake_logits, label_smoothing: float = 0.0):
  """Sigmoid cross-entropy: real -> 1 - label_smoothing (one-sided), fake -> 0.

  Returns (total, real part, fake part).
  """
  real = sigmoid_cross_entropy(real_logits, 1.0 - label_smoothing)
  fake = sigmoid_cross_entropy(fake_logits, 0.0)
  return real + fake, real, fake


def generator_adversarial_loss(fake_logits):
  """Non-saturating: -log D(G(x)) rather than log(1 - D(G(x)))."""
  return sigmoid_cross_entropy(fake_logits, 1.0)


def l1_loss(prediction, target):
  return jnp.mean(jnp.abs(prediction - target))


def l2_loss(prediction, target):
  return jnp.mean(jnp.square(prediction - target))


def regression_loss(prediction, target, kind: str, pixel_weights=None):
  """Mean L1 or L2 error; `pixel_weights` [B, H, W] weight each pixel's error (all channels)."""
  if kind not in ("l1", "l2"):
    raise ValueError(f"loss.regression={kind!r} is unknown; use 'l1' or 'l2'.")
  if pixel_weights is None:
    return l1_loss(prediction, target) if kind == "l1" else l2_loss(prediction, target)
  error = jnp.abs(prediction - target) if kind == "l1" else jnp.square(prediction - target)
  return jnp.mean(error * pixel_weights[..., None])


# ----------------------------------------------------------------------------- class rebalancing


def ab_histogram(uint8_images) -> np.ndarray:
  """Pixel counts of the a,b bins over uint8 RGB images [N, H, W, 3], shape [colour_bins.AB_BINS**2]."""
  lab = color.normalize_lab(color.rgb_to_lab(np.asarray(uint8_images, np.float32) / 255.0, np))
  return np.bincount(colour_bins.ab_bin_index(lab, np).ravel(), minlength=colour_bins.AB_BINS**2).astype(np.float64)


def rebalancing_weights(counts: np.ndarray, mix: float, sigma: float = 5.0) -> np.ndarray:
  """Zhang et al.'s weight per a,b bin: 1 / ((1 - mix) * smoothed frequency + mix / #colours seen).

  The frequencies are smoothed by a Gaussian of `sigma` Lab units, and the weights scaled so
  their expectation over the training pixels is 1 (the loss keeps its scale). mix = 1: uniform.
  """
  frequency = counts.reshape(colour_bins.AB_BINS, colour_bins.AB_BINS) / max(counts.sum(), 1.0)
  smoothed = ndimage.gaussian_filter(frequency, sigma / colour_bins.AB_BIN, mode="constant")
  smoothed /= smoothed.sum()
  weights = 1.0 / ((1.0 - mix) * smoothed + mix / max(np.count_nonzero(counts), 1))
  weights /= np.sum(smoothed * weights)
  return weights.ravel().astype(np.float32)


def pixel_weights(weights, real_normalized_lab):
  """The rebalancing weight of each pixel's true a,b bin, [B, H, W, 3] -> [B, H, W]."""
  return weights[colour_bins.ab_bin_index(real_normalized_lab)]
