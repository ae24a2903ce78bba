import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorize import models
from configs import default


def count(tree):
  return sum(x.size for x in jax.tree_util.tree_leaves(tree))


def init_shapes(module, *inputs):
  return jax.eval_shape(lambda: module.init(jax.random.key(0), *inputs, train=False))


@pytest.mark.parametrize(
  "size,disc_units,g_params,d_params",
  [(32, 4, 21_640_515, 1_554_497), (256, 5, 21_640_515, 6_338_625)],
)
def test_paper_layouts_have_the_expected_parameter_counts(size, disc_units, g_params, d_params):
  # The PyTorch reference in shared/bench counts 64 more in each: it puts BatchNorm on the
  # first layer, which the paper (DESIGN section 2) leaves out and we follow.
  config = default.get_config().model
  config.disc_units = disc_units
  generator, discriminator = models.create_models(config)
  gray, lab = jnp.zeros((1, size, size, 1)), jnp.zeros((1, size, size, 3))
  assert count(init_shapes(generator, gray)["params"]) == g_params
  assert count(init_shapes(discriminator, gray, lab)["params"]) == d_params


@pytest.mark.parametrize("upsample", ["nearest", "transpose"])
@pytest.mark.parametrize("output", ["lab", "ab"])
def test_generator_output_shape_range_and_passthrough(output, upsample):
  generator = models.Generator(base_width=8, depth=3, output=output, upsample=upsample)
  gray = jax.random.uniform(jax.random.key(1), (2, 16, 24, 1), minval=-1, maxval=1)
  variables = generator.init(jax.random.key(0), gray, train=False)
  out = generator.apply(variables, gray, train=False)
  assert out.shape == (2, 16, 24, 3) and out.dtype == jnp.float32
  assert float(jnp.abs(out).max()) <= 1.0
  if output == "ab":
    np.testing.assert_array_equal(out[..., :1], gray)


def test_discriminator_gives_one_logit_per_image():
  discriminator = models.Discriminator(base_width=8, num_units=3)
  gray, lab = jnp.zeros((5, 32, 32, 1)), jnp.zeros((5, 32, 32, 3))
  variables = discriminator.init(jax.random.key(0), gray, lab, train=False)
  assert discriminator.apply(variables, gray, lab, train=False).shape == (5,)


@pytest.mark.parametrize("upsample", ["transpose", "nearest"])
def test_pix2pix_unet_and_patchgan_have_pix2pix_parameter_counts(upsample):
  # pix2pix's unet_256 (ngf 64, BatchNorm) has 54,413,955 parameters and its 70x70 PatchGAN
  # (n_layers 3) 2,768,705 for 3 + 3 channels; one gray input channel instead of three drops the
  # 2 x 4 x 4 x 64 first-layer weights from each.
  config = default.get_config().model
  config.update(generator="pix2pix", discriminator="patchgan", depth=8, disc_units=3, upsample=upsample)
  generator, discriminator = models.create_models(config)
  gray, lab = jnp.zeros((1, 256, 256, 1)), jnp.zeros((1, 256, 256, 3))
  assert count(init_shapes(generator, gray)["params"]) == 54_413_955 - 2 * 16 * 64
  d_variables = init_shapes(discriminator, gray, lab)
  assert count(d_variables["params"]) == 2_768_705 - 2 * 16 * 64
  logits = jax.eval_shape(lambda v: discriminator.apply(v, gray, lab, train=False), d_variables)
  assert logits.shape == (1, 30, 30)  # 70x70 patches, as pix2pix at 256 px


@pytest.mark.slow
def test_pix2pix_unet_output_and_its_dropout_in_training_only():
  generator = models.Pix2PixGenerator(base_width=4, depth=6, output="ab")
  gray = jax.random.uniform(jax.random.key(1), (2, 64, 64, 1), minval=-1, maxval=1)
  variables = generator.init(jax.random.key(0), gray, train=False)
  out = generator.apply(variables, gray, train=False)
  assert out.shape == (2, 64, 64, 3) and float(jnp.abs(out).max()) <= 1.0
  np.testing.assert_array_equal(out[..., :1], gray)

  def train_output(seed):
    rngs = {"dropout": jax.random.key(seed)}
    return generator.apply(variables, gray, train=True, rngs=rngs, mutable=["batch_stats"])[0]

  assert not np.allclose(train_output(0), train_output(1))  # Level 4 (of 0..5) has dropout.
  np.testing.assert_array_equal(train_output(0), train_output(0))


def test_unknown_architecture_is_a_clear_error():
  config = default.get_config().model
  config.generator = "resnet"
  with pytest.raises(ValueError, match=r"model.generator='resnet' is unknown; use one of \['paper', 'pix2pix'\]"):
    models.create_models(config)


def test_bad_image_size_is_a_clear_error():
  generator = models.Generator(base_width=4, depth=5)
  with pytest.raises(ValueError, match=r"input size 48x48 is not a multiple of 32"):
    generator.init(jax.random.key(0), jnp.zeros((1, 48, 48, 1)))


