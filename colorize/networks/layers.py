"""The generators' building blocks: convolution units, per-example dropout, hint channels, the mirrored border."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorize import hints as hints_lib
from colorize.networks import cpu_kernels

Dtype = Any


def check_divisible(shape, factor: int, what: str):
  height, width = shape[1], shape[2]
  if height % factor or width % factor:
    raise ValueError(
      f"{what}: input size {height}x{width} is not a multiple of {factor}; "
      f"resize or pad the image to a multiple of {factor} (e.g. config.image_size)."
    )


def per_example_keys(rng, local_batch: int, axis_name: str | None):
  """One key per example of this device's batch, from (rng, the example's index in the global
  batch): the same draws on 1 device and on N."""
  offset = jax.lax.axis_index(axis_name) * local_batch if axis_name else 0
  return jax.vmap(jax.random.fold_in, (None, 0))(rng, offset + jnp.arange(local_batch))


def with_hint_channels(generator, gray, hints):
  """The network's input: L, and for a generator with `hints` the three hint channels beside it
  (`hints.encode`; none given: zeros, the automatic mode)."""
  if not generator.hints:
    if hints is not None:
      raise ValueError("this generator has no hint channels: train it with config.model.hints=True to use hints.")
    return gray
  if hints is None:
    hints = hints_lib.none(*gray.shape[1:3], batch=gray.shape[:1]).astype(gray.dtype)
  if hints.shape != (*gray.shape[:3], 3):
    raise ValueError(f"hint channels of shape {hints.shape} do not match the input {gray.shape}: need [B, H, W, 3].")
  return jnp.concatenate([gray, hints.astype(gray.dtype)], axis=-1)


def pooled_hints(hints, factor: int):
  """Hint channels at a decoder level's resolution: in each factor x factor block the mean
  colour of its hinted pixels and a mask of 1 if it has any. (An average would thin a 3x3
  point to 9/256 of its colour at stride 16: measured, the decoder then learnt to ignore it.)"""
  if factor == 1:
    return hints
  batch, height, width, _ = hints.shape
  blocks = hints.reshape(batch, height // factor, factor, width // factor, factor, 3)
  # lax slices, not [..., :2]: with symbolic sizes (jax.export) indexing becomes a gather.
  colour_sums = jax.lax.slice_in_dim(blocks, 0, 2, axis=-1).sum(axis=(2, 4))
  hinted = jax.lax.slice_in_dim(blocks, 2, 3, axis=-1).sum(axis=(2, 4))
  colour = colour_sums / jnp.maximum(hinted, 1.0)
  return jnp.concatenate([colour, (hinted > 0).astype(hints.dtype)], axis=-1)


class PerExampleDropout(nn.Module):
  """Dropout whose mask for an example depends only on (rng, global example index).

  Plain nn.Dropout draws one mask for the local batch, so the masks change with the device
  count; this one makes 1 device and N devices drop exactly the same units.
  """

  rate: float
  axis_name: str | None = None

  @nn.compact
  def __call__(self, x, deterministic: bool):
    if deterministic or self.rate == 0.0:
      return x
    example_rngs = per_example_keys(self.make_rng("dropout"), x.shape[0], self.axis_name)
    keep = jax.vmap(lambda r: jax.random.bernoulli(r, 1.0 - self.rate, x.shape[1:]))(example_rngs)
    return jnp.where(keep, x / (1.0 - self.rate), 0).astype(x.dtype)


def batch_norm(train: bool, momentum: float, axis_name, dtype):
  return nn.BatchNorm(
    use_running_average=not train,
    momentum=momentum,
    epsilon=1e-5,
    axis_name=axis_name if train else None,
    dtype=dtype,
  )


class ConvNormAct(nn.Module):
  """3x3 conv + BatchNorm + activation; `normalize=False` gives the BN-free first layer."""

  features: int
  activation: str  # "leaky_relu" | "relu"
  normalize: bool = True
  bn_momentum: float = 0.9
  axis_name: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.Conv(
      self.features,
      (3, 3),
      padding="SAME",
      use_bias=not self.normalize,
      dtype=self.dtype,
      conv_general_dilated=cpu_kernels.matmul_conv,
    )(x)
    if self.normalize:
      x = batch_norm(train, self.bn_momentum, self.axis_name, self.dtype)(x)
    return nn.leaky_relu(x, 0.2) if self.activation == "leaky_relu" else nn.relu(x)


class DecoderUnit(nn.Module):
  """2x upsampling + 2x2 conv (halving channels), concat the skip, two 3x3 conv+BN+ReLU."""

  features: int
  upsample: str = "nearest"  # "nearest": resize + 2x2 conv; "transpose": 2x2 stride-2 transposed conv
  bn_momentum: float = 0.9
  axis_name: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, skip, train: bool):
    if self.upsample == "nearest":
      # XLA's 'SAME' for an even kernel pads bottom/right, as the PyTorch reference does.
      conv = nn.Conv(
        self.features, (2, 2), padding="SAME", dtype=self.dtype, conv_general_dilated=cpu_kernels.nearest_upsample_conv
      )
      x = conv(x)
    elif self.upsample == "transpose":
      x = nn.ConvTranspose(self.features, (2, 2), strides=(2, 2), dtype=self.dtype)(x)
    else:
      raise ValueError(f"model.upsample={self.upsample!r} is unknown; use 'nearest' or 'transpose'.")
    x = jnp.concatenate([x, skip.astype(x.dtype)], axis=-1)
    for _ in range(2):
      x = ConvNormAct(self.features, "relu", True, self.bn_momentum, self.axis_name, self.dtype)(x, train)
    return x


def with_border(network, gray, hints, border: int, with_logits: bool):
  """`network(gray, hints)` on the input mirrored by `border` pixels on every side, its output
  cropped back: no output pixel lies at the network's own corners and edges.

  Zero padding tells a network where its edges are (the encoder's stride-2 'SAME' convolutions
  and the decoder's 2x2 upsampling convolutions pad the bottom and right only), and the bundled
  decoder learnt a saturated green-cyan blob at its top-right corner from that, whatever the
  photo: a mirrored photo got it at the top-right too. Mirrored pixels continue the photo, so
  what lies under the corner is the photo's own content. Hints get none in the border."""
  pad = ((0, 0), (border, border), (border, border), (0, 0))
  padded_hints = None if hints is None else jnp.pad(hints, pad)
  out = network(jnp.pad(gray, pad, mode="reflect"), padded_hints)
  lab, logits = out if with_logits else (out, None)
  lab = cropped(lab, border)
  if logits is not None:  # The bins head's logits lie at a fraction of the input's size.
    logits = cropped(logits, border * logits.shape[1] // (gray.shape[1] + 2 * border))
  return (lab, logits) if with_logits else lab


def cropped(x, border: int):
  """`x` [B, H, W, C] without `border` pixels on every side (lax slices: symbolic sizes export)."""
  x = jax.lax.slice_in_dim(x, border, x.shape[1] - border, axis=1)
  return jax.lax.slice_in_dim(x, border, x.shape[2] - border, axis=2)
