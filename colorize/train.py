"""Training: state, optimisers, the data-parallel step, validation and the loop.

One step = 1 discriminator update, then `generator_steps_per_batch` generator updates, all in
one jit-compiled function written per device under `jax.shard_map` over the 1-D mesh axis
`data`. Gradients are averaged with `lax.pmean`; BatchNorm averages its batch statistics over
the same axis; so N devices compute what one device computes on the whole global batch.
"""

import functools
import signal
import threading
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import tensorflow as tf
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from colorize import checkpoint
from colorize import color
from colorize import input_pipeline
from colorize import losses
from colorize import metrics as metrics_lib
from colorize import models
from colorize import reporting

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


# ----------------------------------------------------------------------------- config checks


def check_config(config, num_devices: int, num_processes: int = 1) -> None:
  """Fails at start, with the field and the fix, on settings the step cannot run."""
  if config.batch_size % num_devices:
    raise ValueError(
      f"config.batch_size={config.batch_size} is not divisible by the {num_devices} devices: "
      f"use a multiple of {num_devices}."
    )
  if config.batch_size % num_processes:
    raise ValueError(f"config.batch_size={config.batch_size} is not divisible by the {num_processes} processes.")
  for field, depth in (("model.depth", config.model.depth), ("model.disc_units", config.model.disc_units)):
    if config.image_size % 2**depth:
      raise ValueError(
        f"config.image_size={config.image_size} is not a multiple of 2**{field}={2**depth}: "
        f"use a multiple of {2**depth}."
      )
  if config.dtype not in ("float32", "bfloat16"):
    raise ValueError(f"config.dtype={config.dtype!r} is unknown; use 'float32' or 'bfloat16'.")
  if config.generator_steps_per_batch < 1:
    raise ValueError("config.generator_steps_per_batch must be at least 1.")


# ----------------------------------------------------------------------------- optimisers


def learning_rate_schedule(base_rate: float, optim_config) -> optax.Schedule:
  """Exponential decay by `decay_rate` every `decay_steps` batches, floored; constant at rate 1."""
  if optim_config.decay_rate == 1.0:
    return optax.constant_schedule(base_rate)
  return optax.exponential_decay(
    base_rate,
    transition_steps=optim_config.decay_steps,
    decay_rate=optim_config.decay_rate,
    end_value=optim_config.min_learning_rate,
  )


