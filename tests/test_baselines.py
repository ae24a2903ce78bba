"""The classic colorizers: each learns what its table can hold from the training photos."""

import numpy as np
import pytest

from colorize import color
from colorize.measuring import baselines


def lab_photo(lightness, a, b):
  """uint8 RGB of a Lab image given per pixel (all in gamut here)."""
  lab = np.stack(np.broadcast_arrays(lightness, a, b), axis=-1).astype(np.float32)
  return np.round(color.lab_to_rgb(lab, np) * 255).astype(np.uint8)


def stripes(size=64):
  """Left half dark and smooth, red; right half bright, blue where smooth, green where textured."""
  rng = np.random.default_rng(0)
  lightness = np.full((size, size), 30.0)
  lightness[:, size // 2 :] = 75.0
  textured = np.zeros((size, size), bool)
  textured[size // 2 :, size // 2 :] = True
  lightness[textured] += rng.choice([-12.0, 0.0, 12.0], textured.sum())  # a third at the smooth part's L
  a = np.where(lightness < 50, 40.0, np.where(textured, -40.0, 0.0))
  b = np.where(lightness < 50, 25.0, np.where(textured, 40.0, -40.0))
  return lab_photo(lightness, a, b), textured


def ab_at(tables, name, photo):
  return baselines.predict_ab(tables, name, color.lightness(photo))


def test_each_classic_colorizer_learns_what_its_table_can_hold():
  photo, textured = stripes()
  tables = baselines.fit([photo], min_count=10)
  lab = color.rgb_to_lab(photo / 255.0, np)
  dark, bright_smooth = photo[0, 0], photo[0, -1]
  np.testing.assert_array_equal(ab_at(tables, "gray", photo), 0.0)
  np.testing.assert_allclose(ab_at(tables, "mean_ab", photo)[5, 5], lab[..., 1:].reshape(-1, 2).mean(0), atol=0.01)
  by_l = ab_at(tables, "ab_of_l", photo)
  np.testing.assert_allclose(by_l[0, 0], color.rgb_to_lab(dark / 255.0, np)[1:], atol=1.0)  # dark: red
  by_texture = ab_at(tables, "ab_of_l_texture", photo)
  # Bright smooth pixels are blue, bright textured ones green: at the same L only texture tells them apart.
  np.testing.assert_allclose(by_texture[2, -3], color.rgb_to_lab(bright_smooth / 255.0, np)[1:], atol=4.0)
  interior = np.zeros_like(textured)
  interior[40:-2, 40:-2] = True  # Away from the smooth parts, whose edges look textured too.
  same_l = np.argwhere(interior & (np.abs(lab[..., 0] - lab[2, -3, 0]) < 0.5))[0]
  assert by_texture[tuple(same_l)][0] < -25  # green
  assert by_l[tuple(same_l)][0] > by_texture[tuple(same_l)][0] + 10  # L alone: a blue-green mix


def test_rare_texture_cells_fall_back_to_the_lightness_table():
  photo, _ = stripes()
  tables = baselines.fit([photo], min_count=10**9)  # Every cell rare.
  np.testing.assert_array_equal(ab_at(tables, "ab_of_l_texture", photo), ab_at(tables, "ab_of_l", photo))


def test_a_classic_colorizer_keeps_the_photos_lightness():
  photo, _ = stripes()
  out = baselines.colorize(baselines.fit([photo]), "ab_of_l_texture", photo)
  assert out.shape == photo.shape and out.dtype == np.uint8
  assert np.abs(color.lightness(out) - color.lightness(photo)).max() < 1.0


def test_unknown_colorizer_and_no_photos_are_clear_errors():
  photo, _ = stripes()
  with pytest.raises(ValueError, match="unknown classic colorizer 'sepia'"):
    baselines.predict_ab(baselines.fit([photo]), "sepia", np.zeros((2, 2)))
  with pytest.raises(ValueError, match="at least one training photo"):
    baselines.fit([])
