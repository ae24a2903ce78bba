"""The paper's networks (Nazeri et al. 2018, DESIGN section 2) as flax.linen Modules.

Layout is NHWC. Every module takes `axis_name`: inside the data-parallel step it is the mesh
axis, so BatchNorm statistics are averaged over the whole global batch and dropout masks depend
on the global example index. Both make a step on N devices compute what one device would.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = Any


def _check_divisible(shape, factor: int, what: str):
  height, width = shape[1], shape[2]
  if height % factor or width % factor:
    raise ValueError(
      f"{what}: input size {height}x{width} is not a multiple of {factor}; "
      f"resize or pad the image to a multiple of {factor} (e.g. config.image_size)."
    )


SMALL_MAP_PIXELS = 16  # Maps of at most 16 pixels (4x4, 2x8, ...): the U-Net's deepest levels at 32 and 64 px.
THIN_PATCH_VALUES = 36  # Input values per output pixel (kernel taps x channels): the first layers, 3x3 x 1 or 4.
NHWC = ("NHWC", "HWIO", "NHWC")


def _taps_touching_data(kernel: int, pad_low: int, size: int, out: int) -> list:
  """Kernel offsets whose window, over all outputs, reads at least one real (unpadded) pixel: a range."""
  return [k for k in range(kernel) if k < pad_low + size and k + out > pad_low]


def _plain_cpu_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, **kwargs) -> bool:
  """An NHWC, stride-1, undilated, ungrouped convolution with known padding and no other options, on CPU."""
  if lhs.ndim != 4 or jax.default_backend() != "cpu":
    return False
  numbers = kwargs.pop("dimension_numbers", None)
  nhwc = numbers is not None and jax.lax.conv_dimension_numbers(
    lhs.shape, rhs.shape, numbers
  ) == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC)
  plain = all(s == 1 for s in window_strides) and all(d == 1 for d in (*(lhs_dilation or ()), *(rhs_dilation or ())))
  # Negative explicit padding (cropping) is XLA's alone.
  known_padding = padding in ("SAME", "VALID") or (
    not isinstance(padding, str) and all(pad >= 0 for pair in padding for pad in pair)
  )
  groups = kwargs.pop("feature_group_count", 1) == 1 and kwargs.pop("batch_group_count", 1) == 1
  kwargs.pop("precision", None)
  return nhwc and plain and known_padding and groups and not any(v is not None for v in kwargs.values())


FLAT_GRADIENT_MIN_PIXELS = 128 * 128  # At 256 px: the networks' first two levels.


def conv_route(lhs, rhs, window_strides, padding, **kwargs) -> str:
  """How `matmul_conv` computes this convolution, from the measurements in `benchmarks/conv_ops.py`.

  Only plain convolutions on CPU (NHWC, stride 1, undilated, ungrouped, known padding) leave XLA:
  - "matrix": one matrix product over the patches, for small maps (XLA:CPU runs 3x3 convolutions
    over 1x1 and 2x2 maps about 100x below its speed on larger ones) and 1x1 kernels.
  - "matrix_gradients": XLA's forward pass and the matrix product's gradients, for thin patches
    (the first layers, 3x3 over 1 or 4 channels: XLA's backward pass is 2-5x slower; a matrix
    forward pass added 0.4-0.5 s of compilation for every new photo shape).
  - "flat_weight_gradient": XLA's forward pass and input gradient, and `flat_weight_gradient`, for
    3x3 kernels over maps of at least 128x128 pixels, batches of at least 4 and channel counts
    differing at least 2x (XLA's weight gradient is 1.2-3.4x slower there: `conv_ops --weight_gradient`).
  - "xla": everything else.
  """
  if not _plain_cpu_conv(lhs, rhs, window_strides, padding, **kwargs):
    return "xla"
  batch, height, width, channels_in = lhs.shape
  taps, channels_out = rhs.shape[0] * rhs.shape[1], rhs.shape[3]
  if height * width <= SMALL_MAP_PIXELS or taps == 1:
    return "matrix"
  if taps * channels_in <= THIN_PATCH_VALUES:
    return "matrix_gradients"
  large = batch >= 4 and height * width >= FLAT_GRADIENT_MIN_PIXELS
  if large and taps == 9 and max(channels_in, channels_out) >= 2 * min(channels_in, channels_out):
    return "flat_weight_gradient"
  return "xla"


def flat_weight_gradient(lhs, cotangent, kernel_shape, padding, precision=None):
  """The weight gradient of a stride-1 NHWC convolution as one matrix product per kernel tap.

  Over the padded images flattened to rows (cotangent zero where no output pixel lies), tap
  (i, j) pairs row r of the cotangent with row r + i * padded_width + j of the input: a
  contiguous slice, so each tap is a plain product with the batch and pixels contracted. The
  thinner of the two sides is the one sliced (copied). For finite inputs: an inf reaches the
  neighbouring rows' products as 0 * inf.
  """
  kernel_h, kernel_w = kernel_shape
  (top, bottom), (left, right) = padding
  x = jnp.pad(lhs, [(0, 0), (top, bottom), (left, right), (0, 0)])
  batch, padded_h, padded_w, channels_in = x.shape
  out_h, out_w, channels_out = cotangent.shape[1:]
  g = jnp.pad(cotangent, [(0, 0), (0, padded_h - out_h), (0, padded_w - out_w), (0, 0)])
  rows = batch * padded_h * padded_w
  x, g = x.reshape(rows, channels_in), g.reshape(rows, channels_out)
  reach = (kernel_h - 1) * padded_w + kernel_w - 1  # The largest tap offset.
  offsets = [i * padded_w + j for i in range(kernel_h) for j in range(kernel_w)]
  contract_rows = (((0,), (0,)), ((), ()))
  if channels_in <= channels_out:
    x = jnp.pad(x, [(0, reach), (0, 0)])
    pairs = [(x[o : o + rows], g) for o in offsets]
  else:
    g = jnp.pad(g, [(reach, 0), (0, 0)])
    pairs = [(x, g[reach - o : reach - o + rows]) for o in offsets]
  taps = [jax.lax.dot_general(a, b, contract_rows, precision=precision) for a, b in pairs]
  return jnp.stack(taps).reshape(kernel_h, kernel_w, channels_in, channels_out)


def _xla_conv(lhs, rhs, padding, precision):
  return jax.lax.conv_general_dilated(lhs, rhs, (1, 1), padding, dimension_numbers=NHWC, precision=precision)


def _matrix_conv(lhs, rhs, padding, precision):
  """The convolution as im2col + one 2-D product, over the kernel taps that reach real pixels."""
  height, width = lhs.shape[1:3]
  kernel_h, kernel_w = rhs.shape[:2]
  (top, bottom), (left, right) = padding
  out_h, out_w = height + top + bottom - kernel_h + 1, width + left + right - kernel_w + 1
  x = jnp.pad(lhs, [(0, 0), (top, bottom), (left, right), (0, 0)])
  rows = _taps_touching_data(kernel_h, top, height, out_h)
  columns = _taps_touching_data(kernel_w, left, width, out_w)
  patches = jnp.concatenate([x[:, i : i + out_h, j : j + out_w, :] for i in rows for j in columns], axis=-1)
  # The taps form one block of the kernel: a slice and a reshape, no copy (a concatenation of the
  # taps fused into the product and made it 2.5x slower on 4x4 maps).
  kernel = rhs[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1].reshape(-1, rhs.shape[-1])
  # A 2-D product, so that both gradients are 2-D products as well.
  out = jnp.dot(patches.reshape(-1, patches.shape[-1]), kernel, precision=precision)
  return out.reshape(*patches.shape[:3], kernel.shape[-1])


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _xla_forward_conv(lhs, rhs, padding, precision, route: str):
  """XLA's convolution, differentiated the `conv_route` way: "matrix_gradients" or "flat_weight_gradient"."""
  return _xla_conv(lhs, rhs, padding, precision)


def _xla_forward_conv_forward(lhs, rhs, padding, precision, route):
  return _xla_conv(lhs, rhs, padding, precision), (lhs, rhs)


def _varying_axes(x) -> frozenset:
  """The shard_map axes over which `x` differs between devices (jax 0.10: manual_axis_type; later: vma)."""
  aval = jax.typeof(x)
  return aval.manual_axis_type.varying if hasattr(aval, "manual_axis_type") else frozenset(getattr(aval, "vma", ()))


def _xla_forward_conv_backward(padding, precision, route, residuals, cotangent):
  lhs, rhs = residuals
  if route == "matrix_gradients":
    return jax.vjp(lambda a, b: _matrix_conv(a, b, padding, precision), lhs, rhs)[1](cotangent)
  lhs_gradient = jax.vjp(lambda a: _xla_conv(a, rhs, padding, precision), lhs)[1](cotangent)[0]
  weight_gradient = flat_weight_gradient(lhs, cotangent, rhs.shape[:2], padding, precision)
  # Under shard_map, weights the same on every device (not cast to per-device before
  # differentiation) get the sum over devices, as JAX's own transpose gives them.
  summed_axes = tuple(_varying_axes(weight_gradient) - _varying_axes(rhs))
  return lhs_gradient, jax.lax.psum(weight_gradient, summed_axes) if summed_axes else weight_gradient


_xla_forward_conv.defvjp(_xla_forward_conv_forward, _xla_forward_conv_backward)


def matmul_conv(lhs, rhs, window_strides, padding, **kwargs):
  """`lax.conv_general_dilated` (nn.Conv's hook), by matrix products where XLA:CPU is slow.

  `conv_route` picks the way; every way has the same parameters and the same results up to
  rounding.
  """
  route = conv_route(lhs, rhs, window_strides, padding, **kwargs)
  if route == "xla":
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, **kwargs)
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  padding = tuple(tuple(pair) for pair in padding)  # Hashable: a static argument of the custom gradients.
  if route == "matrix":
    return _matrix_conv(lhs, rhs, padding, kwargs.get("precision"))
  return _xla_forward_conv(lhs, rhs, padding, kwargs.get("precision"), route)


