"""Config checks at the start of every mode: each refusal names the field and the fix. The
networks' own options are checked where they are built (`networks/models.check_model_options`,
called from here)."""

from colorize.networks import models


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
  if config.get("vivid_head_only", False) and not (config.model.vivid_head and config.init_from):
    raise ValueError(
      "config.vivid_head_only=True trains the vivid head alone beside a trained generator: set "
      "model.vivid_head=True and config.init_from=BUNDLE (e.g. weights)."
    )
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
