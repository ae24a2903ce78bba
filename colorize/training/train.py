"""The training loop: resume, input, steps, logging, validation, samples, checkpoints, faults.

The step itself is in `steps.py` (state, the per-device step), `optim.py` (optimisers) and
`compiled.py` (the jitted data-parallel functions of each phase).
"""

import dataclasses
import signal
import threading

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from colorize.data import input_pipeline
from colorize.data import sources
from colorize.data import usable
from colorize.networks import colour_bins
from colorize.networks import inference
from colorize.runs import bundle
from colorize.runs import checkpoint
from colorize.runs import reporting
from colorize.runs import run_record
from colorize.runs import run_setup
from colorize.training import compiled
from colorize.training import config_checks
from colorize.training import losses
from colorize.training import steps
from colorize.training import validation


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
  """Averages per-step metrics; stops the run at the first step whose losses are not finite.

  Steps the train step already skipped (config.skip_nonfinite) are left out and counted instead.
  """
  skipped = [step for step, metrics in metrics_by_step.items() if metrics.get("nonfinite_skipped", 0)]
  kept = {step: metrics for step, metrics in metrics_by_step.items() if step not in skipped}
  for step, metrics in sorted(kept.items()):
    bad = {name: float(value) for name, value in metrics.items() if "loss" in name and not np.isfinite(value)}
    if bad:
      raise _non_finite_error(f"non-finite loss at step {step}: {bad}; stopping without saving it", last_checkpoint)
  # Keys are averaged over the steps that have them (the L1-only pretraining step logs no D losses).
  names = dict.fromkeys(name for metrics in kept.values() for name in metrics)
  averaged = {name: float(np.mean([m[name] for m in kept.values() if name in m])) for name in names}
  if skipped:
    logging.warning("Skipped the updates of steps %s: non-finite loss or parameters.", sorted(skipped))
  if "nonfinite_skipped" in averaged or skipped:
    averaged["nonfinite_skipped"] = len(skipped)  # Updates skipped in this logging window.
  return averaged


_all_finite = jax.jit(steps.all_finite)


def check_finite_state(state: steps.TrainState, step: int, last_checkpoint) -> None:
  if not bool(_all_finite((state.generator.params, state.discriminator.params))):
    raise _non_finite_error(f"non-finite parameters after step {step}; stopping without saving them", last_checkpoint)


def _training_colour_counts(config, photos: usable.TrainingPhotos | None):
  """The a,b histogram of the first `loss.rebalance_images` training images (the seeded order's,
  whatever the resume point), summed over processes so every replica uses the same."""
  images = input_pipeline.first_training_images(config, config.loss.rebalance_images, photos)
  counts = losses.ab_histogram(images)
  return np.sum(multihost_utils.process_allgather(counts), axis=0) if jax.process_count() > 1 else counts


def colour_weights(config, photos: usable.TrainingPhotos | None = None):
  """Class-rebalancing weights of the regression term (config.loss.rebalance > 0), else None."""
  if not config.loss.rebalance:
    return None
  return losses.rebalancing_weights(_training_colour_counts(config, photos), config.loss.rebalance)


VIVID_MIX = 0.5  # The vivid head's prior: the photos' colours mixed half and half with uniform (Zhang et al.).


def with_start_weights(config, state: steps.TrainState, mesh, photos) -> steps.TrainState:
  """A fresh run's state: `init_from`'s weights (a run's or a bundle's), and a vivid head's
  rebalancing weights from the training photos (fixed for the run's life: `heads.VividHead`)."""
  if config.init_from and bundle.is_bundle(config.init_from):
    variables, source_step, added = bundle.weights_into(config.init_from, jax.device_get(state.generator.variables()))
    if config.get("vivid_head_only", False) and (frozen_new := [p for p in added if "/VividHead_0/" not in p]):
      raise run_setup.UsageError(
        f"config.init_from={config.init_from} lacks {frozen_new[0]}, which config.vivid_head_only=True would keep "
        "frozen at its random start: start from a bundle of the same networks."
      )
    state = compiled.with_generator_variables(state, variables, NamedSharding(mesh, P()))
    logging.info("Starting from the bundle %s (step %d); new: %s.", config.init_from, source_step, added or "nothing")
  elif config.init_from:
    state, source_step = checkpoint.load_weights(config.init_from, state)
    logging.info("Starting from the weights of %s at step %d (fine-tuning).", config.init_from, source_step)
  if config.model.get("vivid_head", False):
    weights = losses.rebalancing_weights(_training_colour_counts(config, photos), VIVID_MIX)
    variables = jax.device_get(state.generator.variables())
    variables["params"]["VividHead_0"]["log_weights"] = np.log(colour_bins.grid_to_gamut(weights)).astype(np.float32)
    state = compiled.with_generator_variables(state, variables, NamedSharding(mesh, P()))
  return state


def phase_ends(config) -> dict:
  """{batch count: what starts after it} for each phase of the train step after the first
  (`compiled.phase_starts`): its first step compiles a step of its own."""
  names = {}
  for start in compiled.phase_starts(config)[1:]:
    if config.adversarial and start == config.pretrain_steps:
      names[start] = "the GAN (the end of L1 pretraining)"
    else:
      names[start] = "the encoder's fine-tuning (the end of its frozen phase)"
  return names