def max_pool_2x2(x):
  """2x2 stride-2 max pooling (NHWC), `nn.max_pool`'s values and gradients; a cheap gradient on CPU.

  XLA:CPU computes max pooling's gradient by tracking every window's argmax with integer iotas;
  here it is a mask of each window's first maximum (row-major, as XLA's select-and-scatter picks
  among ties), all elementwise: the 64x16 training step went from 2.93 s to 2.43 s (means of A/B pairs in
  `benchmarks/results/cpu-step-attempts-2cores-2026-12-06.jsonl`). For finite inputs (a window
  with a NaN gives its gradient elsewhere). Odd sizes and other backends go to `nn.max_pool`.
  """
  if jax.default_backend() != "cpu" or x.ndim != 4 or x.shape[1] % 2 or x.shape[2] % 2:
    return nn.max_pool(x, (2, 2), strides=(2, 2))
  return _even_max_pool_2x2(x)


def _windows(x):
  """[N, H, W, C] -> [N, H/2, row in window, W/2, column in window, C]."""
  batch, height, width, channels = x.shape
  return x.reshape(batch, height // 2, 2, width // 2, 2, channels)


@jax.custom_vjp
def _even_max_pool_2x2(x):
  return _windows(x).max(axis=(2, 4))


def _max_pool_forward(x):
  pooled = _even_max_pool_2x2(x)
  return pooled, (x, pooled)


def _max_pool_backward(residuals, cotangent):
  x, pooled = residuals
  windows = _windows(x)
  taken = jnp.zeros(pooled.shape, bool)
  rows = []
  for row in (0, 1):
    columns = []
    for column in (0, 1):
      first_maximum = (windows[:, :, row, :, column, :] == pooled) & ~taken
      taken = taken | first_maximum
      columns.append(jnp.where(first_maximum, cotangent, 0))
    rows.append(jnp.stack(columns, axis=3))
  return (jnp.stack(rows, axis=2).reshape(x.shape),)


_even_max_pool_2x2.defvjp(_max_pool_forward, _max_pool_backward)


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
    rng = self.make_rng("dropout")
    local_batch = x.shape[0]
    offset = jax.lax.axis_index(self.axis_name) * local_batch if self.axis_name else 0
    example_rngs = jax.vmap(jax.random.fold_in, (None, 0))(rng, offset + jnp.arange(local_batch))
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
      conv_general_dilated=matmul_conv,
    )(x)
    if self.normalize:
      x = _batch_norm(train, self.bn_momentum, self.axis_name, self.dtype)(x)
    return nn.leaky_relu(x, 0.2) if self.activation == "leaky_relu" else nn.relu(x)


