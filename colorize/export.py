"""The export mode: a trained run's generator as a self-contained folder (`bundle.py`) for --weights.

python main.py --mode=export --workdir=runs/photos --output=weights --facts=FACTS.json
"""

import json
import os
import sys

from colorize import bundle
from colorize import inference
from colorize import run_setup
from colorize.run_setup import UsageError


def read_facts(path: str | None) -> dict:
  """The JSON object of facts in `path` (training data, scores), or {}; one-line errors."""
  if not path:
    return {}
  try:
    with open(path) as f:
      facts = json.load(f)
  except (OSError, ValueError) as error:
    raise UsageError(f"--facts={path} cannot be read as JSON ({error}): pass a file holding one JSON object.") from None
  if not isinstance(facts, dict):
    raise UsageError(f"--facts={path} holds a {type(facts).__name__}, not a JSON object: wrap the facts in {{...}}.")
  return facts


def export_bundle(workdir: str | None, output_dir: str | None, facts_path: str | None = None) -> dict:
  """Exports the newest checkpoint of `workdir` (its weight average when kept) to `output_dir`.

  The manifest records the commit that trained the run, then the facts of `facts_path`.
  """
  if not workdir or not output_dir:
    raise UsageError("--mode=export needs --workdir=RUN (a trained run) and --output=DIR (a new folder).")
  facts = read_facts(facts_path)
  path = os.path.join(workdir, "config.json")
  if not os.path.isfile(path):
    raise UsageError(f"--workdir={workdir} holds no run (no config.json): name the folder of a trained run.")
  with open(path) as f:
    saved = json.load(f)
  config = run_setup.config_from_dict(saved["config"])
  _, variables, step = inference.load_generator(config, workdir)
  facts = {"commit": saved.get("git_commit", "unknown"), **facts}  # The code that trained it.
  manifest = bundle.export(config, variables, step, output_dir, facts)
  print(f"Exported step {step} of {workdir}: {manifest['bytes']:,} bytes -> {output_dir}", file=sys.stderr)
  return manifest
