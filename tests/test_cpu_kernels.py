"""The CPU kernels (colorize/networks/cpu_kernels.py): XLA's values and gradients, and the JAX internals they read."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from colorize.networks import cpu_kernels


def assert_same_values_and_gradients(ours, reference, lhs, rhs, cotangent, atol=1e-5):
  """`ours(lhs, rhs)` equals `reference(lhs, rhs)`, and so do both gradients for an uneven cotangent."""
  got, got_vjp = jax.vjp(ours, lhs, rhs)
  want, want_vjp = jax.vjp(reference, lhs, rhs)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  for got_grad, want_grad in zip(got_vjp(cotangent), want_vjp(cotangent), strict=True):
    np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=atol)


@pytest.mark.parametrize(
  "height,width,kernel,channels,route",
  # Small maps and 1x1 kernels: the matrix product; thin patches (3x3 x 1, 3x3 x 4 = 36 values): its gradients.
  [(1, 1, 3, 5, "matrix"), (4, 4, 2, 5, "matrix"), (4, 4, 3, 5, "matrix"), (2, 4, 3, 5, "matrix")]
  + [(6, 5, 1, 5, "matrix"), (6, 5, 3, 1, "matrix_gradients"), (5, 6, 3, 4, "matrix_gradients")]
  + [pytest.param(*case, 5, "matrix", marks=pytest.mark.slow) for case in [(2, 2, 3), (1, 1, 2), (2, 2, 2), (1, 3, 3)]],
)
def test_matmul_conv_matches_xla_convolution_and_its_gradients(height, width, kernel, channels, route):
  lhs = jax.random.normal(jax.random.key(0), (3, height, width, channels))
  rhs = jax.random.normal(jax.random.key(1), (kernel, kernel, channels, 7))
  cotangent = jax.random.normal(jax.random.key(2), (3, height, width, 7))  # Unequal weights: a misplaced tap shows.
  numbers = cpu_kernels.NHWC
  assert cpu_kernels.conv_route(lhs, rhs, (1, 1), "SAME", dimension_numbers=numbers) == route
  jaxpr = jax.make_jaxpr(lambda a, b: cpu_kernels.matmul_conv(a, b, (1, 1), "SAME", dimension_numbers=numbers))
  # The matrix route has no XLA convolution; the other one has (its forward pass).
  assert ("conv_general_dilated" in str(jaxpr(lhs, rhs))) == (route == "matrix_gradients")
  assert_same_values_and_gradients(
    lambda a, b: cpu_kernels.matmul_conv(a, b, (1, 1), "SAME", dimension_numbers=numbers),
    lambda a, b: jax.lax.conv_general_dilated(a, b, (1, 1), "SAME", dimension_numbers=numbers),
    lhs,
    rhs,
    cotangent,
  )


@pytest.mark.parametrize(
  "channels_in,channels_out,kernel,padding",
  # Input sliced (fewer input channels), cotangent sliced (fewer output channels); odd padding.
  [(5, 12, 3, "SAME"), (12, 5, 3, "VALID"), (12, 24, 3, ((0, 2), (1, 0)))],
)
def test_flat_weight_gradient_route_matches_xla_convolution_and_its_gradients(
  channels_in, channels_out, kernel, padding
):
  lhs = jax.random.normal(jax.random.key(0), (4, 128, 128, channels_in))  # The smallest map and batch it takes.
  rhs = jax.random.normal(jax.random.key(1), (kernel, kernel, channels_in, channels_out))
  numbers = cpu_kernels.NHWC
  options = dict(window_strides=(1, 1), padding=padding, dimension_numbers=numbers)
  ours = functools.partial(cpu_kernels.matmul_conv, **options)
  xla = functools.partial(jax.lax.conv_general_dilated, **options)
  cotangent = jax.random.normal(jax.random.key(2), xla(lhs, rhs).shape)
  assert cpu_kernels.conv_route(lhs, rhs, (1, 1), padding, dimension_numbers=numbers) == "flat_weight_gradient"
  assert cpu_kernels.conv_route(lhs[:3], rhs, (1, 1), padding, dimension_numbers=numbers) == "xla"
  gradients = jax.make_jaxpr(lambda a, b, g: jax.vjp(ours, a, b)[1](g))(lhs, rhs, cotangent)
  assert "dot_general" in str(gradients)  # The weight gradient by products, not XLA's convolution.
  # Weight gradients are sums of 65,536 unit-normal products (about 256 in size): float32 rounding is
  # about 1e-3 there, a misplaced tap about 100.
  assert_same_values_and_gradients(ours, xla, lhs, rhs, cotangent, atol=1e-2)


@pytest.mark.parametrize("weights", ["replicated", "per-device"])
def test_flat_weight_gradient_route_under_shard_map_has_jaxs_gradient_types_and_values(weights):
  # Replicated weights used with per-device data get a gradient summed over devices, as JAX's own
  # transpose gives them (the discriminator's weights in the generator's update); per-device ones
  # (the step's parameters, cast before differentiation) their own device's gradient.
  mesh = jax.make_mesh((1,), ("data",))
  specs = (jax.sharding.PartitionSpec("data"), jax.sharding.PartitionSpec())
  lhs = jax.random.normal(jax.random.key(0), (4, 128, 128, 5))
  lhs = jax.device_put(lhs, jax.sharding.NamedSharding(mesh, specs[0]))
  rhs = jax.random.normal(jax.random.key(1), (3, 3, 5, 12))

  def weight_gradient(conv):
    def per_device(x, w):
      w = jax.lax.pcast(w, "data", to="varying") if weights == "per-device" else w
      gradient = jax.grad(lambda w: jnp.sum(jnp.sin(conv(x, w, (1, 1), "SAME", dimension_numbers=cpu_kernels.NHWC))))(w)
      return jax.lax.pmean(gradient, "data") if weights == "per-device" else gradient

    return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=specs, out_specs=specs[1]))(lhs, rhs)

  assert cpu_kernels.conv_route(lhs, rhs, (1, 1), "SAME", dimension_numbers=cpu_kernels.NHWC) == "flat_weight_gradient"
  np.testing.assert_allclose(
    weight_gradient(cpu_kernels.matmul_conv), weight_gradient(jax.lax.conv_general_dilated), rtol=1e-5, atol=1e-2
  )


@pytest.mark.parametrize("height,width", [(1, 1), (2, 3), (4, 4), (6, 5)])
def test_nearest_upsample_conv_is_upsampling_then_the_2x2_convolution(height, width):
  # (6, 5): 30 pixels, so its 1x1 phase is a matrix product and the others (thin: 2 or 4 taps x 5
  # channels) take XLA's forward pass with matrix-product gradients; the smaller maps: products.
  lhs = jax.random.normal(jax.random.key(0), (3, height, width, 5))
  rhs = jax.random.normal(jax.random.key(1), (2, 2, 5, 7))
  cotangent = jax.random.normal(jax.random.key(2), (3, 2 * height, 2 * width, 7))
  numbers = cpu_kernels.NHWC
  assert_same_values_and_gradients(
    lambda a, b: cpu_kernels.nearest_upsample_conv(a, b, (1, 1), "SAME", dimension_numbers=numbers),
    lambda a, b: jax.lax.conv_general_dilated(
      cpu_kernels.upsample_nearest(a), b, (1, 1), "SAME", dimension_numbers=numbers
    ),
    lhs,
    rhs,
    cotangent,
    atol=1e-4,
  )


@pytest.mark.parametrize(
  "shape,strides,padding,extra",
  [
    ((2, 5, 4, 5), (1, 1), "SAME", {}),  # 20 pixels, a 3x3 kernel over 5 channels: 45 values per output
    ((2, 4, 4, 3), (2, 2), "SAME", {}),
    ((2, 4, 4, 3), (1, 1), "SAME_LOWER", {}),
    ((2, 4, 4, 3), (1, 1), ((1, -1), (0, 0)), {}),  # Negative padding crops: XLA's alone.
    ((2, 4, 4, 3), (1, 1), "SAME", {"rhs_dilation": (2, 2)}),
    ((2, 4, 4, 3), (1, 1), "SAME", {"dimension_numbers": None}),  # lax's default layout, NCHW
    ((2, 4, 4, 4), (1, 1), "SAME", {"feature_group_count": 2}),
    ((2, 4, 4, 3), (1, 1), "SAME", {"preferred_element_type": jnp.float32}),
  ],
)
def test_matmul_conv_leaves_every_other_convolution_to_xla(shape, strides, padding, extra):
  lhs = jax.random.normal(jax.random.key(0), shape)
  rhs = jax.random.normal(jax.random.key(1), (3, 3, shape[-1] // extra.get("feature_group_count", 1), 6))
  kwargs = {"dimension_numbers": cpu_kernels.NHWC, **extra}
  if kwargs["dimension_numbers"] is None:
    lhs, rhs = lhs.transpose(0, 3, 1, 2), rhs.transpose(3, 2, 0, 1)  # lax's default: NCHW, OIHW
  assert cpu_kernels.conv_route(lhs, rhs, strides, padding, **kwargs) == "xla"
  np.testing.assert_array_equal(
    cpu_kernels.matmul_conv(lhs, rhs, strides, padding, **kwargs),
    jax.lax.conv_general_dilated(lhs, rhs, strides, padding, **kwargs),
  )


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (1, 5, 4, 2)])  # (1, 5, 4, 2): odd height, nn.max_pool's route
def test_max_pool_2x2_gives_nn_max_pool_values_and_gradients_with_ties(shape):
  # Values from {0, 1, 2}: most windows have tied maxima, and only the first may get the gradient.
  x = jax.random.randint(jax.random.key(0), shape, 0, 3).astype(jnp.float32)
  cotangent = jax.random.normal(jax.random.key(1), (shape[0], shape[1] // 2, shape[2] // 2, shape[3]))
  gradient = jax.make_jaxpr(lambda a, g: jax.vjp(cpu_kernels.max_pool_2x2, a)[1](g))(x, cotangent)
  assert "select_and_scatter" not in str(gradient) or shape[1] % 2  # Even sizes: the mask, not XLA's.
  ours, our_vjp = jax.vjp(cpu_kernels.max_pool_2x2, x)
  reference, reference_vjp = jax.vjp(lambda a: nn.max_pool(a, (2, 2), strides=(2, 2)), x)
  np.testing.assert_array_equal(ours, reference)
  np.testing.assert_array_equal(our_vjp(cotangent)[0], reference_vjp(cotangent)[0])


def test_varying_axes_reads_jaxs_type_of_a_value_under_shard_map():
  # If a JAX upgrade moves where a value's varying axes live, this fails instead of the
  # flat weight gradient summing over the wrong devices.
  mesh = jax.make_mesh((1,), ("data",))
  seen = {}

  def per_device(x, w):
    seen["sharded"], seen["replicated"] = cpu_kernels.varying_axes(x), cpu_kernels.varying_axes(w)
    seen["cast"] = cpu_kernels.varying_axes(jax.lax.pcast(w, "data", to="varying"))
    return x

  x = jax.device_put(jnp.ones((2, 3)), jax.sharding.NamedSharding(mesh, P("data")))
  jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=(P("data"), P()), out_specs=P("data")))(x, jnp.ones(3))
  assert seen == {"sharded": frozenset({"data"}), "replicated": frozenset(), "cast": frozenset({"data"})}


@pytest.mark.parametrize("shape,kernel,stride", [((2, 9, 9, 6), 3, 1), ((2, 10, 10, 6), 5, 2), ((1, 7, 8, 4), 3, 2)])
def test_depthwise_conv_through_nn_conv_matches_xla_and_leaves_no_grouped_convolution(shape, kernel, stride):
  channels = shape[-1]
  options = dict(features=channels, kernel_size=(kernel, kernel), strides=stride, padding="SAME")
  ours = nn.Conv(**options, feature_group_count=channels, conv_general_dilated=cpu_kernels.depthwise_conv)
  xla = nn.Conv(**options, feature_group_count=channels)
  x = jax.random.normal(jax.random.key(0), shape)
  params = xla.init(jax.random.key(1), x)
  jaxpr = jax.make_jaxpr(lambda p, a: jax.grad(lambda p: ours.apply(p, a).sum())(p))(params, x)
  assert "conv_general_dilated" not in str(jaxpr)  # Nor in its gradient: slices and products only.
  cotangent = jax.random.normal(jax.random.key(2), xla.apply(params, x).shape)
  assert_same_values_and_gradients(
    lambda a, w: ours.apply({"params": {**params["params"], "kernel": w}}, a),
    lambda a, w: xla.apply({"params": {**params["params"], "kernel": w}}, a),
    x,
    params["params"]["kernel"],
    cotangent,
  )
