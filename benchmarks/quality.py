"""The quality benchmark: train a config on a photo folder, score what colorize writes, beside classics.

    python -m benchmarks.quality --data_dir=../shared/photos --config=configs/photos.py --row=recipe
    python -m benchmarks.quality --data_dir=../shared/photos --config=configs/photos.py --row=unet \
        --config.adversarial=False --config.loss.regression=l2 --config.generator_steps_per_batch=1
    python -m benchmarks.quality --data_dir=../shared/photos            # the classic colorizers only
    python -m benchmarks.quality --data_dir=../shared/photos --weights=weights   # the bundled model
    python -m benchmarks.quality --quick                                 # CI smoke run, tiny everything

1. Trains the config (dataset = the folder's `train/` photos) for `--steps` batches in
   `--out_dir/ROW` (a killed benchmark resumes there), through the same code as main.py.
2. Colorizes the `val/` photos at `--eval_size` from their gray versions through the colorize
   mode's own path (`predict.colorize_group`: the input's L kept, a,b upsampled), and scores the
   outputs: PSNR, SSIM, MAE, accuracy@2, colourfulness gap, and the paired PSNR difference to
   the gray input with a bootstrap 95% interval.
3. Scores the classic colorizers of `colorize/baselines.py` (fitted on `train/`) the same way.
Each row is a JSON line (stdout and `--out_dir/rows.jsonl`); then the Markdown table of every row
in that file, and `--out_dir/grid.png`: gray | real | best classic | each model row.
"""

import csv
import functools
import json
import os
import sys
import tempfile
import time

import jax
import numpy as np
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
from PIL import Image

from benchmarks import common
from colorize import baselines
from colorize import bundle
from colorize import inference
from colorize import metrics
from colorize import photos
from colorize import predict
from colorize import train
from configs import test as test_config

config_flags.DEFINE_config_file("config", None, "The config to train; none: the classic colorizers only.")
flags.DEFINE_string("data_dir", os.path.join(os.path.dirname(common.SHARED_PHOTOS)), "Folder with train/ and val/.")
flags.DEFINE_string("row", None, "The row's name in the table (default: the config file's name).")
flags.DEFINE_integer("steps", None, "Training batches; default: the config's num_train_steps.")
flags.DEFINE_integer("eval_size", 256, "Side of the val photos that are colorized and scored.")
flags.DEFINE_string("out_dir", "runs/quality", "Runs, rows.jsonl, outputs and the grid.")
flags.DEFINE_integer("grid_photos", 8, "Val photos in the grid: the first that may be shown (public domain, CC0).")
flags.DEFINE_string("weights", None, "Score an exported generator (e.g. weights/, the bundled one): no training.")
flags.DEFINE_list("grid_rows", [], "Grid rows after gray | real; default: the best classic, every model.")
flags.DEFINE_bool("quick", False, "CI smoke run: the tests' tiny networks, 3 steps, 4 val photos at 64 px.")
FLAGS = flags.FLAGS
SHOWABLE_LICENCES = ("public domain", "cc0")  # Lower case, '-' as ' ': "public-domain", "CC0-1.0".
SCORES = ("psnr", "psnr_vs_gray", "ssim", "mae_rgb", "accuracy", "colorfulness", "delta_colorfulness")


# ----------------------------------------------------------------------------- data


def read_photos(folder: str, size: int, limit: int | None = None) -> tuple:
  """(names, uint8 RGB [N, size, size, 3]) of the photos in `folder`, sorted by name."""
  if not os.path.isdir(folder):
    raise SystemExit(f"{folder} does not exist: point --data_dir at a folder with train/ and val/ photo folders.")
  found = photos.find_photos(folder)[:limit]
  images = []
  for path, _ in found:
    rgb = photos.load_photo(path, path, max_pixels=10**9).rgb
    images.append(np.asarray(Image.fromarray(rgb).resize((size, size), Image.LANCZOS)) if rgb.shape[0] != size else rgb)
  return [name for _, name in found], np.stack(images)


def photo_credits(data_dir: str) -> dict:
  """{file: (author, licence)} from the folder's manifest.csv, if it has one."""
  manifest = os.path.join(data_dir, "manifest.csv")
  if not os.path.exists(manifest):
    return {}
  with open(manifest) as f:
    return {row["file"]: (row["author"], row["license"]) for row in csv.DictReader(f)}


def showable(names: list, credits: dict) -> list:
  """Indices of the photos whose licence lets them be shown without conditions (all, without a manifest)."""
  if not credits:
    return list(range(len(names)))
  licences = [credits.get(name, ("", ""))[1].lower().replace("-", " ") for name in names]
  return [i for i, licence in enumerate(licences) if licence.startswith(SHOWABLE_LICENCES)]


