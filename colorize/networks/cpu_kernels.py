"""CPU kernels for the networks' convolutions and max pooling: XLA's results, computed faster on CPU.

XLA:CPU is slow on some shapes the U-Nets use (3x3 convolutions over tiny maps, thin first
layers, large-map weight gradients, max pooling's gradient, upsampled convolutions). The
networks reach this module through one hook, nn.Conv's `conv_general_dilated` argument
(`matmul_conv`, and `nearest_upsample_conv` after a 2x upsampling), and `max_pool_2x2` for
pooling. Each picks its way from the shapes: the same parameters, the same results up to
rounding, and on every other backend (or any shape it does not handle) XLA's own op. The
measurements behind every threshold are in `benchmarks/conv_ops.py` and `benchmarks/results/`.
"""

import contextlib
import contextvars
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

SMALL_MAP_PIXELS = 16  # Maps of at most 16 pixels (4x4, 2x8, ...): the U-Net's deepest levels at 32 and 64 px.
THIN_PATCH_VALUES = 36  # Input values per output pixel (kernel taps x channels): the first layers, 3x3 x 1 or 4.
NHWC = ("NHWC", "HWIO", "NHWC")

_XLA_ONLY = contextvars.ContextVar("xla_only", default=False)


@contextlib.contextmanager
def xla_ops():
  """Within it, every op traced is XLA's own: for exporting a network to other platforms and
  runtimes, where these CPU ways would only get in the way (and their choices need known shapes)."""
  token = _XLA_ONLY.set(True)
  try:
    yield
  finally:
    _XLA_ONLY.reset(token)


def _cpu_ways() -> bool:
  """Whether the ways of this module may be taken: tracing for the CPU, outside `xla_ops`."""
  return jax.default_backend() == "cpu" and not _XLA_ONLY.get()


def _taps_touching_data(kernel: int, pad_low: int, size: int, out: int) -> list:
  """Kernel offsets whose window, over all outputs, reads at least one real (unpadded) pixel: a range."""
  return [k for k in range(kernel) if k < pad_low + size and k + out > pad_low]


def _plain_cpu_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None, **kwargs) -> bool:
  """An NHWC, stride-1, undilated, ungrouped convolution with known padding and no other options, on CPU."""
  if lhs.ndim != 4 or not _cpu_ways():
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


def varying_axes(x) -> frozenset:
  """The shard_map axes over which `x` differs between devices, from JAX's type of `x`.

  The one place that reads JAX internals: jax 0.10 keeps them in `manual_axis_type.varying`,
  later versions in `vma`. A JAX without either fails here, loudly (tests/test_cpu_kernels.py),
  rather than sum gradients the wrong way.
  """
  aval = jax.typeof(x)
  if hasattr(aval, "manual_axis_type"):
    return frozenset(aval.manual_axis_type.varying)
  if hasattr(aval, "vma"):
    return frozenset(aval.vma)
  raise RuntimeError(
    f"jax {jax.__version__} keeps a value's varying mesh axes neither in manual_axis_type nor in vma: "
    "update colorize/cpu_kernels.varying_axes for it."
  )


def _xla_forward_conv_backward(padding, precision, route, residuals, cotangent):
  lhs, rhs = residuals
  if route == "matrix_gradients":
    return jax.vjp(lambda a, b: _matrix_conv(a, b, padding, precision), lhs, rhs)[1](cotangent)
  lhs_gradient = jax.vjp(lambda a: _xla_conv(a, rhs, padding, precision), lhs)[1](cotangent)[0]
  weight_gradient = flat_weight_gradient(lhs, cotangent, rhs.shape[:2], padding, precision)
  # Under shard_map, weights the same on every device (not cast to per-device before
  # differentiation) get the sum over devices, as JAX's own transpose gives them.
  summed_axes = tuple(varying_axes(weight_gradient) - varying_axes(rhs))
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
  if not _cpu_ways() or x.ndim != 4 or x.shape[1] % 2 or x.shape[2] % 2:
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
  if not _cpu_ways():
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


def depthwise_conv(lhs, rhs, window_strides, padding, **kwargs):
  """A depthwise NHWC convolution (one filter per channel: `feature_group_count` = channels) as
  the sum of its kernel taps' shifted, strided slices times per-channel weights (nn.Conv's hook).

  XLA:CPU runs grouped convolutions, and above all their gradients, far below its speed on dense
  ones; the slices and products fuse into one loop. Other convolutions and backends go to XLA.
  """
  channels = lhs.shape[-1]
  plain = (
    _cpu_ways()
    and lhs.ndim == 4
    and kwargs.get("feature_group_count", 1) == channels
    and rhs.shape[2:] == (1, channels)
    and jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, kwargs.get("dimension_numbers"))
    == jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, NHWC)
    and all(d == 1 for name in ("lhs_dilation", "rhs_dilation") for d in kwargs.get(name) or ())
    and kwargs.get("batch_group_count", 1) == 1
  )
  if not plain:
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, **kwargs)
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], window_strides, padding)
  (top, bottom), (left, right) = padding
  x = jnp.pad(lhs, [(0, 0), (top, bottom), (left, right), (0, 0)])
  kernel_h, kernel_w = rhs.shape[:2]
  stride_h, stride_w = window_strides
  out_h, out_w = (x.shape[1] - kernel_h) // stride_h + 1, (x.shape[2] - kernel_w) // stride_w + 1
  taps = [
    x[:, i : i + stride_h * (out_h - 1) + 1 : stride_h, j : j + stride_w * (out_w - 1) + 1 : stride_w] * rhs[i, j, 0]
    for i in range(kernel_h)
    for j in range(kernel_w)
  ]
  return functools.reduce(jnp.add, taps)