def test_dropout_mask_depends_on_the_example_index_only():
  # What makes 1 and N devices drop the same units: example i gets the same mask whatever
  # the rest of its batch (the 8-device equivalence test checks the axis_index offset).
  layer = models.PerExampleDropout(rate=0.5)
  x = jnp.ones((4, 3, 3, 2))
  rngs = {"dropout": jax.random.key(7)}
  whole = layer.apply({}, x, deterministic=False, rngs=rngs)
  assert 0.2 < float((whole == 0).mean()) < 0.8
  np.testing.assert_array_equal(layer.apply({}, x[:2], deterministic=False, rngs=rngs), whole[:2])
  np.testing.assert_array_equal(np.unique(whole), [0.0, 2.0])  # kept units are scaled by 1 / (1 - rate)
  np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)


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
  numbers = models.NHWC
  assert models.conv_route(lhs, rhs, (1, 1), "SAME", dimension_numbers=numbers) == route
  jaxpr = jax.make_jaxpr(lambda a, b: models.matmul_conv(a, b, (1, 1), "SAME", dimension_numbers=numbers))
  # The matrix route has no XLA convolution; the other one has (its forward pass).
  assert ("conv_general_dilated" in str(jaxpr(lhs, rhs))) == (route == "matrix_gradients")
  assert_same_values_and_gradients(
    lambda a, b: models.matmul_conv(a, b, (1, 1), "SAME", dimension_numbers=numbers),
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
  numbers = models.NHWC
  options = dict(window_strides=(1, 1), padding=padding, dimension_numbers=numbers)
  ours = functools.partial(models.matmul_conv, **options)
  xla = functools.partial(jax.lax.conv_general_dilated, **options)
  cotangent = jax.random.normal(jax.random.key(2), xla(lhs, rhs).shape)
  assert models.conv_route(lhs, rhs, (1, 1), padding, dimension_numbers=numbers) == "flat_weight_gradient"
  assert models.conv_route(lhs[:3], rhs, (1, 1), padding, dimension_numbers=numbers) == "xla"
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
      gradient = jax.grad(lambda w: jnp.sum(jnp.sin(conv(x, w, (1, 1), "SAME", dimension_numbers=models.NHWC))))(w)
      return jax.lax.pmean(gradient, "data") if weights == "per-device" else gradient

    return jax.jit(jax.shard_map(per_device, mesh=mesh, in_specs=specs, out_specs=specs[1]))(lhs, rhs)

  assert models.conv_route(lhs, rhs, (1, 1), "SAME", dimension_numbers=models.NHWC) == "flat_weight_gradient"
  np.testing.assert_allclose(
    weight_gradient(models.matmul_conv), weight_gradient(jax.lax.conv_general_dilated), rtol=1e-5, atol=1e-2
  )


@pytest.mark.parametrize("height,width", [(1, 1), (2, 3), (4, 4), (6, 5)])
def test_nearest_upsample_conv_is_upsampling_then_the_2x2_convolution(height, width):
  # (6, 5): 30 pixels, so its 1x1 phase is a matrix product and the others (thin: 2 or 4 taps x 5
  # channels) take XLA's forward pass with matrix-product gradients; the smaller maps: products.
  lhs = jax.random.normal(jax.random.key(0), (3, height, width, 5))
  rhs = jax.random.normal(jax.random.key(1), (2, 2, 5, 7))
  cotangent = jax.random.normal(jax.random.key(2), (3, 2 * height, 2 * width, 7))
  numbers = models.NHWC
  assert_same_values_and_gradients(
    lambda a, b: models.nearest_upsample_conv(a, b, (1, 1), "SAME", dimension_numbers=numbers),
    lambda a, b: jax.lax.conv_general_dilated(models.upsample_nearest(a), b, (1, 1), "SAME", dimension_numbers=numbers),
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
  kwargs = {"dimension_numbers": models.NHWC, **extra}
  if kwargs["dimension_numbers"] is None:
    lhs, rhs = lhs.transpose(0, 3, 1, 2), rhs.transpose(3, 2, 0, 1)  # lax's default: NCHW, OIHW
  assert models.conv_route(lhs, rhs, strides, padding, **kwargs) == "xla"
  np.testing.assert_array_equal(
    models.matmul_conv(lhs, rhs, strides, padding, **kwargs),
    jax.lax.conv_general_dilated(lhs, rhs, strides, padding, **kwargs),
  )


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (1, 5, 4, 2)])  # (1, 5, 4, 2): odd height, nn.max_pool's route
def test_max_pool_2x2_gives_nn_max_pool_values_and_gradients_with_ties(shape):
  # Values from {0, 1, 2}: most windows have tied maxima, and only the first may get the gradient.
  x = jax.random.randint(jax.random.key(0), shape, 0, 3).astype(jnp.float32)
  cotangent = jax.random.normal(jax.random.key(1), (shape[0], shape[1] // 2, shape[2] // 2, shape[3]))
  gradient = jax.make_jaxpr(lambda a, g: jax.vjp(models.max_pool_2x2, a)[1](g))(x, cotangent)
  assert "select_and_scatter" not in str(gradient) or shape[1] % 2  # Even sizes: the mask, not XLA's.
  ours, our_vjp = jax.vjp(models.max_pool_2x2, x)
  reference, reference_vjp = jax.vjp(lambda a: nn.max_pool(a, (2, 2), strides=(2, 2)), x)
  np.testing.assert_array_equal(ours, reference)
  np.testing.assert_array_equal(our_vjp(cotangent)[0], reference_vjp(cotangent)[0])