def upsample_nearest(x):
  """2x nearest-neighbour upsampling as broadcast + reshape: XLA fuses it, and its gradient is a
  sum over 2x2 blocks (jax.image.resize lowers to a gather whose gradient is a slow scatter)."""
  batch, height, width, channels = x.shape
  x = jnp.broadcast_to(x[:, :, None, :, None, :], (batch, height, 2, width, 2, channels))
  return x.reshape(batch, 2 * height, 2 * width, channels)


def nearest_upsample_conv(lhs, rhs, window_strides, padding, **kwargs):
  """2x nearest-neighbour upsampling of `lhs`, then `rhs`'s 2x2 'SAME' convolution (nn.Conv's hook).

  On CPU it is computed at `lhs`'s size: each output phase (row and column parity) is a 1x1, 1x2,
  2x1 or 2x2 convolution of `lhs` with sums of `rhs`'s taps. That is 9/16 of the multiply-adds
  and no upsampled map; XLA:CPU ran the upsampled form's backward pass up to 3.1x slower
  (`benchmarks/conv_ops.py --upsampled`). Same parameters, same results up to rounding.
  """
  if jax.default_backend() != "cpu":
    return jax.lax.conv_general_dilated(upsample_nearest(lhs), rhs, window_strides, padding, **kwargs)
  if rhs.shape[:2] != (2, 2) or tuple(window_strides) != (1, 1) or padding != "SAME":
    raise ValueError(f"nearest_upsample_conv: a 2x2 stride-1 'SAME' kernel, not {rhs.shape[:2]} {padding!r}.")

  def conv(kernel, row_pad, column_pad):
    return matmul_conv(lhs, kernel, (1, 1), [(0, row_pad), (0, column_pad)], **kwargs)

  # An even output row reads one input row through both kernel rows; an odd one reads two rows.
  rows_summed = rhs[0:1] + rhs[1:2]
  columns_summed = rhs[:, 0:1] + rhs[:, 1:2]
  phases = [
    [conv(rows_summed[:, 0:1] + rows_summed[:, 1:2], 0, 0), conv(rows_summed, 0, 1)],
    [conv(columns_summed, 1, 0), conv(rhs, 1, 1)],
  ]
  out = jnp.stack([jnp.stack(row, axis=3) for row in phases], axis=2)  # [N, H, row parity, W, column parity, O]
  batch, height, width, _ = lhs.shape
  return out.reshape(batch, 2 * height, 2 * width, rhs.shape[-1])


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
        self.features, (2, 2), padding="SAME", dtype=self.dtype, conv_general_dilated=nearest_upsample_conv
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

  @nn.compact
  def __call__(self, gray, train: bool = True):
    _check_divisible(gray.shape, 2**self.depth, f"Generator (model.depth={self.depth})")
    if self.output not in ("lab", "ab"):
      raise ValueError(f"model.output={self.output!r} is unknown; use 'lab' or 'ab'.")
    x = gray.astype(self.dtype)
    widths = [self.base_width * 2**i for i in range(self.depth)]
    skips = []
    for i, width in enumerate(widths):
      x = ConvNormAct(width, "leaky_relu", i > 0, self.bn_momentum, self.axis_name, self.dtype)(x, train)
      skips.append(x)
      x = max_pool_2x2(x)
    for width, skip in zip(reversed(widths), reversed(skips), strict=True):
      x = DecoderUnit(width // 2, self.upsample, self.bn_momentum, self.axis_name, self.dtype)(x, skip, train)
    channels = 3 if self.output == "lab" else 2
    x = nn.Conv(channels, (1, 1), dtype=self.dtype, conv_general_dilated=matmul_conv)(x)
    x = jnp.tanh(x.astype(jnp.float32))
    if self.output == "ab":
      x = jnp.concatenate([gray.astype(jnp.float32), x], axis=-1)
    return x


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
        conv = nn.Conv(width, (3, 3), padding="SAME", dtype=self.dtype, conv_general_dilated=matmul_conv)
        x = nn.leaky_relu(nn.SpectralNorm(conv)(x, update_stats=train), 0.2)
      else:
        x = ConvNormAct(width, "leaky_relu", i > 0, self.bn_momentum, self.axis_name, self.dtype)(x, train)
      x = PerExampleDropout(self.dropout_rate, self.axis_name)(x, deterministic=not train)
      x = max_pool_2x2(x)
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

  def _upsample_conv(self, features: int, use_bias: bool):
    if self.upsample == "transpose":
      return nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding="SAME", use_bias=use_bias, dtype=self.dtype)
    if self.upsample == "nearest":
      conv = nn.Conv(features, (4, 4), padding="SAME", use_bias=use_bias, dtype=self.dtype)
      return lambda x: conv(upsample_nearest(x))
    raise ValueError(f"model.upsample={self.upsample!r} is unknown; use 'nearest' or 'transpose'.")

  @nn.compact
  def __call__(self, gray, train: bool = True):
    _check_divisible(gray.shape, 2**self.depth, f"Pix2PixGenerator (model.depth={self.depth})")
    if self.output not in ("lab", "ab"):
      raise ValueError(f"model.output={self.output!r} is unknown; use 'lab' or 'ab'.")
    widths = [self.base_width * min(2**i, 8) for i in range(self.depth)]
    x, skips = gray.astype(self.dtype), []
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
    channels = 3 if self.output == "lab" else 2
    x = jnp.tanh(self._upsample_conv(channels, use_bias=True)(nn.relu(x)).astype(jnp.float32))
    if self.output == "ab":
      x = jnp.concatenate([gray.astype(jnp.float32), x], axis=-1)
    return x


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


