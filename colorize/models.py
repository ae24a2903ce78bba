"""The paper's networks (Nazeri et al. 2018, DESIGN section 2) as flax.linen Modules.

Layout is NHWC. The convolutions and max pooling go through `cpu_kernels` (nn.Conv's
`conv_general_dilated` hook): the same parameters and results, computed faster on CPU; every
other backend runs XLA's own ops. Every module takes `axis_name`: inside the data-parallel step it is the mesh
axis, so BatchNorm statistics are averaged over the whole global batch and dropout masks depend
on the global example index. Both make a step on N devices compute what one device would.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorize import color
from colorize import colour_bins
from colorize import cpu_kernels
from colorize import efficientnet

Dtype = Any


def _check_divisible(shape, factor: int, what: str):
  height, width = shape[1], shape[2]
  if height % factor or width % factor:
    raise ValueError(
      f"{what}: input size {height}x{width} is not a multiple of {factor}; "
      f"resize or pad the image to a multiple of {factor} (e.g. config.image_size)."
    )


def _channels(output: str) -> int:
  """The channels a generator predicts: L, a, b (the paper), or a, b with the input's L kept."""
  return 3 if output == "lab" else 2


def _lab_output(predicted, gray, output: str):
  """Normalised Lab from a generator's last layer: tanh, and the input's L in front for 'ab'."""
  x = jnp.tanh(predicted.astype(jnp.float32))
  return jnp.concatenate([gray.astype(jnp.float32), x], axis=-1) if output == "ab" else x


