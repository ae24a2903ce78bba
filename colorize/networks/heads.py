"""A generator's last layer: Lab from its decoder's features, by regression or over a,b bins, and the
vividness knob that tilts a distribution towards bold colours."""

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorize.networks import colour_bins
from colorize.networks import cpu_kernels


def output_channels(output: str) -> int:
  """The channels a generator predicts: L, a, b (the paper), or a, b with the input's L kept."""
  return 3 if output == "lab" else 2


def lab_output(predicted, gray, output: str):
  """Normalised Lab from a generator's last layer: tanh, and the input's L in front for 'ab'."""
  x = jnp.tanh(predicted.astype(jnp.float32))
  return jnp.concatenate([gray.astype(jnp.float32), x], axis=-1) if output == "ab" else x


class BinsHead(nn.Module):
  """The bins head: logits over the gamut's a,b bins (`colour_bins`), and Lab at the input's
  size from their annealed mean at `temperature` (a,b resized bilinearly, the input's L kept).

  Computed in float32 whatever the network's dtype: 1/T magnifies the logits' rounding."""

  temperature: float = 1.0

  @nn.compact
  def __call__(self, x, gray):
    conv = nn.Conv(
      colour_bins.num_bins(),
      (1, 1),
      bias_init=colour_bins.gray_prior_logits,  # Starts at gray, as the regression head does.
      conv_general_dilated=cpu_kernels.matmul_conv,
    )
    logits = conv(x.astype(jnp.float32))
    ab = colour_bins.annealed_mean(logits, self.temperature)
    if ab.shape[1:3] != gray.shape[1:3]:
      ab = jax.image.resize(ab, (*gray.shape[:3], 2), "linear")
    return jnp.concatenate([gray.astype(jnp.float32), ab], axis=-1), logits


VIVID_HEAD_WIDTH = 64  # Channels of the vivid head's 3x3 convolution.
MAX_TILT = 1.0  # The vivid head's tilt at vividness 1 (`colour_bins.tilted_mean`); 2 measured worse (docs/quality.md).
BINS_COLDEST = 0.38  # A bins head's temperature at vividness 1 is its own times this (Zhang et al.'s 0.38 from 1).


class VividHead(nn.Module):
  """Logits over the gamut's a,b bins beside a regression head, read from the decoder's last
  features without changing them (they stay what the regression trained), and the log of the
  training photos' rebalancing weights (`log_weights`: set once from the photos, never trained)."""

  @nn.compact
  def __call__(self, x):
    x = jax.lax.stop_gradient(x.astype(jnp.float32))
    x = nn.relu(nn.Conv(VIVID_HEAD_WIDTH, (3, 3))(x))
    bins = colour_bins.num_bins()
    gray_start = colour_bins.gray_prior_logits
    to_bins = nn.Conv(bins, (1, 1), bias_init=gray_start, conv_general_dilated=cpu_kernels.matmul_conv)
    logits = to_bins(x)
    log_weights = self.param("log_weights", nn.initializers.zeros, (bins,))
    return logits, jax.lax.stop_gradient(log_weights)


def check_vividness(vividness: float, name: str) -> None:
  """Refuses a vividness outside [0, 1]; `name` is what the user set (a flag, a field)."""
  if not 0.0 <= vividness <= 1.0:
    raise ValueError(f"{name}={vividness} must lie in [0, 1] (0: the model's most faithful colour, 1: its boldest).")


def split_lab(lab) -> tuple:
  """(L [..., 1], a,b [..., 2]) by lax slices: with symbolic sizes (jax.export) indexing becomes a gather."""
  return jax.lax.slice_in_dim(lab, 0, 1, axis=-1), jax.lax.slice_in_dim(lab, 1, 3, axis=-1)


def vivid_lab(lab, logits, log_weights, vividness: float):
  """The regression's Lab with its a,b moved as far as tilting the bins' distribution by
  `vividness` * MAX_TILT moves their mean: where the distribution has a bolder mode, towards it;
  where it is sure of a muted colour, hardly at all. vividness 0 is the regression unchanged."""
  if not vividness:
    return lab
  shift = colour_bins.tilted_mean(logits, log_weights, vividness * MAX_TILT) - colour_bins.tilted_mean(
    logits, log_weights, 0.0
  )
  lightness, ab = split_lab(lab)
  return jnp.concatenate([lightness, jnp.clip(ab + shift, -1.0, 1.0)], axis=-1)


def saturated_lab(lab, vividness: float):
  """A generator with no colour distribution: its a,b scaled by 1 + vividness (plain saturation)."""
  if not vividness:
    return lab
  lightness, ab = split_lab(lab)
  return jnp.concatenate([lightness, jnp.clip(ab * (1.0 + vividness), -1.0, 1.0)], axis=-1)


def bins_temperature(temperature: float, vividness: float) -> float:
  """A bins head's annealed-mean temperature at `vividness`: its own at 0, its own times
  BINS_COLDEST at 1 (geometrically between: each step sharpens alike, whatever the model's own)."""
  return temperature * BINS_COLDEST**vividness


def colour_output(generator, x, gray, with_logits: bool):
  """A generator's last layer on its decoder's features `x`: Lab, or (Lab, bin logits or None).

  Called inside the generator's compact `__call__`, so the layers are the generator's own (the
  regression's 1x1 conv keeps its name, and older checkpoints load; a vivid head comes after it)."""
  vividness = generator.vividness
  if generator.colour_head == "bins":
    lab, logits = BinsHead(bins_temperature(generator.temperature, vividness))(x, gray)
    return (lab, logits) if with_logits else lab
  channels = output_channels(generator.output)
  conv = nn.Conv(channels, (1, 1), dtype=generator.dtype, conv_general_dilated=cpu_kernels.matmul_conv)
  lab = lab_output(conv(x), gray, generator.output)
  if not generator.vivid_head:
    return (lab, None) if with_logits else saturated_lab(lab, vividness)
  logits, log_weights = VividHead()(x)
  return (lab, logits) if with_logits else vivid_lab(lab, logits, log_weights, vividness)


def trunk_output(generator, x, gray, with_logits: bool):
  """`colour_output`, but for a generator training its vivid head alone (`frozen_trunk`): no
  gradient reaches the decoder's features or the regression's colour."""
  if not generator.frozen_trunk:
    return colour_output(generator, x, gray, with_logits)
  lab, logits = colour_output(generator, jax.lax.stop_gradient(x), gray, True)
  return (jax.lax.stop_gradient(lab), logits) if with_logits else jax.lax.stop_gradient(lab)