def create_models(model_config, dtype: str = "float32", axis_name: str | None = None):
  """Generator and discriminator from `config.model`; `axis_name` for the data-parallel step."""
  common = dict(bn_momentum=model_config.bn_momentum, axis_name=axis_name, dtype=jnp.dtype(dtype))
  generators = {"paper": Generator, "pix2pix": Pix2PixGenerator}
  discriminators = {"paper": Discriminator, "patchgan": PatchDiscriminator}
  if model_config.generator not in generators:
    raise ValueError(f"model.generator={model_config.generator!r} is unknown; use one of {sorted(generators)}.")
  if model_config.discriminator not in discriminators:
    raise ValueError(
      f"model.discriminator={model_config.discriminator!r} is unknown; use one of {sorted(discriminators)}."
    )
  generator = generators[model_config.generator](
    base_width=model_config.base_width,
    depth=model_config.depth,
    output=model_config.output,
    upsample=model_config.upsample,
    **common,
  )
  discriminator_options = dict(base_width=model_config.disc_base_width, num_units=model_config.disc_units)
  if model_config.discriminator == "paper":
    discriminator_options |= dict(dropout_rate=model_config.disc_dropout, norm=model_config.disc_norm)
  elif model_config.disc_norm != "batch":
    raise ValueError(
      "model.disc_norm='spectral' is implemented for the paper discriminator: use discriminator='paper'."
    )
  discriminator = discriminators[model_config.discriminator](**discriminator_options, **common)
  return generator, discriminator
