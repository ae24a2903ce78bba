"""The optimisers: one family for G and D, G's pretrained encoder a second parameter group (frozen,
then slower), and the rates of each batch."""

import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


def learning_rate_schedule(base_rate: float, optim_config) -> optax.Schedule:
  """The rate for batch `step`: exponential decay by `decay_rate` every `decay_steps`, floored.

  The floor (`min_learning_rate`, 1e-6 like the reference code) applies only when decaying.
  """
  if optim_config.decay_rate == 1.0:
    return optax.constant_schedule(base_rate)
  return optax.exponential_decay(
    base_rate,
    transition_steps=optim_config.decay_steps,
    decay_rate=optim_config.decay_rate,
    end_value=optim_config.min_learning_rate,
  )


class Optimizers(NamedTuple):
  """One optimiser family for G and D, built per step from the rate of that batch.

  The rates are functions of `TrainState.step` (batches trained on), not of the optimiser's own
  update count: G's count advances several times per batch, and a step skipped by
  `skip_nonfinite` keeps the old count, yet the schedule must follow the batches. A pretrained
  encoder (`model.encoder`) is G's second parameter group, with a rate of its own.
  """

  make: Callable[[Any], optax.GradientTransformation]  # learning rate -> optimiser
  g_schedule: optax.Schedule
  d_schedule: optax.Schedule
  encoder_scale: float | None = None  # The encoder's rate as a share of G's; None: no pretrained encoder.
  freeze_encoder_steps: int = 0

  def make_generator(self, rate, step) -> optax.GradientTransformation:
    """G's optimiser at batch `step`: one family, the encoder's subtree at its own rate, held
    (no update, its state untouched) while the encoder is frozen."""
    if self.encoder_scale is None:
      return self.make(rate)
    encoder = held_while(step < self.freeze_encoder_steps, self.make(rate * self.encoder_scale))
    return optax.multi_transform({"encoder": encoder, "rest": self.make(rate)}, encoder_labels)


def held_while(hold, tx: optax.GradientTransformation) -> optax.GradientTransformation:
  """`tx`, but while `hold` (a traced bool) it updates nothing and keeps its state as it was.

  A frozen encoder's Adam state thus starts afresh when it is unfrozen: counting the frozen
  steps with zero moments would make its first updates many times the rate (bias correction).
  """

  def update(updates, state, params=None):
    new_updates, new_state = tx.update(updates, state, params)
    new_updates = jax.tree.map(lambda u: jnp.where(hold, jnp.zeros_like(u), u), new_updates)
    return new_updates, jax.tree.map(lambda new, old: jnp.where(hold, old, new), new_state, state)

  return optax.GradientTransformation(tx.init, update)


def encoder_labels(params) -> dict:
  """'encoder' for every parameter of G's pretrained encoder, 'rest' for the others."""
  return {
    name: jax.tree.map(lambda _, n=name: "encoder" if n == "encoder" else "rest", tree) for name, tree in params.items()
  }


def create_optimizers(config) -> Optimizers:
  """Adam (the paper's and the reference code's) or plain SGD (for exact gradient checks)."""
  optim = config.optim
  families = {"adam": functools.partial(optax.adam, b1=optim.beta1, b2=optim.beta2, eps=1e-8), "sgd": optax.sgd}
  family = families[optim.optimizer]  # A name outside these is refused by check_model_config.

  def make(rate):
    # The rate enters as a schedule that ignores the optimiser's count: the state keeps the
    # layout of earlier checkpoints (whose schedule read that count), so those runs still resume.
    return family(lambda _count: rate)

  return Optimizers(
    make,
    learning_rate_schedule(optim.g_learning_rate, optim),
    learning_rate_schedule(optim.d_learning_rate, optim),
    None if config.model.encoder == "unet" else optim.encoder_lr_scale,
    config.freeze_encoder_steps,
  )