def create_optimizers(config):
  """Adam for G and D; schedules count batches (G takes several updates per batch)."""
  g_schedule = learning_rate_schedule(config.optim.g_learning_rate, config.optim)
  d_schedule = learning_rate_schedule(config.optim.d_learning_rate, config.optim)
  g_steps = config.generator_steps_per_batch

  def adam(schedule):
    return optax.adam(schedule, b1=config.optim.beta1, b2=config.optim.beta2, eps=1e-8)

  return adam(lambda count: g_schedule(count // g_steps)), adam(d_schedule), (g_schedule, d_schedule)


def create_train_state(config, generator, discriminator, tx_g, tx_d) -> TrainState:
  """Initial state from `config.seed`; jit this (it is pure)."""
  size = config.image_size
  g_key, d_key, dropout_key = jax.random.split(jax.random.key(config.seed), 3)
  gray = jnp.zeros((1, size, size, 1), jnp.float32)
  lab = jnp.zeros((1, size, size, 3), jnp.float32)
  g_vars = generator.init(g_key, gray, train=False)
  d_vars = discriminator.init({"params": d_key, "dropout": dropout_key}, gray, lab, train=False)

  def network(variables, tx):
    return NetworkState(variables["params"], variables["batch_stats"], tx.init(variables["params"]))

  return TrainState(jnp.zeros((), jnp.int32), network(g_vars, tx_g), network(d_vars, tx_d))


# ----------------------------------------------------------------------------- the step


def _apply_update(net: NetworkState, grads, tx, batch_stats) -> NetworkState:
  updates, opt_state = tx.update(grads, net.opt_state, net.params)
  return NetworkState(optax.apply_updates(net.params, updates), batch_stats, opt_state)


def _per_device(tree):
  """Marks replicated values as per-device, so their gradients stay local until our pmean."""
  return jax.lax.pcast(tree, AXIS, to="varying")


def _predicted_channels(config):
  return slice(1, 3) if config.model.output == "ab" else slice(0, 3)


def discriminator_update(config, generator, discriminator, tx_d, state, gray, real, rng):
  """One D update on (gray, real) vs (gray, G(gray)). Returns (D state, G batch stats, metrics)."""
  g, d = state.generator, state.discriminator
  fake, g_updates = generator.apply(g.variables(), gray, train=True, mutable=["batch_stats"])
  fake = jax.lax.stop_gradient(fake)
  real_rng, fake_rng = jax.random.split(rng)

  def loss_fn(params):
    params = _per_device(params)
    real_logits, updates = discriminator.apply(
      {"params": params, "batch_stats": d.batch_stats},
      gray,
      real,
      train=True,
      rngs={"dropout": real_rng},
      mutable=["batch_stats"],
    )
    fake_logits, updates = discriminator.apply(
      {"params": params, "batch_stats": updates["batch_stats"]},
      gray,
      fake,
      train=True,
      rngs={"dropout": fake_rng},
      mutable=["batch_stats"],
    )
    total, real_part, fake_part = losses.discriminator_loss(real_logits, fake_logits, config.loss.label_smoothing)
    return total, (updates["batch_stats"], real_part, fake_part)

  (total, (batch_stats, real_part, fake_part)), grads = jax.value_and_grad(loss_fn, has_aux=True)(d.params)
  grads = jax.lax.pmean(grads, AXIS)
  metrics = {"d_loss": total, "d_loss_real": real_part, "d_loss_fake": fake_part}
  return _apply_update(d, grads, tx_d, batch_stats), g_updates["batch_stats"], metrics


def generator_update(config, generator, discriminator, tx_g, g, d, gray, real, rng):
  """One G update: adversarial + lambda * L1 (or plain regression). Returns (G state, fake, metrics)."""
  channels = _predicted_channels(config)

  def loss_fn(params):
    fake, updates = generator.apply(
      {"params": _per_device(params), "batch_stats": g.batch_stats}, gray, train=True, mutable=["batch_stats"]
    )
    l1 = losses.l1_loss(fake[..., channels], real[..., channels])
    if not config.adversarial:
      loss = losses.regression_loss(fake[..., channels], real[..., channels], config.loss.regression)
      return loss, (updates["batch_stats"], fake, {"g_loss": loss, "g_loss_l1": l1})
    logits, _ = discriminator.apply(
      d.variables(), gray, fake, train=True, rngs={"dropout": rng}, mutable=["batch_stats"]
    )
    adversarial = losses.generator_adversarial_loss(logits)
    loss = adversarial + config.loss.l1_weight * l1
    return loss, (updates["batch_stats"], fake, {"g_loss": loss, "g_loss_adv": adversarial, "g_loss_l1": l1})

  (_, (batch_stats, fake, metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(g.params)
  grads = jax.lax.pmean(grads, AXIS)
  return _apply_update(g, grads, tx_g, batch_stats), fake, metrics


def train_step(state: TrainState, images, *, config, generator, discriminator, tx_g, tx_d, schedules):
  """Per-device step: uint8 RGB [b, S, S, 3] -> (new state, global scalar metrics)."""
  rng = jax.random.fold_in(jax.random.key(config.seed), state.step)
  real = color.uint8_rgb_to_normalized_lab(images)
  gray = real[..., :1]
  g, d = state.generator, state.discriminator
  metrics = {}
  if config.adversarial:
    d, g_stats, metrics = discriminator_update(
      config, generator, discriminator, tx_d, state, gray, real, jax.random.fold_in(rng, 0)
    )
    g = g.replace(batch_stats=g_stats)
  for i in range(config.generator_steps_per_batch):
    g, fake, g_metrics = generator_update(
      config, generator, discriminator, tx_g, g, d, gray, real, jax.random.fold_in(rng, i + 1)
    )
  metrics.update(g_metrics)
  metrics["accuracy"] = metrics_lib.pixel_accuracy_normalized(fake, real).mean()
  metrics = jax.lax.pmean(metrics, AXIS)
  metrics["g_learning_rate"], metrics["d_learning_rate"] = (s(state.step) for s in schedules)
  return TrainState(state.step + 1, g, d), metrics


def eval_step(state: TrainState, batch, *, config, generator, discriminator):
  """Per-device validation sums over real (mask=1) images; the caller divides by `count`."""
  real = color.uint8_rgb_to_normalized_lab(batch["image"])
  gray, mask = real[..., :1], batch["mask"]
  fake = generator.apply(state.generator.variables(), gray, train=False)
  channels = _predicted_channels(config)
  gray_baseline = jnp.concatenate([gray, jnp.zeros_like(real[..., 1:])], axis=-1)  # a = b = 0
  per_image = {
    "l1": jnp.abs(fake[..., channels] - real[..., channels]).mean(axis=(1, 2, 3)),
    **metrics_lib.image_metrics(fake, batch["image"]),
    **{f"gray/{k}": v for k, v in metrics_lib.image_metrics(gray_baseline, batch["image"]).items()},
  }
  if config.adversarial:
    real_logits = discriminator.apply(state.discriminator.variables(), gray, real, train=False)
    fake_logits = discriminator.apply(state.discriminator.variables(), gray, fake, train=False)
    per_image["d_loss_real"] = optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits))
    per_image["d_loss_fake"] = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
    per_image["g_loss_adv"] = optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits))
  sums = {name: jnp.sum(value * mask) for name, value in per_image.items()}
  sums["count"] = jnp.sum(mask)
  return jax.lax.psum(sums, AXIS)


