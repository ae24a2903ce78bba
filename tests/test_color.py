import itertools
import warnings

import numpy as np
import pytest
from skimage import color as skcolor

from colorize import color


def all_corner_colours():
  return np.array(list(itertools.product([0, 255], repeat=3)), np.uint8).reshape(1, 8, 3)


def random_image(seed=0, shape=(32, 48, 3)):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.mark.parametrize("image", [all_corner_colours(), random_image()], ids=["corners", "random"])
def test_rgb_to_lab_matches_scikit_image(image):
  expected = skcolor.rgb2lab(image)
  np.testing.assert_allclose(color.rgb_to_lab(image / 255.0), expected, atol=0.05)


@pytest.mark.parametrize("image", [all_corner_colours(), random_image(1)], ids=["corners", "random"])
def test_lab_to_rgb_matches_scikit_image(image):
  lab = skcolor.rgb2lab(image)
  np.testing.assert_allclose(color.lab_to_rgb(lab), skcolor.lab2rgb(lab), atol=1e-4)


def test_lab_to_rgb_matches_scikit_image_over_everything_the_generator_can_output():
  # tanh gives normalised Lab anywhere in [-1, 1]^3: L 0..100, a and b -110..110, mostly out of
  # the sRGB gamut, so both clipping branches (negative z, RGB outside [0, 1]) are exercised.
  grid = np.linspace(-1.0, 1.0, 41)
  lab = np.asarray(color.denormalize_lab(np.stack(np.meshgrid(grid, grid, grid, indexing="ij"), -1)))
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # scikit-image warns about the out-of-gamut colours it clips.
    expected = skcolor.lab2rgb(lab.reshape(41, -1, 3))
  np.testing.assert_allclose(np.asarray(color.lab_to_rgb(lab)).reshape(41, -1, 3), expected, atol=1e-4)


def colour_cube(stride: int) -> np.ndarray:
  """Every `stride`-th 8-bit value per channel (both ends included), as an image."""
  values = np.unique(np.append(np.arange(0, 256, stride), 255)).astype(np.uint8)
  cube = np.stack(np.meshgrid(values, values, values, indexing="ij"), -1)
  return cube.reshape(len(values), -1, 3)


def test_a_strided_colour_cube_round_trips_exactly():
  cube = colour_cube(stride=3)  # 87^3 = 658,503 colours, a 25th of the cube: the developer loop.
  back = np.asarray(color.normalized_lab_to_uint8_rgb(color.uint8_rgb_to_normalized_lab(cube)))
  np.testing.assert_array_equal(back, cube)


@pytest.mark.slow
def test_every_8bit_colour_round_trips_exactly():
  cube = colour_cube(stride=1).reshape(4096, 4096, 3)
  back = np.asarray(color.normalized_lab_to_uint8_rgb(color.uint8_rgb_to_normalized_lab(cube)))
  np.testing.assert_array_equal(back, cube)


def test_normalised_lab_spans_minus_one_to_one():
  lab = np.asarray(color.uint8_rgb_to_normalized_lab(all_corner_colours()))
  assert lab.min() >= -1.0 and lab.max() <= 1.0
  np.testing.assert_allclose(lab[0, 0], [-1, 0, 0], atol=1e-6)  # black
  np.testing.assert_allclose(lab[0, -1], [1, 0, 0], atol=1e-3)  # white


def test_gradients_are_finite_at_black():
  import jax

  grad = jax.grad(lambda rgb: color.rgb_to_lab(rgb).sum())(np.zeros(3, np.float32))
  assert np.isfinite(np.asarray(grad)).all()


def test_host_conversions_compute_in_float32_whatever_the_input():
  """Full-resolution photos are converted on the host: float64 would double their memory."""
  rgb = random_image().astype(np.float64) / 255.0
  lab = color.rgb_to_lab(rgb, np)
  assert lab.dtype == np.float32
  np.testing.assert_array_equal(lab, color.rgb_to_lab(rgb.astype(np.float32), np))
  back = color.lab_to_rgb(lab.astype(np.float64), np)
  assert back.dtype == np.float32
  np.testing.assert_array_equal(back, color.lab_to_rgb(lab, np))


def test_uint8_output_is_computed_in_float32_from_a_bfloat16_network():
  import jax.numpy as jnp

  lab = color.uint8_rgb_to_normalized_lab(random_image()).astype(jnp.bfloat16)
  rgb = color.normalized_lab_to_uint8_rgb(lab)
  assert rgb.dtype == jnp.uint8
  np.testing.assert_array_equal(rgb, color.normalized_lab_to_uint8_rgb(lab.astype(jnp.float32)))


def test_lightness_of_uint8_photos_matches_scikit_image_and_normalises_like_lab():
  image = random_image()
  lightness = color.lightness(image)
  assert lightness.dtype == np.float32
  np.testing.assert_allclose(lightness, skcolor.rgb2lab(image)[..., 0], atol=2e-3)
  normalized = np.asarray(color.uint8_rgb_to_normalized_lab(image))[..., 0]
  np.testing.assert_allclose(color.normalize_lightness(lightness), normalized, atol=1e-5)
