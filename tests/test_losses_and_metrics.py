import math

import jax.numpy as jnp
import numpy as np
import pytest

from colorize import losses
from colorize import metrics


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
  a, b = jnp.array([0.0, 1.0, -1.0]), jnp.array([0.5, 1.0, 1.0])
  assert float(losses.regression_loss(a, b, "l1")) == pytest.approx(2.5 / 3)
  assert float(losses.regression_loss(a, b, "l2")) == pytest.approx(4.25 / 3)
  with pytest.raises(ValueError, match="loss.regression"):
    losses.regression_loss(a, b, "huber")


def test_pixel_accuracy_counts_pixels_within_the_lab_tolerance():
  real = np.zeros((1, 2, 2, 3), np.float32) + [50.0, 10.0, -10.0]
  predicted = real.copy()
  predicted[0, 0, 0] += [2.0, 4.4, -4.4]  # exactly at the tolerance: a hit
  predicted[0, 0, 1] += [2.6, 0.0, 0.0]  # |dL| rounds to 3 > 2: a miss
  predicted[0, 1, 0] += [0.0, 0.0, 5.0]  # |db| = 5 > 4.4: a miss
  np.testing.assert_allclose(metrics.pixel_accuracy(predicted, real), [0.5])
