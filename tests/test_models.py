import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorize.networks import layers
from colorize.networks import models
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
  message = r"config.model.generator='resnet' is unknown; use one of \['paper', 'pix2pix'\]"
  with pytest.raises(ValueError, match=message):
    models.create_models(config)


def test_bad_image_size_is_a_clear_error():
  generator = models.Generator(base_width=4, depth=5)
  with pytest.raises(ValueError, match=r"input size 48x48 is not a multiple of 32"):
    generator.init(jax.random.key(0), jnp.zeros((1, 48, 48, 1)))


def test_dropout_mask_depends_on_the_example_index_only():
  # What makes 1 and N devices drop the same units: example i gets the same mask whatever
  # the rest of its batch (the 8-device equivalence test checks the axis_index offset).
  layer = layers.PerExampleDropout(rate=0.5)
  x = jnp.ones((4, 3, 3, 2))
  rngs = {"dropout": jax.random.key(7)}
  whole = layer.apply({}, x, deterministic=False, rngs=rngs)
  assert 0.2 < float((whole == 0).mean()) < 0.8
  np.testing.assert_array_equal(layer.apply({}, x[:2], deterministic=False, rngs=rngs), whole[:2])
  np.testing.assert_array_equal(np.unique(whole), [0.0, 2.0])  # kept units are scaled by 1 / (1 - rate)
  np.testing.assert_array_equal(layer.apply({}, x, deterministic=True), x)
