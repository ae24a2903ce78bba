"""Resolves the command line into (config, workdir) before any mode runs."""

import json
import os

import ml_collections


class UsageError(ValueError):
  """A mistake on the command line (a flag, a path, an output folder): nothing ran; exit status 2."""


class DatasetUnavailableError(RuntimeError):
  """The dataset is not on disk and cannot be fetched (the command line: one line, exit status 1).

  Here rather than in input_pipeline.py so that every mode can catch it without importing Grain.
  """


class MissingDataFolder(UsageError, DatasetUnavailableError):
  """config.data_dir names no folder: a mistake on the command line (exit 2), caught where a missing dataset is."""


def run_name(workdir: str) -> str:
  """A run's name in pages and reports meant to be shared: its folder's name, never a path."""
  return os.path.basename(os.path.normpath(workdir))


def default_workdir(config_path: str) -> str:
  return os.path.join("runs", os.path.splitext(os.path.basename(config_path))[0])


def saved_config(workdir: str) -> ml_collections.ConfigDict:
  """The config the run in `workdir` last trained with (`latest_config`).

  Fields added to configs/default.py since that run take their defaults, so older runs still load.
  """
  saved = latest_config(workdir)
  if saved is None:
    raise UsageError(
      f"--config is missing and --workdir={workdir} holds no run (no config.json): "
      "pass --config=configs/<name>.py, or the --workdir of a run."
    )
  return config_from_dict(saved)


def config_from_dict(saved: dict) -> ml_collections.ConfigDict:
  """A saved config over today's defaults: fields added since then take their defaults."""
  from configs import default

  config = default.get_config()
  config.update(saved)
  return config


HISTORY = "history.jsonl"  # A run's starts and resumes (run_record.py writes it).


def saved_start(workdir: str) -> dict | None:
  """config.json of the run in `workdir`, or None for a new run."""
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    return None
  with open(path) as f:
    return json.load(f)


def history(workdir: str) -> list:
  """The run's starts and resumes, oldest first (`HISTORY`); [] for a run made before it was kept."""
  path = os.path.join(workdir, HISTORY)
  if not os.path.isfile(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.endswith("\n")]


def latest_config(workdir: str) -> dict | None:
  """The config the run last trained with, nested: its newest history line's, else config.json's."""
  starts = history(workdir)
  if starts:
    return unflatten(starts[-1]["config"])
  saved = saved_start(workdir)
  return None if saved is None else saved["config"]


def unflatten(fields: dict) -> dict:
  tree = {}
  for name, value in fields.items():
    *parents, leaf = name.split(".")
    node = tree
    for parent in parents:
      node = node.setdefault(parent, {})
    node[leaf] = value
  return tree


def set_temperature(config, temperature: float) -> None:
  """Colour at `temperature` (--colorize_temperature): only a bins head has one to set."""
  if config.model.colour_head != "bins":
    raise UsageError(
      "--colorize_temperature needs a generator trained with a bins head (model.colour_head='bins'); "
      "this one predicts its colours directly: leave the flag out."
    )
  config.model.temperature = temperature


def resolve(config, config_path: str | None, workdir: str | None, create: bool = True):
  """(config, workdir): `config`, or the run's saved one. Training (`create`) makes the folder;
  the other modes read a run that must exist, and create nothing when it does not."""
  if config is None and workdir is None:
    raise UsageError("pass --config=configs/<name>.py, or --workdir=RUN for a run that exists.")
  workdir = workdir or default_workdir(config_path)
  if not create and not os.path.isdir(workdir):
    raise UsageError(f"--workdir={workdir} does not exist: train it first (--mode=train), or name a run that exists.")
  if config is None:
    config = saved_config(workdir)
  config.lock()
  if create:
    make_writable_folder(workdir, "--workdir")
  return config, workdir


def make_writable_folder(path: str, flag: str) -> None:
  """Creates `path` if needed; a UsageError naming `flag` when that fails or it is not writable."""
  if os.path.exists(path) and not os.path.isdir(path):
    raise UsageError(f"{flag}={path} is a file, not a folder: name a folder (it is created if needed).")
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as error:
    raise UsageError(f"cannot create {flag}={path}: {error.strerror or error}") from None
  if not os.access(path, os.W_OK | os.X_OK):
    raise UsageError(f"{flag}={path} is not writable: choose a folder you can write to.")


_CLUSTER_SIZE_VARIABLES = ("SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def initialize_distributed(coordinator_address: str | None, num_processes: int | None, process_id: int | None):
  """Joins a multi-host run: explicit flags, or a launcher JAX detects (SLURM, Open MPI, ...).

  A single process on one machine needs nothing: every local device is used.
  """
  import jax

  jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU-only processes need it; GPUs use NCCL.
  if coordinator_address:
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  elif any(int(os.environ.get(name, "1")) > 1 for name in _CLUSTER_SIZE_VARIABLES):
    jax.distributed.initialize()  # Address, count and rank come from the launcher's environment.
