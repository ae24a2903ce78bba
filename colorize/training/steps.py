"""The train state and the per-device train step (the jitted, phased whole: `compiled.py`).

One step = 1 discriminator update, then `generator_steps_per_batch` generator updates, all in
one jit-compiled function written per device under `jax.shard_map` over the 1-D mesh axis
`data`. Gradients are averaged with `lax.pmean`; BatchNorm averages its batch statistics over
the same axis; so N devices compute what one device computes on the whole global batch.

The quality recipe's switches act here too: the moving average of G's weights (`ema_decay`, used
by every inference) and class-rebalancing weights of the L1 term (`loss.rebalance`); L1-only
pretraining (`pretrain_steps`) is a step of its own, compiled by `compiled.py`. The optimisers
are in `optim.py`, the eval step in `validation.py`, the config checks in `config_checks.py`.

Needs only jax, flax and optax (no TensorFlow), so benchmarks run it on bare accelerator machines.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from colorize import color
from colorize import hints as hints_lib
from colorize import metrics as metrics_lib
from colorize.networks import colour_bins
from colorize.networks import layers
from colorize.training import losses
from colorize.training import optim

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


# ----------------------------------------------------------------------------- optimisers


def create_train_state(config, generator, discriminator, optimizers: optim.Optimizers) -> TrainState:
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


def predicted_channels(config):
  return slice(1, 3) if config.model.output == "ab" else slice(0, 3)


def _has_bins(generator) -> bool:
  return getattr(generator, "colour_head", "regression") == "bins" or getattr(generator, "vivid_head", False)


def generator_forward(generator, g: NetworkState, gray, rng, hints=None):
  """G's outputs in train mode, (fake Lab, bin logits or None), and the pullback from their
  loss gradients to d(loss)/d(G's parameters). `hints`: the hint channels of a hints generator.

  A bins head trains on its distribution's mean (temperature 1): `model.temperature` is the
  colour inference writes, not what the regression term reads; likewise `model.vividness`."""
  bins = _has_bins(generator)
  generator = generator.clone(temperature=1.0) if bins else generator
  generator = generator.clone(vividness=0.0)

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
  channels = predicted_channels(config)
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
  state: TrainState, images, *, config, generator, discriminator, optimizers: optim.Optimizers, colour_weights=None
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
  average = _moving_average(config.ema_decay, state, g, keep_unchanged=config.get("vivid_head_only", False))
  new_state = TrainState(state.step + 1, g, d, average)
  if config.skip_nonfinite:
    new_state, metrics["nonfinite_skipped"] = _keep_old_if_nonfinite(state, new_state, metrics)
  return new_state, metrics


def training_hints(config, rng, real):
  """Simulated hint channels for this device's photos (normalised Lab [b, S, S, 3]), each drawn
  from (rng, the photo's place in the global batch): the same hints on any number of devices."""
  keys = layers.per_example_keys(rng, real.shape[0], AXIS)
  return hints_lib.simulate_batch(keys, real, config.hints)


def _moving_average(decay: float, state: TrainState, g: NetworkState, keep_unchanged: bool = False):
  """G's new weight average; the decay ramps up from 0.1 (TF's ExponentialMovingAverage with
  num_updates), so the average is not dominated by the initial weights in short runs.

  `keep_unchanged`: a weight equal to its average keeps it exactly (the blend would round it by an
  ulp or so): a frozen trunk (`vivid_head_only`) then stays bit for bit the weights it started from."""
  if state.generator_ema is None:
    return None
  decay = jnp.minimum(decay, (1.0 + state.step) / (10.0 + state.step))

  def blend(avg, new):
    blended = decay * avg + (1.0 - decay) * new
    return jnp.where(new == avg, avg, blended) if keep_unchanged else blended

  return jax.tree.map(blend, state.generator_ema, g.variables())


def all_finite(tree) -> jax.Array:
  """True when every number in `tree` is finite."""
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))


def _keep_old_if_nonfinite(old: TrainState, new: TrainState, metrics):
  """`new`, or `old` (step still advanced) when a loss or a parameter is not finite. Same on all devices."""
  loss_values = {name: value for name, value in metrics.items() if "loss" in name}
  finite = all_finite((loss_values, new.generator.params, new.discriminator.params))
  kept = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
  return kept.replace(step=new.step), 1 - finite.astype(jnp.int32)


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh named `data` over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (AXIS,), devices=devices)


def global_batch(mesh, local_array: np.ndarray) -> jax.Array:
  """This process's rows -> one jax.Array sharded over the `data` axis of all processes."""
  return jax.make_array_from_process_local_data(NamedSharding(mesh, P(AXIS)), local_array)
