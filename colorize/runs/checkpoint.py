"""Orbax checkpoints of a run: generator, discriminator and data position as separate items.

The generator is its own item so inference can restore it alone; so is the moving average of
its weights (`generator_ema`, only in runs with config.ema_decay > 0), which inference prefers.
The data position is a plain dict {'epoch', 'index'}: the global training stream's position,
the same on every process.
"""

import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from jax.experimental import multihost_utils

from colorize.runs.run_setup import UsageError

ITEMS = ("generator", "discriminator", "data", "generator_ema")


def checkpoint_dir(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), "checkpoints")


class NoCheckpointError(UsageError):
  """A run folder without checkpoints where a trained run is needed (a command-line mistake)."""


def require_checkpoint(workdir: str) -> None:
  """Raises NoCheckpointError, creating nothing, when `workdir` holds no checkpoint to read."""
  folder = checkpoint_dir(workdir)
  if not os.path.isdir(folder) or not any(name.isdigit() for name in os.listdir(folder)):
    raise NoCheckpointError(f"no checkpoint in {folder}: train the run first (--mode=train with this --workdir).")


def newest_step(workdir: str) -> int | None:
  """The step of the newest checkpoint of a run folder, from its folder names (creating nothing)."""
  folder = checkpoint_dir(workdir)
  steps = [int(name) for name in os.listdir(folder) if name.isdigit()] if os.path.isdir(folder) else []
  return max(steps, default=None)


def create_manager(workdir: str, keep: int = 3) -> ocp.CheckpointManager:
  options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
  return ocp.CheckpointManager(checkpoint_dir(workdir), options=options, item_names=ITEMS)


def save(manager: ocp.CheckpointManager, state, data_position: dict) -> None:
  """Starts an asynchronous save of `state` and the data position {'epoch', 'index'} at the state's
  step; collective over processes."""
  step = int(state.step)
  items = dict(
    generator=ocp.args.StandardSave(state.generator),
    discriminator=ocp.args.StandardSave(state.discriminator),
    data=ocp.args.JsonSave({"step": step, **{k: int(v) for k, v in data_position.items()}}),
  )
  if state.generator_ema is not None:
    items["generator_ema"] = ocp.args.StandardSave(state.generator_ema)
  try:
    manager.save(step, args=ocp.args.Composite(**items))
  except OSError as error:  # A full disk, a vanished mount: stop and say so; older checkpoints stay.
    raise OSError(
      error.errno,
      f"could not save the checkpoint of step {step} in {manager.directory}: {error.strerror or error}. "
      "Free some space (or fix the folder) and rerun to resume from the last saved step.",
    ) from error


def _abstract(tree):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def restore(manager: ocp.CheckpointManager, state, step: int | None = None):
  """Restores checkpoint `step` (default: the newest) into the structure and shardings of `state`.

  Returns (state, data position {'epoch', 'index'}).
  """
  step = manager.latest_step() if step is None else step
  items = dict(
    generator=ocp.args.StandardRestore(_abstract(state.generator)),
    discriminator=ocp.args.StandardRestore(_abstract(state.discriminator)),
    data=ocp.args.JsonRestore(),
  )
  keeps_average = state.generator_ema is not None
  if keeps_average and has_average(manager.directory, step):
    items["generator_ema"] = ocp.args.StandardRestore(_abstract(state.generator_ema))
  restored = manager.restore(step, args=ocp.args.Composite(**items))
  average = restored.get("generator_ema")
  if keeps_average and average is None:  # A run saved without an average (older, or ema_decay was 0).
    logging.warning("Checkpoint %d holds no weight average: it starts from the restored generator.", step)
    average = jax.tree.map(
      jnp.copy, {"params": restored.generator.params, "batch_stats": restored.generator.batch_stats}
    )
  state = state.replace(
    step=jax.device_put(np.int32(step), state.step.sharding),
    generator=restored.generator,
    discriminator=restored.discriminator,
    generator_ema=average,
  )
  return state, data_position(restored.data)


def has_average(directory, step: int) -> bool:
  """Whether checkpoint `step` holds a moving average of G's weights (config.ema_decay > 0)."""
  return os.path.isdir(os.path.join(str(directory), str(step), "generator_ema"))


