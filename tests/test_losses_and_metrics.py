import math

import jax.numpy as jnp
import numpy as np
import pytest

from colorize import color
from colorize import metrics
from colorize.networks import colour_bins
from colorize.training import losses


def test_discriminator_loss_on_hand_made_logits():
  real, fake = jnp.array([0.0, 0.0]), jnp.array([0.0, 0.0])
  total, real_part, fake_part = losses.discriminator_loss(real, fake)
  assert float(real_part) == pytest.approx(math.log(2))
  assert float(total) == pytest.approx(2 * math.log(2))
  # A confident, correct discriminator: logit +10 on real, -10 on fake.
  total, _, _ = losses.discriminator_loss(jnp.array([10.0]), jnp.array([-10.0]))
  assert float(total) == pytest.approx(2 * math.log1p(math.exp(-10)), rel=1e-4)


def test_one_sided_label_smoothing_targets_point_nine():
  logit = 2.0
  _, real_part, fake_part = losses.discriminator_loss(jnp.array([logit]), jnp.array([-3.0]), label_smoothing=0.1)
  p = 1 / (1 + math.exp(-logit))
  assert float(real_part) == pytest.approx(-(0.9 * math.log(p) + 0.1 * math.log(1 - p)), rel=1e-5)
  assert float(fake_part) == pytest.approx(math.log1p(math.exp(-3.0)), rel=1e-5)  # fake labels stay 0


def test_generator_loss_is_non_saturating():
  # -log(sigmoid(x)): large when D confidently rejects the fake, where log(1 - D) would vanish.
  assert float(losses.generator_adversarial_loss(jnp.array([-10.0]))) == pytest.approx(10.0, abs=1e-4)
  assert float(losses.generator_adversarial_loss(jnp.array([0.0]))) == pytest.approx(math.log(2))


def test_regression_losses():
  # Asymmetric values: |a - b| and |a + b| differ (3.5 vs 7.5), so a flipped sign cannot pass.
  a, b = jnp.array([0.0, 1.0, -1.0, 2.0]), jnp.array([0.5, 1.0, 1.0, 3.0])
  assert float(losses.l1_loss(a, b)) == pytest.approx(3.5 / 4)
  assert float(losses.l2_loss(a, b)) == pytest.approx(5.25 / 4)
  assert float(losses.regression_loss(a, b, "l1")) == pytest.approx(3.5 / 4)
  assert float(losses.regression_loss(a, b, "l2")) == pytest.approx(5.25 / 4)
  with pytest.raises(ValueError, match="loss.regression"):
    losses.regression_loss(a, b, "huber")


def test_weighted_regression_losses_by_hand():
  a, b = jnp.array([0.0, 1.0, -1.0, 2.0]).reshape(1, 2, 2, 1), jnp.array([0.5, 1.0, 1.0, 3.0]).reshape(1, 2, 2, 1)
  weights = jnp.array([[[1.0, 2.0], [0.5, 0.0]]])  # A zero weight: a division would give inf.
  assert float(losses.regression_loss(a, b, "l1", weights)) == pytest.approx((0.5 + 0.0 + 1.0 + 0.0) / 4)
  assert float(losses.regression_loss(a, b, "l2", weights)) == pytest.approx((0.25 + 0.0 + 2.0 + 0.0) / 4)


def test_pixel_accuracy_counts_pixels_within_the_lab_tolerance():
  real = np.zeros((2, 3, 2, 3), np.float32) + [50.0, 10.0, -10.0]  # 2 images of 3x2 pixels
  predicted = real.copy()
  predicted[0, 0, 0] += [2.0, 4.4, -4.4]  # |dL| = 2, at its tolerance; |da|, |db| round to 4 <= 4.4: a hit
  predicted[0, 0, 1] += [2.6, 0.0, 0.0]  # |dL| rounds to 3 > 2: a miss
  predicted[0, 1, 0] += [0.0, 0.0, 5.0]  # |db| = 5 > 4.4: a miss
  predicted[1, 0, 0] += [0.0, -5.0, 5.0]  # |da|, |db| = 5 > 4.4: one miss (a pixel, not a channel)
  np.testing.assert_allclose(metrics.pixel_accuracy(predicted, real), [4 / 6, 5 / 6], rtol=1e-6)
  # A looser threshold t: |dL| <= t, |da|, |db| <= 2.2 t; here every pixel hits at t = 3.
  np.testing.assert_allclose(metrics.pixel_accuracy(predicted, real, threshold=3.0), [1.0, 1.0])
  normalized = [np.asarray(color.normalize_lab(x), np.float32) for x in (predicted, real)]
  np.testing.assert_allclose(metrics.pixel_accuracy_normalized(*normalized, threshold=3.0), [1.0, 1.0])
  np.testing.assert_allclose(metrics.pixel_accuracy_normalized(*normalized), [4 / 6, 5 / 6], rtol=1e-6)


def test_ab_bins_are_centred_on_multiples_of_ten_and_clipped_at_the_edges():
  ab = np.array([0.0, 4.9, 5.1, -5.1, 110.0, -110.0, 200.0, -200.0])  # Lab units
  lab = np.stack([np.zeros_like(ab), ab / 110.0, np.zeros_like(ab)], axis=-1)
  expected_cells = np.array([11, 11, 12, 10, 22, 0, 22, 0])
  np.testing.assert_array_equal(colour_bins.ab_bin_index(lab, np), expected_cells * 23 + 11)
  lab_b = lab[:, [0, 2, 1]]  # The same values on b.
  np.testing.assert_array_equal(colour_bins.ab_bin_index(jnp.asarray(lab_b)), 11 * 23 + expected_cells)


def test_ab_histogram_counts_each_pixels_bin_like_scikit_image():
  from skimage import color as skcolor

  images = np.random.default_rng(5).integers(0, 256, (2, 9, 7, 3), dtype=np.uint8)
  ab = skcolor.rgb2lab(images)[..., 1:]
  cells = np.clip(np.round(ab / 10.0) + 11, 0, 22).astype(int)
  expected = np.bincount((cells[..., 0] * 23 + cells[..., 1]).ravel(), minlength=23 * 23)
  histogram = losses.ab_histogram(images)
  assert histogram.shape == (23 * 23,) and histogram.dtype == np.float64
  assert np.abs(histogram - expected).sum() <= 2  # At most one pixel on a bin border moves.
