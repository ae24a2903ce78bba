"""Compares trained runs side by side: one Markdown table of the paper's metrics, one image grid.

    python -m colorize.measuring.compare runs/photos64 runs/photos64_unet --output=comparison

Uses each run's `eval/metrics.json` (from `--mode=evaluate`; a run without one is evaluated
first, on its whole held-out split) and checks that every run was evaluated on the same images.
Writes OUTPUT/comparison.md, comparison.json and comparison.png (the same validation images:
gray input | real | one column per run).
"""

import glob
import json
import os
import sys

import numpy as np
from absl import app
from absl import flags
from absl import logging
from PIL import Image

from colorize.data import input_pipeline
from colorize.measuring import evaluate
from colorize.networks import inference
from colorize.runs import checkpoint
from colorize.runs import reporting
from colorize.runs import run_record
from colorize.runs import run_setup
from colorize.runs.run_setup import UsageError

# Settings that decide which images a run is evaluated on; they must agree for a comparison.
# (The size is set for all: each run's own when they agree, else --eval_size.)
EVAL_DATA_FIELDS = ("dataset", "data_dir", "eval_split", "gray_tolerance")
FOLDER_SPLIT_FIELDS = ("folder_val_fraction",)  # The held-out share of a folder (never the seed).
OUTPUT_FILES = ("comparison.md", "comparison.json", "comparison.png")
USAGE = (
  "usage: python main.py --mode=compare --runs=RUN_A,RUN_B[,...] --output=DIR "
  "(alias: python -m colorize.measuring.compare)"
)


def check_same_eval_data(configs: list, workdirs: list) -> None:
  """Raises, naming the field and the runs, when two runs were evaluated on different images."""
  fields = EVAL_DATA_FIELDS + (FOLDER_SPLIT_FIELDS if configs[0].dataset == "folder" else ())
  for field in fields:
    values = {workdir: configs[i].get(field) for i, workdir in enumerate(workdirs)}
    if len(set(map(str, values.values()))) > 1:
      shown = ", ".join(f"{w}: {v!r}" for w, v in values.items())
      raise UsageError(f"the runs are evaluated on different data (config.{field}: {shown}); compare like with like.")


def check_same_image_count(metrics: list, workdirs: list) -> None:
  counts = {workdir: m["num_images"] for workdir, m in zip(workdirs, metrics, strict=True)}
  if len(set(counts.values())) > 1:
    raise UsageError(
      f"the runs were evaluated on different numbers of images ({counts}): "
      "rerun --mode=evaluate on each with the same --eval_images."
    )