# ----------------------------------------------------------------------------- scores


@jax.jit
def _output_metrics(predicted, real):
  return metrics.output_metrics(predicted, real)


def per_image_scores(outputs: np.ndarray, real: np.ndarray) -> dict:
  """Every output metric per image, in batches of 8 (bounded memory at 256 px)."""
  parts = [jax.device_get(_output_metrics(outputs[i : i + 8], real[i : i + 8])) for i in range(0, len(real), 8)]
  return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def bootstrap_interval(differences: np.ndarray, samples: int = 10_000, seed: int = 0) -> tuple:
  """95% percentile-bootstrap interval of the mean of paired per-image differences."""
  rng = np.random.default_rng(seed)
  means = differences[rng.integers(0, len(differences), (samples, len(differences)))].mean(axis=1)
  return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def summary_row(name: str, scores: dict, gray_psnr: np.ndarray) -> dict:
  """The row of one colorizer: means of its per-image scores, and its paired PSNR gain over gray."""
  gain = scores["psnr"] - gray_psnr
  low, high = bootstrap_interval(gain)
  row = {"row": name, **{k: float(np.mean(v)) for k, v in scores.items() if k != "real_colorfulness"}}
  row["delta_colorfulness"] = abs(row["colorfulness"] - float(np.mean(scores["real_colorfulness"])))
  row |= {"psnr_vs_gray": float(gain.mean()), "psnr_vs_gray_low": low, "psnr_vs_gray_high": high}
  return row | {"num_images": len(gray_psnr)}


# ----------------------------------------------------------------------------- colorizers


def classic_outputs(data_dir: str, gray: np.ndarray, quick: bool) -> dict:
  """Each classic colorizer's outputs for the gray val photos, fitted on train/ at 256 px."""
  _, train_images = read_photos(os.path.join(data_dir, "train"), 256, limit=16 if quick else None)
  tables = baselines.fit(train_images)
  return {name: np.stack([baselines.colorize(tables, name, g) for g in gray]) for name in baselines.NAMES}


def benchmark_config(config, data_dir: str, steps: int | None, quick: bool):
  config = test_config.get_config() if quick else config
  with config.unlocked():
    config.dataset, config.data_dir = "folder", data_dir
    config.num_train_steps = 3 if quick else steps or config.num_train_steps
    config.num_eval_images = min(config.num_eval_images, 8)  # Validation during training: the sample grid's photos.
  return config


def colorize_gray(config, source: str, gray: np.ndarray) -> tuple:
  """(outputs of a run or bundle for the gray val photos, its step), through the colorize mode's path."""
  generator, variables, step = inference.load_generator(config, source)
  colorize = functools.partial(
    predict.colorize_group, generator, variables, size=config.image_size, multiple=2**config.model.depth
  )
  group = [photos.Photo("", "", image, None) for image in gray]
  return np.concatenate([np.stack(colorize(group[i : i + 8])) for i in range(0, len(group), 8)]), step


def train_and_colorize(config, workdir: str, gray: np.ndarray) -> tuple:
  """(outputs of the trained run for the gray val photos, training minutes, step)."""
  start = time.perf_counter()
  train.train_and_evaluate(config, workdir)
  minutes = (time.perf_counter() - start) / 60
  outputs, step = colorize_gray(config, workdir, gray)
  if step < config.num_train_steps:
    raise SystemExit(f"training stopped at step {step} of {config.num_train_steps}; rerun to resume and score it.")
  return outputs, minutes, step


# ----------------------------------------------------------------------------- reporting


def read_rows(path: str) -> list:
  """Rows of rows.jsonl, the newest of each name, in first-seen order."""
  rows = {}
  if os.path.exists(path):
    with open(path) as f:
      for line in f:
        row = json.loads(line)
        rows[row["row"]] = row  # A rerun replaces the row's values and keeps its place.
  return list(rows.values())