def _init_function(config):
  tx_g, tx_d, schedules = create_optimizers(config)
  generator, discriminator = models.create_models(config.model, config.dtype)
  return functools.partial(create_train_state, config, generator, discriminator, tx_g, tx_d), (tx_g, tx_d, schedules)


def setup(config, mesh):
  """The initial state (replicated over `mesh`) and the jitted (train step, eval step)."""
  init, optimizers = _init_function(config)
  state = jax.jit(init, out_shardings=NamedSharding(mesh, P()))()
  return state, compile_steps(config, mesh, *optimizers)


def abstract_train_state(config) -> TrainState:
  """Shapes and dtypes of the state, computing nothing: the target for restoring a checkpoint."""
  init, _ = _init_function(config)
  return jax.eval_shape(init)


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh named `data` over `devices` (default: every device of every process)."""
  devices = jax.devices() if devices is None else devices
  return jax.make_mesh((len(devices),), (AXIS,), devices=devices)


def compile_steps(config, mesh, tx_g, tx_d, schedules):
  """The jitted data-parallel train and eval steps over `mesh`."""
  generator, discriminator = models.create_models(config.model, config.dtype, axis_name=AXIS)
  step = functools.partial(
    train_step,
    config=config,
    generator=generator,
    discriminator=discriminator,
    tx_g=tx_g,
    tx_d=tx_d,
    schedules=schedules,
  )
  evaluate = functools.partial(eval_step, config=config, generator=generator, discriminator=discriminator)
  parallel_step = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=(P(), P()))
  parallel_eval = jax.shard_map(evaluate, mesh=mesh, in_specs=(P(), P(AXIS)), out_specs=P())
  return jax.jit(parallel_step, donate_argnums=0), jax.jit(parallel_eval)


def global_batch(mesh, local_array: np.ndarray) -> jax.Array:
  """This process's rows -> one jax.Array sharded over the `data` axis of all processes."""
  return jax.make_array_from_process_local_data(NamedSharding(mesh, P(AXIS)), local_array)


@functools.partial(jax.jit, static_argnums=0)
def colorize_images(generator, generator_variables, images):
  """uint8 RGB -> uint8 RGB coloured by the generator from their lightness alone (eval mode)."""
  gray = color.uint8_rgb_to_normalized_lab(images)[..., :1]
  return color.normalized_lab_to_uint8_rgb(generator.apply(generator_variables, gray, train=False))


# ----------------------------------------------------------------------------- the loop


def evaluate_subset(eval_fn, state, mesh, eval_batches) -> dict:
  totals = None
  for batch in eval_batches:
    sums = eval_fn(state, {k: global_batch(mesh, v) for k, v in batch.items()})
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  count = float(totals.pop("count"))
  results = {name: float(value) / max(count, 1.0) for name, value in totals.items()}
  for prefix in ("", "gray/"):  # DESIGN section 5: the colourfulness gap to the real images.
    results[f"{prefix}delta_colorfulness"] = abs(results[f"{prefix}colorfulness"] - results["real_colorfulness"])
  if "d_loss_real" in results:
    results["d_loss"] = results["d_loss_real"] + results["d_loss_fake"]
  results["num_images"] = count
  return results


class StopSignal:
  """Turns SIGTERM and SIGINT into a request to save and stop after the current step."""

  SIGNALS = (signal.SIGTERM, signal.SIGINT)

  def __init__(self):
    self.received = None
    self.previous = {}
    if threading.current_thread() is threading.main_thread():  # Handlers can only go on the main thread.
      self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name

  def restore(self):
    for signum, handler in self.previous.items():
      signal.signal(signum, handler)


def _non_finite_error(what: str, last_checkpoint) -> FloatingPointError:
  kept = f"the last good checkpoint is step {last_checkpoint}" if last_checkpoint else "no checkpoint yet"
  return FloatingPointError(
    f"{what} ({kept}). Lower the learning rates or try config.dtype='float32', then rerun to resume."
  )


def average_finite_metrics(metrics_by_step: dict, last_checkpoint) -> dict:
  """Averages per-step metrics; stops the run at the first step whose losses are not finite."""
  for step, metrics in sorted(metrics_by_step.items()):
    bad = {name: float(value) for name, value in metrics.items() if "loss" in name and not np.isfinite(value)}
    if bad:
      raise _non_finite_error(f"non-finite loss at step {step}: {bad}; stopping without saving it", last_checkpoint)
  if not metrics_by_step:
    return {}
  return jax.tree.map(lambda *xs: float(np.mean(xs)), *metrics_by_step.values())