def comparison_markdown(names: list, metrics: list, configs: list) -> str:
  """The metrics table (one column per run, each mean with its 95% interval, then the gray
  baseline, the same for every run), the step of each run's numbers, and the settings that differ."""
  gray = metrics[0]["baselines"]["gray"]
  header = ["metric", *names, "gray baseline"]
  lines = ["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
  for key in evaluate.METRIC_KEYS:
    label = evaluate.METRIC_LABELS[key].format(real=metrics[0]["real_colorfulness"])
    values = [evaluate.with_interval(m[key], m.get("intervals", {}).get(key)) for m in metrics]
    values.append(evaluate.with_interval(gray[key], metrics[0].get("intervals", {}).get(f"gray/{key}")))
    lines.append(f"| {label} | " + " | ".join(values) + " |")
  gains = [m["psnr"] - m["baselines"]["gray"]["psnr"] for m in metrics]
  spreads = [m.get("intervals", {}).get("psnr_vs_gray") for m in metrics]
  lines.append(
    "| PSNR gain over gray, paired, dB | "
    + " | ".join(
      f"{g:+.2f}" + (f" [{s[0]:+.2f}, {s[1]:+.2f}]" if s else "") for g, s in zip(gains, spreads, strict=True)
    )
    + " | - |"
  )
  lines.append("| step of these numbers | " + " | ".join(str(m["step"]) for m in metrics) + " | - |")
  count = metrics[0]["num_images"]
  caption = " | ".join(["gray input", "real", *names])
  title = f"# Comparison on {count} held-out images, {metrics[0].get('resolution', '')}"
  return "\n".join(
    [title, "", *lines, "", *settings_table(names, configs), "![comparison](comparison.png)", "", f"*{caption}*", ""]
  )


def settings_table(names: list, configs: list) -> list:
  """Markdown lines: the config fields whose values differ between the runs, one row each."""
  flat = [run_record.flat(config) for config in configs]
  fields = sorted(name for name in set().union(*flat) if len({repr(f.get(name)) for f in flat}) > 1)
  if not fields:
    return ["The runs' configs are the same.", ""]
  header = ["setting", *names]
  lines = ["Settings that differ:", "", "| " + " | ".join(header) + " |", "|---|" + "---|" * len(names)]
  for field in fields:
    lines.append(f"| {field} | " + " | ".join(f"`{f.get(field)!r}`" for f in flat) + " |")
  return [*lines, ""]


def comparison_grid(configs: list, workdirs: list, num_images: int) -> np.ndarray:
  """The same first validation images, colorized by every run: gray | real | run 1 | run 2 ..."""
  images = input_pipeline.validation_images(configs[0], num_images)
  generated = []
  for config, workdir in zip(configs, workdirs, strict=True):
    generator, variables, _ = inference.load_generator(config, workdir)
    generated.append(np.asarray(inference.colorize_images(generator, variables, images)))
  return inference.comparison_grid(images, *generated, groups_per_row=2)


def run_metrics(config, workdir: str, eval_images: int) -> dict:
  """The run's evaluation at `config.image_size`: the saved one when it is of the run's newest
  checkpoint and size, else a fresh one (which replaces it)."""
  path = os.path.join(
    evaluate.default_output(workdir, config.image_size, evaluate.trained_size(workdir)), "metrics.json"
  )
  newest = checkpoint.newest_step(workdir)
  if os.path.exists(path):
    with open(path) as f:
      saved = json.load(f)
    wanted_images = saved["num_images"] if eval_images < 0 else eval_images
    stale = {
      "step": (saved["step"], newest),
      "image size": (saved.get("image_size"), config.image_size),
      "images": (saved["num_images"], wanted_images),
      "intervals": ("intervals" in saved, True),  # Evaluated before every mean had one.
    }
    stale = {what: pair for what, pair in stale.items() if pair[0] != pair[1]}
    if not stale:
      return saved
    changed = ", ".join(f"{what} {old} -> {new}" for what, (old, new) in stale.items())
    logging.warning("%s's evaluation is out of date (%s): evaluating it again.", workdir, changed)
  else:
    logging.info("%s has no %s: evaluating it first.", workdir, os.path.relpath(path, workdir))
  return evaluate.evaluate_run(config, workdir, num_images=eval_images)


def common_size(configs: list, workdirs: list, eval_size: int) -> int:
  """The side every run is evaluated at: `eval_size`, or the runs' own when they agree."""
  if eval_size:
    return eval_size
  sizes = {workdir: config.image_size for config, workdir in zip(configs, workdirs, strict=True)}
  if len(set(sizes.values())) > 1:
    shown = ", ".join(f"{w}: {s} px" for w, s in sizes.items())
    raise UsageError(f"the runs trained at different sizes ({shown}): pass --eval_size=N to evaluate all at N px.")
  return configs[0].image_size


def at_size(config, size: int):
  """A copy of a run's config that evaluates at `size` px (the run's own config stays as it is)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.image_size = size
  return config


def run_folders(patterns: list) -> list:
  """Run folders from names and globs (`runs/*`): a glob keeps only folders that hold a run."""
  folders = []
  for pattern in patterns:
    if any(c in pattern for c in "*?["):
      folders += sorted(p for p in glob.glob(pattern) if os.path.isfile(os.path.join(p, "config.json")))
    else:
      folders.append(pattern)
  return list(dict.fromkeys(folders))


def compare(
  workdirs: list,
  output_dir: str,
  num_images: int = 8,
  eval_images: int = -1,
  overwrite: bool = False,
  eval_size: int = 0,
):
  """Writes the comparison of `workdirs` (names or globs) into `output_dir`, every run evaluated
  at one size (`eval_size`, or theirs when they agree); returns the paths written."""
  workdirs = run_folders(workdirs)
  if len(workdirs) < 2 or not output_dir:
    raise UsageError(f"{USAGE}: two runs or more, and a folder for the comparison.")
  missing = [w for w in workdirs if not os.path.isfile(os.path.join(w, "config.json"))]
  if missing:
    raise UsageError(f"{missing[0]} is not a run folder (no config.json): pass runs made by main.py.")
  paths = [os.path.join(output_dir, name) for name in OUTPUT_FILES]
  existing = [p for p in paths if os.path.exists(p)]
  if existing and not overwrite:
    raise UsageError(f"{existing[0]} exists: choose another --output, or pass --overwrite.")
  configs = [run_setup.saved_config(workdir) for workdir in workdirs]
  check_same_eval_data(configs, workdirs)
  evaluated = [at_size(config, common_size(configs, workdirs, eval_size)) for config in configs]
  metrics = [run_metrics(config, workdir, eval_images) for config, workdir in zip(evaluated, workdirs, strict=True)]
  check_same_image_count(metrics, workdirs)
  short_names_are_unique = len({run_setup.run_name(w) for w in workdirs}) == len(workdirs)
  names = [run_setup.run_name(w) if short_names_are_unique else w for w in workdirs]

  os.makedirs(output_dir, exist_ok=True)
  markdown_path, json_path, grid_path = paths
  reporting.write_report(comparison_markdown(names, metrics, configs), markdown_path)
  with open(json_path, "w") as f:
    json.dump({"runs": dict(zip(workdirs, metrics, strict=True))}, f, indent=2)
  Image.fromarray(comparison_grid(evaluated, workdirs, num_images)).save(grid_path)
  logging.info("Compared %d runs: %s", len(workdirs), markdown_path)
  return paths


FLAGS = flags.FLAGS


def define_flags():
  """The alias's own flags; colorize/cli.py defines its own (the two must not both be defined)."""
  flags.DEFINE_string("output", None, "Folder for comparison.md, comparison.json and comparison.png.")
  flags.DEFINE_integer("num_images", 8, "Validation images in the grid.")
  flags.DEFINE_integer("eval_images", -1, "For runs not yet evaluated: images of the eval split; -1 = all.")
  flags.DEFINE_bool("overwrite", False, "Replace an earlier comparison in --output.")


def main(argv):
  """`python -m colorize.measuring.compare RUN_A RUN_B --output=DIR`: an alias of `main.py --mode=compare`."""
  try:
    compare(argv[1:], FLAGS.output, FLAGS.num_images, FLAGS.eval_images, FLAGS.overwrite)
  except UsageError as error:
    print(f"compare: error: {error}", file=sys.stderr)
    sys.exit(2)


if __name__ == "__main__":
  define_flags()
  logging.set_verbosity(logging.INFO)
  app.run(main)