def markdown_table(rows: list) -> str:
  lines = [
    "| row | PSNR | vs gray [95% CI] | SSIM | MAE | acc@2 | colourfulness gap | steps | train min |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    interval = f"{r['psnr_vs_gray']:+.2f} [{r['psnr_vs_gray_low']:+.2f}, {r['psnr_vs_gray_high']:+.2f}]"
    steps = r.get("steps", "-")
    minutes = f"{r['train_minutes']:.1f}" if "train_minutes" in r else "-"
    lines.append(
      f"| {r['row']} | {r['psnr']:.2f} | {interval} | {r['ssim']:.3f} | {r['mae_rgb']:.2f} | {r['accuracy']:.3f} "
      f"| {r['delta_colorfulness']:.1f} | {steps} | {minutes} |"
    )
  return "\n".join(lines)


def save_outputs(folder: str, names: list, outputs: np.ndarray) -> None:
  os.makedirs(folder, exist_ok=True)
  for name, image in zip(names, outputs, strict=True):
    Image.fromarray(image).save(os.path.join(folder, os.path.splitext(name)[0] + ".png"))


def write_grid(out_dir: str, rows: list, names: list, real: np.ndarray, gray: np.ndarray, indices: list) -> str:
  """gray | real | `--grid_rows`, or the best classic (by PSNR) and each model row with saved outputs."""
  classic = [r for r in rows if r["row"] in baselines.NAMES and r["row"] != "gray"]
  shown = [max(classic, key=lambda r: r["psnr"])["row"]] if classic else []
  shown = FLAGS.grid_rows or shown + [r["row"] for r in rows if r["row"] not in baselines.NAMES]
  columns = [gray[indices], real[indices]]
  for row in shown:
    folder = os.path.join(out_dir, "outputs", row)
    files = [os.path.join(folder, os.path.splitext(names[i])[0] + ".png") for i in indices]
    if all(os.path.exists(f) for f in files):
      columns.append(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]))
  path = os.path.join(out_dir, "grid.png")
  Image.fromarray(inference.image_grid(columns, groups_per_row=2)).save(path)
  print(f"grid columns: gray | real | {' | '.join(shown)} -> {path}", file=sys.stderr)
  return path


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  size = 64 if FLAGS.quick else FLAGS.eval_size
  if FLAGS.quick and not os.path.isdir(os.path.join(FLAGS.data_dir, "val")):  # No photo set here: bundled photos.
    FLAGS.data_dir = tempfile.mkdtemp(prefix="quality-quick-")
    common.photo_folder(os.path.join(FLAGS.data_dir, "train"), 16, 64, 64)
    common.photo_folder(os.path.join(FLAGS.data_dir, "val"), 4, 64, 64)
  names, real = read_photos(os.path.join(FLAGS.data_dir, "val"), size, limit=4 if FLAGS.quick else None)
  gray = inference.gray_version(real)
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  rows_path = os.path.join(FLAGS.out_dir, "rows.jsonl")
  context = {"data_dir": FLAGS.data_dir, "eval_size": size, "cpu": common.cpu_model(), "devices": jax.device_count()}

  # The reference of every paired difference: the gray colorizer's outputs, as its row scores them.
  gray_psnr = per_image_scores(np.stack([baselines.colorize(None, "gray", g) for g in gray]), real)["psnr"]
  new_rows = []
  if FLAGS.weights:
    row = FLAGS.row or "bundled"
    outputs, step = colorize_gray(bundle.bundle_config(FLAGS.weights), FLAGS.weights, gray)
    new_rows.append(summary_row(row, per_image_scores(outputs, real), gray_psnr) | context | {"steps": step})
    save_outputs(os.path.join(FLAGS.out_dir, "outputs", row), names, outputs)
  elif FLAGS.config is None or FLAGS.quick:
    for name, outputs in classic_outputs(FLAGS.data_dir, gray, FLAGS.quick).items():
      new_rows.append(summary_row(name, per_image_scores(outputs, real), gray_psnr) | context)
      save_outputs(os.path.join(FLAGS.out_dir, "outputs", name), names, outputs)
  if FLAGS.config is not None or FLAGS.quick:
    config = benchmark_config(FLAGS.config, FLAGS.data_dir, FLAGS.steps, FLAGS.quick)
    row = FLAGS.row or ("quick" if FLAGS.quick else "model")
    outputs, minutes, step = train_and_colorize(config, os.path.join(FLAGS.out_dir, "runs", row), gray)
    scores = summary_row(row, per_image_scores(outputs, real), gray_psnr)
    new_rows.append(scores | context | {"steps": step, "train_minutes": minutes, "argv": " ".join(sys.argv[1:])})
    save_outputs(os.path.join(FLAGS.out_dir, "outputs", row), names, outputs)
  with open(rows_path, "a") as f:
    for row in new_rows:
      f.write(json.dumps(common.emit(row)) + "\n")
  rows = read_rows(rows_path)
  print("\n" + markdown_table(rows), file=sys.stderr)
  credits = photo_credits(FLAGS.data_dir)
  indices = showable(names, credits)[: FLAGS.grid_photos]
  write_grid(FLAGS.out_dir, rows, names, real, gray, indices)
  shown = [f"{names[i]} ({', '.join(credits.get(names[i], ('?', '?')))})" for i in indices]
  print("grid photos, row by row: " + "; ".join(shown), file=sys.stderr)


if __name__ == "__main__":
  app.run(main)