class BinsHead(nn.Module):
  """The vividness head: logits over the gamut's a,b bins (`colour_bins`), and Lab at the input's
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


def _colour_output(generator, x, gray, with_logits: bool):
  """A generator's last layer on its decoder's features `x`: Lab, or (Lab, bin logits or None).

  Called inside the generator's compact `__call__`, so the layers are the generator's own (the
  regression's 1x1 conv keeps its name, and older checkpoints load)."""
  if generator.colour_head == "bins":
    lab, logits = BinsHead(generator.temperature)(x, gray)
  else:
    channels = _channels(generator.output)
    conv = nn.Conv(channels, (1, 1), dtype=generator.dtype, conv_general_dilated=cpu_kernels.matmul_conv)
    lab, logits = _lab_output(conv(x), gray, generator.output), None
  return (lab, logits) if with_logits else lab


def per_example_keys(rng, local_batch: int, axis_name: str | None):
  """One key per example of this device's batch, from (rng, the example's index in the global
  batch): the same draws on 1 device and on N."""
  offset = jax.lax.axis_index(axis_name) * local_batch if axis_name else 0
  return jax.vmap(jax.random.fold_in, (None, 0))(rng, offset + jnp.arange(local_batch))


def _with_hints(generator, gray, hints):
  """The network's input: L, and for a generator with `hints` the three hint channels beside it
  (`hints.encode`; none given: zeros, the automatic mode)."""
  if not generator.hints:
    if hints is not None:
      raise ValueError("this generator has no hint channels: train it with config.model.hints=True to use hints.")
    return gray
  if hints is None:
    hints = jnp.zeros((*gray.shape[:3], 3), gray.dtype)
  if hints.shape != (*gray.shape[:3], 3):
    raise ValueError(f"hint channels of shape {hints.shape} do not match the input {gray.shape}: need [B, H, W, 3].")
  return jnp.concatenate([gray, hints.astype(gray.dtype)], axis=-1)


def _pooled_hints(hints, factor: int):
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


def _batch_norm(train: bool, momentum: float, axis_name, dtype):
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
      x = _batch_norm(train, self.bn_momentum, self.axis_name, self.dtype)(x)
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


class Generator(nn.Module):
  """U-Net: L (normalised, [B, H, W, 1]) -> normalised Lab [B, H, W, 3] in [-1, 1].

  `output="lab"` predicts all three channels (the paper); `output="ab"` predicts a and b and
  passes the input L through unchanged.
  """

  base_width: int = 64
  depth: int = 5
  output: str = "lab"
  upsample: str = "nearest"
  bn_momentum: float = 0.9
  axis_name: str | None = None
  dtype: Dtype = jnp.float32
  colour_head: str = "regression"  # 'bins': a,b from a distribution over bins (`BinsHead`).
  temperature: float = 1.0  # The bins head's annealed-mean temperature.
  hints: bool = False  # True: the user's colour hints (`colorize.hints`) enter beside L.

  @nn.compact
  def __call__(self, gray, train: bool = True, with_logits: bool = False, hints=None):
    _check_divisible(gray.shape, 2**self.depth, f"Generator (model.depth={self.depth})")
    if self.output not in ("lab", "ab"):
      raise ValueError(f"model.output={self.output!r} is unknown; use 'lab' or 'ab'.")
    x = _with_hints(self, gray, hints).astype(self.dtype)
    widths = [self.base_width * 2**i for i in range(self.depth)]
    skips = []
    for i, width in enumerate(widths):
      x = ConvNormAct(width, "leaky_relu", i > 0, self.bn_momentum, self.axis_name, self.dtype)(x, train)
      skips.append(x)
      x = cpu_kernels.max_pool_2x2(x)
    for width, skip in zip(reversed(widths), reversed(skips), strict=True):
      x = DecoderUnit(width // 2, self.upsample, self.bn_momentum, self.axis_name, self.dtype)(x, skip, train)
    return _colour_output(self, x, gray, with_logits)


class PretrainedEncoderGenerator(nn.Module):
  """EfficientNet-Lite0 (ImageNet weights, `efficientnet.py`) on L, a U-Net decoder -> Lab.

  The encoder sees the photo's gray as RGB (L with a = b = 0) and gives features at strides 2 to
  32; the decoder climbs back with a `DecoderUnit` per level, its skips the encoder's features
  and, last, the full-resolution L. Decoder widths: `base_width` at full resolution, doubling
  per level to 8x. The encoder's BatchNorm keeps its ImageNet statistics (inference mode); its
  parameters are the subtree 'encoder' (frozen, then fine-tuned slower: `steps.py`).
  """

  base_width: int = 32
  output: str = "ab"
  upsample: str = "nearest"
  bn_momentum: float = 0.9
  axis_name: str | None = None
  dtype: Dtype = jnp.float32
  train_encoder: bool = True  # False: no gradient through the encoder (frozen: 2.8x faster steps on CPU).
  colour_head: str = "regression"  # 'bins': a,b from a distribution over bins, predicted at half resolution.
  temperature: float = 1.0  # The bins head's annealed-mean temperature.
  hints: bool = False  # True: the hint channels join the decoder's input and every skip (pooled to its size).
  border: int = 0  # Inference: pixels of the photo mirrored around it, cropped off again (`with_border`).

  @nn.compact
  def __call__(self, gray, train: bool = True, with_logits: bool = False, hints=None):
    _check_divisible(gray.shape, ENCODER_STRIDE, "PretrainedEncoderGenerator (EfficientNet-Lite0's stride)")
    if self.border and not train:
      return with_border(lambda g, h: self.colour(g, train, with_logits, h), gray, hints, self.border, with_logits)
    return self.colour(gray, train, with_logits, hints)

  def colour(self, gray, train: bool, with_logits: bool, hints):
    """The network itself, on the input as given (part of the compact `__call__`: the same layers)."""
    lightness = color.denormalize_lightness(gray.astype(jnp.float32))
    features = efficientnet.EfficientNetLite0(self.dtype, name="encoder")(efficientnet.as_gray_rgb(lightness), True)
    if not self.train_encoder:
      features = jax.lax.stop_gradient(features)
    widths = [self.base_width * min(2**level, 8) for level in range(5)]  # Full resolution, stride 2, ..., 16.
    inputs = [gray, *features]  # Strides 1, 2, ..., 32.
    if self.hints:  # The encoder keeps its ImageNet input; the decoder sees the hints at every level.
      with_hints = jax.lax.slice_in_dim(_with_hints(self, gray, hints), 1, 4, axis=-1)
      inputs = [jnp.concatenate([x, _pooled_hints(with_hints, 2**i).astype(x.dtype)], -1) for i, x in enumerate(inputs)]
    levels = list(zip(reversed(widths), reversed(inputs[:-1]), strict=True))
    if self.colour_head == "bins":
      levels = levels[:-1]  # Colour at half resolution (Zhang et al.: a quarter), resized with L kept at full.
    x = inputs[-1]
    for width, skip in levels:
      x = DecoderUnit(width, self.upsample, self.bn_momentum, self.axis_name, self.dtype)(x, skip, train)
    return _colour_output(self, x, gray, with_logits)


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
  lab = _cropped(lab, border)
  if logits is not None:  # The bins head's logits lie at a fraction of the input's size.
    logits = _cropped(logits, border * logits.shape[1] // (gray.shape[1] + 2 * border))
  return (lab, logits) if with_logits else lab


def _cropped(x, border: int):
  """`x` [B, H, W, C] without `border` pixels on every side (lax slices: symbolic sizes export)."""
  x = jax.lax.slice_in_dim(x, border, x.shape[1] - border, axis=1)
  return jax.lax.slice_in_dim(x, border, x.shape[2] - border, axis=2)


def with_pretrained_encoder(model_config, variables: dict) -> dict:
  """G's variables with the encoder's ImageNet weights, for `model.encoder` 'efficientnet_lite0'."""
  if model_config.encoder == "unet":
    return variables
  pretrained = efficientnet.pretrained_variables()
  # The layers the generator uses: the classifier's head (conv_head, bn1, fc) is not among them.
  return {
    collection: {**tree, "encoder": {name: pretrained[collection][name] for name in tree["encoder"]}}
    for collection, tree in variables.items()
  }


class Discriminator(nn.Module):
  """(L, Lab) pair -> one real/fake logit per image.

  Units of 3x3 conv + BN + LeakyReLU(0.2) + dropout + 2x2 max-pool, widths doubling from
  `base_width`, then a dense layer to one logit. `norm='spectral'` replaces BatchNorm by
  spectral normalisation of every layer's weights (Miyato et al. 2018): D stays 1-Lipschitz,
  which keeps its gradients to G bounded; the power iteration's vectors live in `batch_stats`.
  """

  base_width: int = 64
  num_units: int = 4
  dropout_rate: float = 0.2
  norm: str = "batch"  # "batch" | "spectral"
  bn_momentum: float = 0.9
  axis_name: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, gray, lab, train: bool = True):
    _check_divisible(gray.shape, 2**self.num_units, f"Discriminator (model.disc_units={self.num_units})")
    x = jnp.concatenate([gray, lab], axis=-1).astype(self.dtype)
    for i in range(self.num_units):
      width = self.base_width * 2**i
      if self.norm == "spectral":
        conv = nn.Conv(width, (3, 3), padding="SAME", dtype=self.dtype, conv_general_dilated=cpu_kernels.matmul_conv)
        x = nn.leaky_relu(nn.SpectralNorm(conv)(x, update_stats=train), 0.2)
      else:
        x = ConvNormAct(width, "leaky_relu", i > 0, self.bn_momentum, self.axis_name, self.dtype)(x, train)
      x = PerExampleDropout(self.dropout_rate, self.axis_name)(x, deterministic=not train)
      x = cpu_kernels.max_pool_2x2(x)
    x = x.reshape(x.shape[0], -1)
    dense = nn.Dense(1, dtype=self.dtype)
    logits = nn.SpectralNorm(dense)(x, update_stats=train) if self.norm == "spectral" else dense(x)
    return logits.astype(jnp.float32)[:, 0]


class Pix2PixGenerator(nn.Module):
  """The pix2pix U-Net (Isola et al. 2017, `unet_256` at depth 8): 4x4 stride-2 convolutions.

  Encoder: conv (no BN on the first) with LeakyReLU(0.2) before every conv but the first; decoder:
  ReLU, 2x upsampling conv, BN, dropout 0.5 on the middle 512-wide levels, concat the skip.
  Widths `base_width * min(2**i, 8)`. `upsample="transpose"` is pix2pix's 4x4 transposed conv;
  "nearest" is resize + 4x4 conv, with the same parameters. Dropout is active in training only.
  """

  base_width: int = 64
  depth: int = 8
  output: str = "lab"
  upsample: str = "transpose"
  dropout_rate: float = 0.5
  bn_momentum: float = 0.9
  axis_name: str | None = None
  dtype: Dtype = jnp.float32
  hints: bool = False  # True: the user's colour hints (`colorize.hints`) enter beside L.

  def _upsample_conv(self, features: int, use_bias: bool):
    if self.upsample == "transpose":
      return nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME", use_bias=use_bias, dtype=self.dtype)
    if self.upsample == "nearest":
      conv = nn.Conv(features, (4, 4), padding="SAME", use_bias=use_bias, dtype=self.dtype)
      return lambda x: conv(cpu_kernels.upsample_nearest(x))
    raise ValueError(f"model.upsample={self.upsample!r} is unknown; use 'nearest' or 'transpose'.")

  @nn.compact
  def __call__(self, gray, train: bool = True, hints=None):
    _check_divisible(gray.shape, 2**self.depth, f"Pix2PixGenerator (model.depth={self.depth})")
    if self.output not in ("lab", "ab"):
      raise ValueError(f"model.output={self.output!r} is unknown; use 'lab' or 'ab'.")
    widths = [self.base_width * min(2**i, 8) for i in range(self.depth)]
    x, skips = _with_hints(self, gray, hints).astype(self.dtype), []
    for i, width in enumerate(widths):
      if i > 0:
        x = nn.leaky_relu(x, 0.2)
      x = nn.Conv(width, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False, dtype=self.dtype)(x)
      if 0 < i < self.depth - 1:  # pix2pix: no BN on the outermost and innermost encoder convs.
        x = _batch_norm(train, self.bn_momentum, self.axis_name, self.dtype)(x)
      skips.append(x)
    for i in reversed(range(1, self.depth)):  # Level i upsamples to the size of level i - 1.
      x = self._upsample_conv(widths[i - 1], use_bias=False)(nn.relu(x))
      x = _batch_norm(train, self.bn_momentum, self.axis_name, self.dtype)(x)
      if 4 <= i < self.depth - 1:
        x = PerExampleDropout(self.dropout_rate, self.axis_name)(x, deterministic=not train)
      x = jnp.concatenate([skips[i - 1], x], axis=-1)
    return _lab_output(self._upsample_conv(_channels(self.output), use_bias=True)(nn.relu(x)), gray, self.output)


class PatchDiscriminator(nn.Module):
  """The pix2pix PatchGAN on (L, Lab) pairs: one logit per overlapping patch, [B, h, w].

  `num_units` stride-2 4x4 convs (widths doubling from `base_width`, at most 8x), a stride-1 one,
  and a 4x4 conv to one channel; BN on all but the first, LeakyReLU(0.2). `num_units=3` is the
  70x70 PatchGAN of pix2pix (30x30 logits at 256 px).
  """

  base_width: int = 64
  num_units: int = 3
  bn_momentum: float = 0.9
  axis_name: str | None = None
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, gray, lab, train: bool = True):
    if min(gray.shape[1:3]) < 2**self.num_units * 4:
      raise ValueError(
        f"PatchDiscriminator (model.disc_units={self.num_units}) needs inputs of at least "
        f"{2**self.num_units * 4} px; use fewer model.disc_units or larger images."
      )
    x = jnp.concatenate([gray, lab], axis=-1).astype(self.dtype)
    strides = [2] * self.num_units + [1]
    for i, stride in enumerate(strides):
      width = self.base_width * min(2**i, 8)
      x = nn.Conv(width, (4, 4), (stride, stride), padding=((1, 1), (1, 1)), use_bias=i == 0, dtype=self.dtype)(x)
      if i > 0:
        x = _batch_norm(train, self.bn_momentum, self.axis_name, self.dtype)(x)
      x = nn.leaky_relu(x, 0.2)
    x = nn.Conv(1, (4, 4), padding=((1, 1), (1, 1)), dtype=self.dtype)(x)
    return x.astype(jnp.float32)[..., 0]


GENERATORS = {"paper": Generator, "pix2pix": Pix2PixGenerator}
DISCRIMINATORS = {"paper": Discriminator, "patchgan": PatchDiscriminator}


ENCODERS = ("unet", "efficientnet_lite0")
ENCODER_STRIDE = 32  # EfficientNet-Lite0's deepest features.


def input_multiple(model_config) -> int:
  """What the generator's input height and width must be multiples of."""
  return ENCODER_STRIDE if model_config.encoder != "unet" else 2**model_config.depth


def check_model_options(model_config) -> None:
  """Refuses networks that `create_models` cannot build, naming the field and the fix."""
  for field, value, known in (
    ("encoder", model_config.encoder, list(ENCODERS)),
    ("generator", model_config.generator, sorted(GENERATORS)),
    ("discriminator", model_config.discriminator, sorted(DISCRIMINATORS)),
    ("disc_norm", model_config.disc_norm, ["batch", "spectral"]),
    ("colour_head", model_config.colour_head, ["regression", "bins"]),
  ):
    if value not in known:
      raise ValueError(f"config.model.{field}={value!r} is unknown; use one of {known}.")
  if model_config.encoder != "unet" and model_config.generator != "paper":
    raise ValueError(
      f"config.model.encoder={model_config.encoder!r} replaces the paper generator's encoder: "
      "set model.generator='paper'."
    )
  if model_config.colour_head == "bins" and (model_config.generator != "paper" or model_config.output != "ab"):
    raise ValueError(
      "config.model.colour_head='bins' predicts a,b and keeps the input's L: set model.output='ab' and "
      "model.generator='paper'."
    )
  if not model_config.temperature > 0:
    raise ValueError(
      f"config.model.temperature={model_config.temperature} must be > 0 (1: the mean; 0.38: Zhang et al.'s vivid)."
    )
  if model_config.colour_head != "bins" and model_config.temperature != 1.0:
    raise ValueError(
      f"config.model.temperature={model_config.temperature} is for model.colour_head='bins'; "
      "this generator predicts its colours directly: leave it at 1."
    )
  if model_config.border and (model_config.encoder == "unet" or model_config.border % 16 or model_config.border < 0):
    raise ValueError(
      f"config.model.border={model_config.border} must be a multiple of 16 (the input stays a multiple of 32) "
      "for a pretrained encoder (model.encoder='efficientnet_lite0'); 0: none."
    )
  if model_config.disc_norm == "spectral" and model_config.discriminator != "paper":
    raise ValueError(
      "config.model.disc_norm='spectral' needs the paper discriminator: set model.discriminator='paper'."
    )


def create_models(model_config, dtype: str = "float32", axis_name: str | None = None):
  """Generator and discriminator from `config.model`; `axis_name` for the data-parallel step."""
  check_model_options(model_config)
  common = dict(bn_momentum=model_config.bn_momentum, axis_name=axis_name, dtype=jnp.dtype(dtype))
  options = dict(base_width=model_config.base_width, output=model_config.output, upsample=model_config.upsample)
  if model_config.colour_head == "bins":
    options |= dict(colour_head="bins", temperature=model_config.temperature)
  if model_config.hints:
    options |= dict(hints=True)
  if model_config.encoder == "efficientnet_lite0":
    generator = PretrainedEncoderGenerator(**options, **common, border=model_config.get("border", 0))
  else:
    generator = GENERATORS[model_config.generator](depth=model_config.depth, **options, **common)
  discriminator_options = dict(base_width=model_config.disc_base_width, num_units=model_config.disc_units)
  if model_config.discriminator == "paper":
    discriminator_options |= dict(dropout_rate=model_config.disc_dropout, norm=model_config.disc_norm)
  discriminator = DISCRIMINATORS[model_config.discriminator](**discriminator_options, **common)
  return generator, discriminator
