"""Colorization metrics (DESIGN section 5), shared by the train step, validation and evaluate."""

import jax.numpy as jnp

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