def data_position(saved: dict) -> dict:
  """{'epoch', 'index'} from a checkpoint's data item. Checkpoints of earlier versions hold one
  row per process (each read its own shard); the stream is global now, so row 0 stands for all."""
  if "positions" in saved:
    epoch, index = saved["positions"][0]
    return {"epoch": int(epoch), "index": int(index)}
  return {"epoch": int(saved["epoch"]), "index": int(saved["index"])}


class NoUsableCheckpointError(RuntimeError):
  """Checkpoints exist but none can be restored: the run stops rather than start over on top."""


def _set_aside(manager: ocp.CheckpointManager, steps: list) -> None:
  """Moves damaged checkpoints out of the way (not deleted), so new saves can reuse their steps."""
  if not steps:
    return
  aside = os.path.join(os.path.dirname(str(manager.directory)), "damaged_checkpoints")
  if jax.process_index() == 0:
    os.makedirs(aside, exist_ok=True)
    for step in steps:
      target = os.path.join(aside, f"{step}-{int(time.time())}")
      os.replace(os.path.join(str(manager.directory), str(step)), target)
      logging.warning("Moved the damaged checkpoint %d to %s.", step, target)
  multihost_utils.sync_global_devices("colorize: damaged checkpoints set aside")
  manager.reload()


def restore_newest_usable(manager: ocp.CheckpointManager, state):
  """Restores the newest checkpoint that loads, warning about each damaged newer one.

  Returns (state, data position). Raises NoUsableCheckpointError when none loads: starting from
  scratch would silently replace the user's run.
  """
  damaged = []
  for step in sorted(manager.all_steps(), reverse=True):
    try:
      restored = restore(manager, state, step)
    except Exception as error:  # noqa: BLE001 (Orbax and TensorStore raise many kinds for damaged files)
      logging.warning(
        "Checkpoint %d in %s cannot be restored (%s); trying the one before.",
        step,
        manager.directory,
        str(error).splitlines()[0][:200],
      )
      damaged.append(step)
      continue
    _set_aside(manager, damaged)
    return restored
  raise NoUsableCheckpointError(
    f"none of the checkpoints {damaged} in {manager.directory} can be restored. Move the folder away to "
    "start this run afresh, or repair it; nothing was overwritten."
  )


def restore_generator_variables(workdir: str, abstract_variables: dict, step: int | None = None):
  """(G's {'params', 'batch_stats'}, step) of the newest checkpoint (or `step`): for inference.

  The moving average of G's weights when the run keeps one, else G's own; never an optimiser
  state nor the discriminator.
  """
  require_checkpoint(workdir)
  manager = ocp.CheckpointManager(checkpoint_dir(workdir), item_names=ITEMS)
  step = manager.latest_step() if step is None else step
  target = _abstract(abstract_variables)
  only_these = ocp.args.PyTreeRestore(
    target, restore_args=ocp.checkpoint_utils.construct_restore_args(target), partial_restore=True
  )
  item = "generator_ema" if has_average(manager.directory, step) else "generator"
  restored = manager.restore(step, args=ocp.args.Composite(**{item: only_these}))
  return restored[item], step


def load_weights(other_workdir: str, state):
  """`state` with the parameters and BatchNorm statistics of another run's newest checkpoint.

  For fine-tuning: the step and the optimiser state stay those of `state` (a fresh run).
  """
  manager = ocp.CheckpointManager(checkpoint_dir(other_workdir), item_names=ITEMS)
  step = manager.latest_step()
  if step is None:
    raise FileNotFoundError(f"config.init_from={other_workdir!r} holds no checkpoint: name a trained run's workdir.")
  try:
    restored = manager.restore(
      step,
      args=ocp.args.Composite(
        generator=ocp.args.StandardRestore(_abstract(state.generator)),
        discriminator=ocp.args.StandardRestore(_abstract(state.discriminator)),
      ),
    )
  except (ValueError, KeyError) as error:
    raise ValueError(
      f"config.init_from={other_workdir!r}: its networks do not match this config's "
      f"(model.* and image_size must agree): {error}"
    ) from None

  def weights_of(restored_net, net):
    return net.replace(params=restored_net.params, batch_stats=restored_net.batch_stats)

  generator = weights_of(restored.generator, state.generator)
  state = state.replace(
    generator=generator,
    discriminator=weights_of(restored.discriminator, state.discriminator),
    # The average starts afresh, in buffers of its own (the train step donates its state).
    generator_ema=None if state.generator_ema is None else jax.tree.map(jnp.copy, generator.variables()),
  )
  return state, step