def warn_about_the_schedule(config) -> None:
  """Says when a short run never reaches a phase its recipe plans."""
  if config.adversarial and config.pretrain_steps >= config.num_train_steps:
    logging.warning(
      "config.pretrain_steps=%d >= config.num_train_steps=%d: this run is all L1 pretraining and never reaches the "
      "GAN; lower --config.pretrain_steps (docs/training.md: shortening a recipe).",
      config.pretrain_steps,
      config.num_train_steps,
    )


def train_and_evaluate(config, workdir: str, invocation: dict | None = None) -> steps.TrainState:
  """Trains (or resumes) the run in `workdir`; returns the final state. `invocation`: the command
  line recorded in the run's history (`run_record.invocation`).

  One function, as the Flax examples' `train_and_evaluate`: it reads top to bottom in the order
  a run happens (record, model, resume, input, loop), each part a few calls; split, the state it
  threads (the step, the data position, pending metrics) would be passed around instead."""
  # ---- The run's record (nothing written if the config cannot resume it), devices, data (a
  # missing dataset is told before anything compiles), the run folder.
  trained = checkpoint.newest_step(workdir) is not None
  changed = run_record.check_start(config, workdir, trained)
  mesh = steps.make_mesh()
  config_checks.check_config(config, jax.device_count(), jax.process_count())
  training_photos = usable.training_photos(config, cache_dir=workdir)
  sources.photo_source(config, "eval")
  run = reporting.RunFolder(workdir, config, mesh, rewrite_config=not trained)

  # ---- Model and optimisers.
  state, (train_fn, eval_fn) = compiled.setup(config, mesh, colour_weights(config, training_photos))
  plain_generator = inference.generator_module(config)

  # ---- Resume.
  manager = checkpoint.create_manager(workdir, config.keep_checkpoints)
  position = input_pipeline.DataPosition()
  if manager.latest_step() is not None:
    state, saved_position = checkpoint.restore_newest_usable(manager, state)
    position = input_pipeline.DataPosition(**saved_position)
    logging.info("Resuming from the checkpoint of step %d in %s.", int(state.step), manager.directory)
  else:
    state = with_start_weights(config, state, mesh, training_photos)
  start_step = int(state.step)
  if start_step < config.num_train_steps:  # A run with nothing to do records no start.
    run.record_start(start_step, config, changed, invocation or run_record.invocation(None))
    warn_about_the_schedule(config)
    logging.info(reporting.CONSOLE_LEGEND)
  run.forget_metrics_after(start_step)  # Steps logged after the checkpoint (or with none) are trained again.
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
  train_batches = input_pipeline.train_batches(config, position, photos=training_photos)
  eval_data = input_pipeline.eval_dataset(config)
  sample_images = input_pipeline.first_images(eval_data, config.num_sample_images)
  gray_skipped = 0  # Gray (or broken) photos replaced in this process's slices so far; summed when logged.

  # ---- Loop.
  progress = reporting.Progress(start_step, config.num_train_steps, config.batch_size)
  ends = phase_ends(config)
  pending, sample_path = {}, None  # Metrics of the steps since the last log line, still on device.
  stop = StopSignal()
  try:
    for step in range(start_step + 1, config.num_train_steps + 1):
      batch = next(train_batches)
      if step - 1 in ends and step > start_step + 1:  # Not silence while a new step compiles.
        logging.info("Step %d: %s begins; compiling its step.", step, ends[step - 1])
      state, pending[step] = train_fn(state, steps.global_batch(mesh, batch["image"]))
      position = input_pipeline.position_after(batch)
      gray_skipped += int(batch["gray_skipped"])
      if step == start_step + 1 or step - 1 in ends:  # Time from here on: a phase's first step compiles.
        jax.block_until_ready(state)
        phase = ends.get(step - 1, "")
        logging.info(
          "Compiled and ran the first step%s in %.1f s.", f" of {phase}" if phase else "", progress.restart(step)
        )
      last = step == config.num_train_steps
      if step % config.log_every_steps == 0 or last or stop.received:
        averaged = average_finite_metrics(jax.device_get(pending), manager.latest_step())
        pending = {}
        averaged["gray_images_skipped"] = int(np.sum(multihost_utils.process_allgather(np.int64(gray_skipped))))
        run.write_scalars(step, {f"train/{k}": v for k, v in averaged.items()} | progress.update(step))
      if step % config.eval_every_steps == 0 or last:
        results = validation.evaluate_subset(eval_fn, state, mesh, eval_data.batches())
        run.write_scalars(step, {f"eval/{k}": v for k, v in results.items()})
      if step % config.sample_every_steps == 0 or last:
        generated = inference.colorize_images(plain_generator, state.inference_variables(), sample_images)
        sample_path = run.write_samples(step, inference.comparison_grid(sample_images, np.asarray(generated)))
      if step % config.checkpoint_every_steps == 0 or last or stop.received:
        average_finite_metrics(jax.device_get(pending), manager.latest_step())
        check_finite_state(state, step, manager.latest_step())  # Never save a NaN state.
        checkpoint.save(manager, state, dataclasses.asdict(position))
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
