"""A run's record of itself, so that it never changes silently.

`config.json` keeps the config a run started with (and the data rules it was started under);
`history.jsonl` gains one line at every start and resume: the step, the command line, the config
file and overrides, the fields that changed since the previous start, the commit and the package
versions. A start is checked against the record before anything is written: a field that shapes
the networks or the data cannot change in a run (one line, exit 2), the others are printed.
"""

import json
import os
import sys
import time

from absl import logging

from colorize.runs import run_setup

# The rules that decide which photos a run trains on and in which order. A change of either would
# resume a run on another split or another stream: its version is recorded in the run.
DATA_RULES = {
  "folder_split": "sha256-of-file-name",  # sources.is_validation_photo (earlier: the path's).
  "seed_streams": "tagged",  # input_pipeline.data_rng: every random stream of the data has its own tag.
}

# Fields that shape the networks (their parameters no longer fit) or the data (another split,
# another stream): a run keeps them for life. Prefixes end with a dot. Fields of `model` read at
# inference alone (`INFERENCE_ONLY`) may change.
SHAPING_FIELDS = (
  "model.",
  "image_size",
  "dataset",
  "data_dir",
  "train_split",
  "eval_split",
  "folder_val_fraction",
  "seed",
)


# Fields a dataset does not read, left out of what a run records (a folder run has no tfds splits).
UNREAD = {
  "folder": ("train_split", "eval_split", "download"),
  "demo": ("train_split", "eval_split", "download"),
}


def recorded(config) -> dict:
  """The config as a run records it (nested): without the fields its dataset never reads."""
  tree = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  return {name: value for name, value in tree.items() if name not in UNREAD.get(tree.get("dataset"), ())}


def flat(config) -> dict:
  """{dotted field: value} of a ConfigDict or a nested dict."""
  tree = config.to_dict() if hasattr(config, "to_dict") else config
  out = {}
  for name, value in tree.items():
    if isinstance(value, dict):
      out |= {f"{name}.{inner}": v for inner, v in flat(value).items()}
    else:
      out[name] = value
  return out


def differences(before: dict, after: dict) -> dict:
  """{field: [before, after]} of the fields of two flat configs that differ (None: absent)."""
  return {
    name: [before.get(name), after.get(name)]
    for name in sorted(before.keys() | after.keys())
    if before.get(name) != after.get(name)
  }


INFERENCE_ONLY = ("model.border", "model.temperature", "model.vividness")


def is_shaping(name: str) -> bool:
  if name in INFERENCE_ONLY:
    return False
  return any(name == field or (field.endswith(".") and name.startswith(field)) for field in SHAPING_FIELDS)


def shaping(changed: dict) -> list:
  """The fields of `changed` that a run keeps for life."""
  return [name for name in changed if is_shaping(name)]


def comparable(fields: dict) -> dict:
  """Flat config fields as a run's identity compares them: a data folder by its real path (the
  same folder named relatively or absolutely, or through a link, is one folder)."""
  folder = fields.get("data_dir")
  return fields | ({"data_dir": os.path.realpath(folder)} if folder else {})


def described(changed: dict) -> str:
  return ", ".join(f"{name} {before!r} -> {after!r}" for name, (before, after) in changed.items())


def check_start(config, workdir: str, trained: bool = True) -> dict:
  """The fields changed since the run last trained ({} for a new run), printed; raises UsageError,
  before anything is written, when one shapes the networks or the data, or the data rules differ.
  A run with no checkpoint yet (`trained` False) trained nothing: any config may start it again."""
  saved = run_setup.saved_start(workdir)
  if saved is None or not trained:
    return {}
  # Both over today's defaults; a field the run did not record (added since) is not held against it.
  fields_of_the_run = flat(saved["config"])
  original = comparable(flat(run_setup.config_from_dict(saved["config"])))
  against_original = differences(original, comparable(flat(config)))
  if fixed := [name for name in shaping(against_original) if name in fields_of_the_run]:
    changed = described({name: against_original[name] for name in fixed})
    raise run_setup.UsageError(
      f"--workdir={workdir} is a run of another config ({changed}): these fields shape its networks or data "
      "and stay for the run's life; name a new --workdir (or --config.init_from to start from its weights)."
    )
  rules = saved.get("data_rules")
  if rules is not None and rules != DATA_RULES:
    raise run_setup.UsageError(
      f"--workdir={workdir} was started under other data rules ({described(differences(rules, DATA_RULES))}): "
      "resuming would train on another split or order of photos; start a new --workdir."
    )
  if rules is None and config.dataset == "folder":
    logging.warning(
      "%s records no data rules (it predates them): if it started before the folder split hashed file names "
      "or before each random data stream had its own tag, its photos' split or order are not those it began with.",
      workdir,
    )
  changed = differences(flat(run_setup.config_from_dict(run_setup.latest_config(workdir))), flat(config))
  if changed:
    logging.warning("Resuming %s with %d changed field(s): %s", workdir, len(changed), described(changed))
  return changed


def record_start(workdir: str, step: int, config, changed: dict, invocation: dict, versions: dict, commit: str):
  """Appends this start (or resume) to the run's history; process 0 only."""
  line = {
    "step": step,
    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    **invocation,
    "changed": changed,
    "config": flat(recorded(config)),
    "data_rules": DATA_RULES,
    "commit": commit,
    "versions": versions,
  }
  with open(os.path.join(workdir, run_setup.HISTORY), "a") as f:
    f.write(json.dumps(line) + "\n")


def invocation(config_file: str | None, argv: list | None = None) -> dict:
  """The command line of this start: the whole of it, its config file and its --config overrides."""
  argv = sys.argv if argv is None else argv
  return {
    "command": " ".join(argv),
    "config_file": config_file or "(the run's own)",
    "overrides": [arg for arg in argv if arg.startswith("--config.")],
  }