@jax.jit
def _all_finite(tree) -> jax.Array:
  return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in jax.tree.leaves(tree)]))


def check_finite_state(state: TrainState, step: int, last_checkpoint) -> None:
  if not bool(_all_finite((state.generator.params, state.discriminator.params))):
    raise _non_finite_error(f"non-finite parameters after step {step}; stopping without saving them", last_checkpoint)


def train_and_evaluate(config, workdir: str) -> TrainState:
  """Trains (or resumes) the run in `workdir`; returns the final state."""
  # ---- Devices and the run folder.
  mesh = make_mesh()
  check_config(config, jax.device_count(), jax.process_count())
  local_batch = config.batch_size // jax.process_count()
  run = reporting.RunFolder(workdir, config, mesh)

  # ---- Model and optimisers.
  state, (train_fn, eval_fn) = setup(config, mesh)
  plain_generator, _ = models.create_models(config.model, config.dtype)

  # ---- Resume.
  manager = checkpoint.create_manager(workdir, config.keep_checkpoints)
  position = input_pipeline.DataPosition()
  if manager.latest_step() is not None:
    state, position = checkpoint.restore_newest_usable(manager, state)
    logging.info("Resuming from the checkpoint of step %d in %s.", int(state.step), manager.directory)
    run.forget_metrics_after(int(state.step))
  elif config.init_from:
    state, source_step = checkpoint.load_weights(config.init_from, state)
    logging.info("Starting from the weights of %s at step %d (fine-tuning).", config.init_from, source_step)
  start_step = int(state.step)
  logging.info(
    "Training %s to step %d: %d %s device(s) in %d process(es), global batch %d, workdir %s.",
    config.dataset,
    config.num_train_steps,
    jax.device_count(),
    jax.devices()[0].platform,
    jax.process_count(),
    config.batch_size,
    workdir,
  )

  # ---- Input.
  gray_skipped = tf.Variable(0, dtype=tf.int64, trainable=False)  # Read at each log line.
  train_batches = input_pipeline.train_dataset(config, local_batch, position, gray_skipped).as_numpy_iterator()
  eval_data = input_pipeline.eval_dataset(config, local_batch)
  sample_images = reporting.first_images(eval_data, config.num_sample_images)

  # ---- Loop.
  progress = reporting.Progress(start_step, config.num_train_steps, config.batch_size)
  pending, sample_path = {}, None  # Metrics of the steps since the last log line, still on device.
  stop = StopSignal()
  try:
    for step in range(start_step + 1, config.num_train_steps + 1):
      batch = next(train_batches)
      state, pending[step] = train_fn(state, global_batch(mesh, batch["image"]))
      position = input_pipeline.position_after(batch)
      if step == start_step + 1:  # Time from here on: the first step includes compilation.
        jax.block_until_ready(state)
        logging.info("Compiled and ran the first step in %.1f s.", progress.restart(step))
      last = step == config.num_train_steps
      if step % config.log_every_steps == 0 or last or stop.received:
        averaged = average_finite_metrics(jax.device_get(pending), manager.latest_step())
        pending = {}
        averaged["gray_images_skipped"] = int(gray_skipped.numpy())  # So far in this process, read ahead.
        run.write_scalars(step, {f"train/{k}": v for k, v in averaged.items()} | progress.update(step))
      if step % config.eval_every_steps == 0 or last:
        results = evaluate_subset(eval_fn, state, mesh, eval_data.as_numpy_iterator())
        run.write_scalars(step, {f"eval/{k}": v for k, v in results.items()})
      if step % config.sample_every_steps == 0 or last:
        generated = colorize_images(plain_generator, state.generator.variables(), sample_images)
        sample_path = run.write_samples(step, sample_images, np.asarray(generated))
      if step % config.checkpoint_every_steps == 0 or last or stop.received:
        average_finite_metrics(jax.device_get(pending), manager.latest_step())
        check_finite_state(state, step, manager.latest_step())  # Never save a NaN state.
        checkpoint.save(manager, state, position)
      if stop.received:
        logging.warning("Stopped by %s at step %d; the checkpoint of this step is saved.", stop.received, step)
        break
  finally:  # Also on errors: let an in-flight checkpoint finish, flush the logs.
    stop.restore()
    manager.wait_until_finished()
    manager.close()
    run.close()
  if sample_path:
    logging.info("Trained to step %d. Validation images colorized: %s", int(state.step), sample_path)
  else:
    logging.info("Nothing to do: the run in %s is at step %d already.", workdir, start_step)
  return state
