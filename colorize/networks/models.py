"""The paper's networks (Nazeri et al. 2018, DESIGN section 2) as flax.linen Modules.

Layout is NHWC. The convolutions and max pooling go through `cpu_kernels` (nn.Conv's
`conv_general_dilated` hook): the same parameters and results, computed faster on CPU; every
other backend runs XLA's own ops. Every module takes `axis_name`: inside the data-parallel step it is the mesh
axis, so BatchNorm statistics are averaged over the whole global batch and dropout masks depend
on the global example index. Both make a step on N devices compute what one device would.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from colorize import color
from colorize.networks import colour_bins
from colorize.networks import cpu_kernels
from colorize.networks import efficientnet
from colorize.networks import heads
from colorize.networks import layers

Dtype = layers.Dtype


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
  vivid_head: bool = False  # A regression head's companion distribution over bins (`VividHead`).
  vividness: float = 0.0  # Inference: 0 the faithful colour, 1 the boldest (`heads.colour_output`).
  frozen_trunk: bool = False  # Training the vivid head alone: everything else in inference mode, no gradient.

  @nn.compact
  def __call__(self, gray, train: bool = True, with_logits: bool = False, hints=None):
    layers.check_divisible(gray.shape, 2**self.depth, f"Generator (model.depth={self.depth})")
    if self.output not in ("lab", "ab"):
      raise ValueError(f"model.output={self.output!r} is unknown; use 'lab' or 'ab'.")
    x = layers.with_hint_channels(self, gray, hints).astype(self.dtype)
    widths = [self.base_width * 2**i for i in range(self.depth)]
    skips = []
    trunk_trains = train and not self.frozen_trunk
    for i, width in enumerate(widths):
      x = layers.ConvNormAct(width, "leaky_relu", i > 0, self.bn_momentum, self.axis_name, self.dtype)(x, trunk_trains)
      skips.append(x)
      x = cpu_kernels.max_pool_2x2(x)
    for width, skip in zip(reversed(widths), reversed(skips), strict=True):
      unit = layers.DecoderUnit(width // 2, self.upsample, self.bn_momentum, self.axis_name, self.dtype)
      x = unit(x, skip, trunk_trains)
    return heads.trunk_output(self, x, gray, with_logits)


class PretrainedEncoderGenerator(nn.Module):
  """EfficientNet-Lite0 (ImageNet weights, `efficientnet.py`) on L, a U-Net decoder -> Lab.

  The encoder sees the photo's gray as RGB (L with a = b = 0) and gives features at strides 2 to
  32; the decoder climbs back with a `layers.DecoderUnit` per level, its skips the encoder's features
  and, last, the full-resolution L. Decoder widths: `base_width` at full resolution, doubling
  per level to 8x. The encoder's BatchNorm keeps its ImageNet statistics (inference mode); its
  parameters are the subtree 'encoder' (frozen, then fine-tuned slower: `training/optim.py`).
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
  border: int = 0  # Inference: pixels of the photo mirrored around it, cropped off again (`layers.with_border`).
  vivid_head: bool = False  # A regression head's companion distribution over bins (`VividHead`).
  vividness: float = 0.0  # Inference: 0 the faithful colour, 1 the boldest (`heads.colour_output`).
  frozen_trunk: bool = False  # Training the vivid head alone: everything else in inference mode, no gradient.

  @nn.compact
  def __call__(self, gray, train: bool = True, with_logits: bool = False, hints=None):
    layers.check_divisible(gray.shape, ENCODER_STRIDE, "PretrainedEncoderGenerator (EfficientNet-Lite0's stride)")
    if self.border and not train:
      return layers.with_border(
        lambda g, h: self.colour(g, train, with_logits, h), gray, hints, self.border, with_logits
      )
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
      with_hints = jax.lax.slice_in_dim(layers.with_hint_channels(self, gray, hints), 1, 4, axis=-1)
      inputs = [
        jnp.concatenate([x, layers.pooled_hints(with_hints, 2**i).astype(x.dtype)], -1) for i, x in enumerate(inputs)
      ]
    levels = list(zip(reversed(widths), reversed(inputs[:-1]), strict=True))
    if self.colour_head == "bins":
      levels = levels[:-1]  # Colour at half resolution (Zhang et al.: a quarter), resized with L kept at full.
    x = inputs[-1]
    trunk_trains = train and not self.frozen_trunk
    for width, skip in levels:
      x = layers.DecoderUnit(width, self.upsample, self.bn_momentum, self.axis_name, self.dtype)(x, skip, trunk_trains)
    return heads.trunk_output(self, x, gray, with_logits)


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
    layers.check_divisible(gray.shape, 2**self.num_units, f"Discriminator (model.disc_units={self.num_units})")
    x = jnp.concatenate([gray, lab], axis=-1).astype(self.dtype)
    for i in range(self.num_units):
      width = self.base_width * 2**i
      if self.norm == "spectral":
        conv = nn.Conv(width, (3, 3), padding="SAME", dtype=self.dtype, conv_general_dilated=cpu_kernels.matmul_conv)
        x = nn.leaky_relu(nn.SpectralNorm(conv)(x, update_stats=train), 0.2)
      else:
        x = layers.ConvNormAct(width, "leaky_relu", i > 0, self.bn_momentum, self.axis_name, self.dtype)(x, train)
      x = layers.PerExampleDropout(self.dropout_rate, self.axis_name)(x, deterministic=not train)
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
  vividness: float = 0.0  # Inference: a,b scaled by 1 + vividness (no distribution to tilt).

  def _upsample_conv(self, features: int, use_bias: bool):
    if self.upsample == "transpose":
      return nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME", use_bias=use_bias, dtype=self.dtype)
    if self.upsample == "nearest":
      conv = nn.Conv(features, (4, 4), padding="SAME", use_bias=use_bias, dtype=self.dtype)
      return lambda x: conv(cpu_kernels.upsample_nearest(x))
    raise ValueError(f"model.upsample={self.upsample!r} is unknown; use 'nearest' or 'transpose'.")

  @nn.compact
  def __call__(self, gray, train: bool = True, hints=None):
    layers.check_divisible(gray.shape, 2**self.depth, f"Pix2PixGenerator (model.depth={self.depth})")
    if self.output not in ("lab", "ab"):
      raise ValueError(f"model.output={self.output!r} is unknown; use 'lab' or 'ab'.")
    widths = [self.base_width * min(2**i, 8) for i in range(self.depth)]
    x, skips = layers.with_hint_channels(self, gray, hints).astype(self.dtype), []
    for i, width in enumerate(widths):
      if i > 0:
        x = nn.leaky_relu(x, 0.2)
      x = nn.Conv(width, (4, 4), strides=(2, 2), padding=((1, 1), (1, 1)), use_bias=False, dtype=self.dtype)(x)
      if 0 < i < self.depth - 1:  # pix2pix: no BN on the outermost and innermost encoder convs.
        x = layers.batch_norm(train, self.bn_momentum, self.axis_name, self.dtype)(x)
      skips.append(x)
    for i in reversed(range(1, self.depth)):  # Level i upsamples to the size of level i - 1.
      x = self._upsample_conv(widths[i - 1], use_bias=False)(nn.relu(x))
      x = layers.batch_norm(train, self.bn_momentum, self.axis_name, self.dtype)(x)
      if 4 <= i < self.depth - 1:
        x = layers.PerExampleDropout(self.dropout_rate, self.axis_name)(x, deterministic=not train)
      x = jnp.concatenate([skips[i - 1], x], axis=-1)
    lab = heads.lab_output(
      self._upsample_conv(heads.output_channels(self.output), use_bias=True)(nn.relu(x)), gray, self.output
    )
    return heads.saturated_lab(lab, self.vividness)


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
        x = layers.batch_norm(train, self.bn_momentum, self.axis_name, self.dtype)(x)
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
  colour_bins.check_temperature(model_config.temperature, "config.model.temperature")
  if model_config.colour_head != "bins" and model_config.temperature != 1.0:
    raise ValueError(
      f"config.model.temperature={model_config.temperature} is for model.colour_head='bins'; "
      "this generator predicts its colours directly: leave it at 1."
    )
  vivid_head = model_config.get("vivid_head", False)
  if vivid_head and (model_config.colour_head != "regression" or model_config.generator != "paper"):
    raise ValueError(
      "config.model.vivid_head=True sits beside a regression head of the paper generator: set "
      "model.colour_head='regression' and model.generator='paper'."
    )
  heads.check_vividness(model_config.get("vividness", 0.0), "config.model.vividness")
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
  if model_config.get("vivid_head", False):
    options |= dict(vivid_head=True)
  if model_config.get("vividness", 0.0):
    options |= dict(vividness=float(model_config.vividness))
  if model_config.encoder == "efficientnet_lite0":
    generator = PretrainedEncoderGenerator(**options, **common, border=model_config.get("border", 0))
  else:
    generator = GENERATORS[model_config.generator](depth=model_config.depth, **options, **common)
  discriminator_options = dict(base_width=model_config.disc_base_width, num_units=model_config.disc_units)
  if model_config.discriminator == "paper":
    discriminator_options |= dict(dropout_rate=model_config.disc_dropout, norm=model_config.disc_norm)
  discriminator = DISCRIMINATORS[model_config.discriminator](**discriminator_options, **common)
  return generator, discriminator
