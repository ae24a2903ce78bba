"""The GAN objective (DESIGN section 2) on logits and normalised Lab images."""

import jax.numpy as jnp
import optax


def sigmoid_cross_entropy(logits, label: float):
  return optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label)).mean()


def discriminator_loss(real_logits, fake_logits, label_smoothing: float = 0.0):
  """Sigmoid cross-entropy: real -> 1 - label_smoothing (one-sided), fake -> 0.

  Returns (total, real part, fake part).
  """
  real = sigmoid_cross_entropy(real_logits, 1.0 - label_smoothing)
  fake = sigmoid_cross_entropy(fake_logits, 0.0)
  return real + fake, real, fake


def generator_adversarial_loss(fake_logits):
  """Non-saturating: -log D(G(x)) rather than log(1 - D(G(x)))."""
  return sigmoid_cross_entropy(fake_logits, 1.0)


def l1_loss(prediction, target):
  return jnp.mean(jnp.abs(prediction - target))


def l2_loss(prediction, target):
  return jnp.mean(jnp.square(prediction - target))


def regression_loss(prediction, target, kind: str):
  if kind == "l1":
    return l1_loss(prediction, target)
  if kind == "l2":
    return l2_loss(prediction, target)
  raise ValueError(f"loss.regression={kind!r} is unknown; use 'l1' or 'l2'.")
