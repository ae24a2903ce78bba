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
   A model trained with hints (`model.hints`) gets a row per number of `--hints` points (read
   off the real val photos, the same for every model) with its PSNR gain over none.
3. Scores the classic colorizers of `colorize/measuring/baselines.py` (fitted on `train/`) the same way.
Each row is a JSON line (stdout and `--out_dir/rows.jsonl`); then the Markdown table of every row
in that file, and `--out_dir/grid.png`: gray | real | best classic | each model row.
"""

import csv
import functools
import hashlib
import json
import os
import sys
import tempfile
import time

import jax
import ml_collections
import numpy as np
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags
from PIL import Image

from benchmarks import common
from colorize import color
from colorize import hints as hints_lib
from colorize import metrics
from colorize.colouring import predict
from colorize.data import input_pipeline
from colorize.data import photos
from colorize.measuring import baselines
from colorize.networks import heads
from colorize.networks import inference
from colorize.networks import models
from colorize.runs import bundle
from colorize.training import train
from configs import test as test_config

FLAGS = flags.FLAGS


def _positive_numbers(values: list) -> bool:
  try:
    return all(float(value) > 0 for value in values)
  except ValueError:
    return False


def _counts(values: list) -> bool:
  return all(value.isdigit() for value in values) and bool(values)


def define_flags() -> None:
  """The benchmark's flags, defined when it (or a benchmark built on it) runs as the program:
  importing the module defines none, so its pieces can be tested beside the program's own flags."""
  config_flags.DEFINE_config_file("config", None, "The config to train; none: the classic colorizers only.")
  flags.DEFINE_string("data_dir", os.path.join(os.path.dirname(common.SHARED_PHOTOS)), "Folder with train/ and val/.")
  flags.DEFINE_string("row", None, "The row's name in the table (default: the config file's name).")
  flags.DEFINE_integer("steps", None, "Training batches; default: the config's num_train_steps.")
  flags.DEFINE_integer("eval_size", 256, "Side of the val photos that are colorized and scored.")
  flags.DEFINE_string("out_dir", "runs/quality", "Runs, rows.jsonl, outputs and the grid.")
  flags.DEFINE_integer("grid_photos", 8, "Val photos in the grid: the first that may be shown (public domain, CC0).")
  flags.DEFINE_string("weights", None, "Score an exported generator (e.g. weights/, the bundled one): no training.")
  flags.DEFINE_list("grid_rows", [], "Grid rows after gray | real; default: the best classic, every model.")
  flags.DEFINE_list(
    "temperatures", [], "A bins-head model (model.colour_head='bins'): a row at each annealed-mean temperature."
  )
  flags.DEFINE_list(
    "hints",
    ["0", "1", "2", "5", "10"],
    "A hints model (model.hints): a row with each number of points read off the real val photos (the same for every "
    "model: nested, seeded by the photo's place).",
  )
  flags.DEFINE_list(
    "vividness", [], "A row at each vividness of the model (0: its most faithful colour, 1: its boldest)."
  )
  flags.DEFINE_list(
    "saturation", [], "The saturation line: beside the model's row, its outputs with a,b scaled by each factor."
  )
  flags.DEFINE_float("max_tilt", None, "Tuning: the vivid head's tilt at vividness 1 (networks/heads.py MAX_TILT).")
  flags.DEFINE_bool("judge", True, "Each row's classifier agreement (EfficientNet-Lite2, colorize/measuring/judge.py).")
  flags.DEFINE_bool("quick", False, "CI smoke run: the tests' tiny networks, 3 steps, 4 val photos at 64 px.")
  flags.register_validator("temperatures", _positive_numbers, "--temperatures takes numbers above 0, e.g. 1,0.5,0.38.")
  flags.register_validator("saturation", _positive_numbers, "--saturation takes factors above 0, e.g. 1.25,1.5,2.")
  flags.register_validator(
    "vividness", lambda v: all(0 <= float(x) <= 1 for x in v), "--vividness takes values in [0, 1], e.g. 0,0.5,1."
  )
  flags.register_validator("hints", _counts, "--hints takes point counts of 0 or more, e.g. 0,1,2,5,10.")


HINT_SEED = 2017  # The val photos' simulated points (Zhang et al. 2017), one stream per photo.
SHOWABLE_LICENCES = ("public domain", "cc0")  # Lower case, '-' as ' ': "public-domain", "CC0-1.0".
QUICK_DATA = "quick: scikit-image's bundled photos at 64 px"  # The photo set of --quick rows.
SCORES = ("psnr", "psnr_vs_gray", "ssim", "mae_rgb", "accuracy", "colorfulness", "delta_colorfulness")


# ----------------------------------------------------------------------------- data


def read_photos(folder: str, size: int, limit: int | None = None) -> tuple:
  """(names, uint8 RGB [N, size, size, 3]) of the photos in `folder`, sorted by name: each photo's
  short side resized to `size` and its centre cropped square, as training's validation does."""
  if not os.path.isdir(folder):
    raise SystemExit(f"{folder} does not exist: point --data_dir at a folder with train/ and val/ photo folders.")
  found = photos.find_photos(folder)[:limit]
  if not found:
    raise SystemExit(f"{folder} holds no photos ({', '.join(photos.PHOTO_EXTENSIONS)}).")
  images = [input_pipeline.center_square_crop(photos.load_photo(path, path, 10**9).rgb, size) for path, _ in found]
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


def per_image_scores(outputs: np.ndarray, real: np.ndarray) -> dict:
  """Every output metric per image, in batches of 8 (bounded memory at 256 px)."""
  parts = [
    jax.device_get(metrics.jitted_output_metrics(outputs[i : i + 8], real[i : i + 8])) for i in range(0, len(real), 8)
  ]
  return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


def gray_reference(gray: np.ndarray, real: np.ndarray) -> np.ndarray:
  """The reference of every paired difference: the gray colorizer's PSNR per photo, as its row scores it."""
  return per_image_scores(np.stack([baselines.colorize(None, "gray", g) for g in gray]), real)["psnr"]


def gain_over(psnr: np.ndarray, reference_psnr: np.ndarray, name: str) -> dict:
  """The mean paired PSNR gain over a reference, photo by photo, with its 95% bootstrap interval."""
  gain = psnr - reference_psnr
  low, high = metrics.bootstrap_interval(gain)
  return {name: float(gain.mean()), f"{name}_low": low, f"{name}_high": high}


def summary_row(name: str, scores: dict, gray_psnr: np.ndarray) -> dict:
  """The row of one colorizer: means of its per-image scores, and its paired PSNR gain over gray."""
  row = {"row": name, **{k: float(np.mean(v)) for k, v in scores.items() if k != "real_colorfulness"}}
  row["delta_colorfulness"] = abs(row["colorfulness"] - float(np.mean(scores["real_colorfulness"])))
  row |= gain_over(scores["psnr"], gray_psnr, "psnr_vs_gray")
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


def colorize_gray(config, source: str, gray: np.ndarray, points: list | None = None) -> tuple:
  """(outputs of a run or bundle for the gray val photos, with each photo's hint `points` if
  given, and its step), through the colorize mode's path."""
  generator, variables, step = inference.load_generator(config, source)
  colorize = functools.partial(
    predict.colorize_group, generator, variables, size=config.image_size, multiple=models.input_multiple(config.model)
  )
  points = points or [None] * len(gray)
  group = [photos.Photo("", "", image, None, hints=p) for image, p in zip(gray, points, strict=True)]
  return np.concatenate([np.stack(colorize(group[i : i + 8])) for i in range(0, len(group), 8)]), step


def check_run_data(workdir: str, config) -> None:
  """Refuses to resume (and score) a run folder that trained on other photos or at another size."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    return
  with open(path) as f:
    saved = json.load(f)["config"]
  if (normalized(saved["data_dir"]), saved["image_size"]) != (normalized(config.data_dir), config.image_size):
    raise SystemExit(
      f"{workdir} trained on {saved['data_dir']} at {saved['image_size']} px, not on {config.data_dir} at "
      f"{config.image_size} px: pass another --row or --out_dir."
    )


def train_run(config, workdir: str) -> float:
  """Trains (or resumes) `config` in `workdir`; returns the minutes it took."""
  check_run_data(workdir, config)
  start = time.perf_counter()
  train.train_and_evaluate(config, workdir)
  return (time.perf_counter() - start) / 60


def variant_configs(config, temperatures: list, vividness: list) -> list:
  """[(row suffix, config)]: `config` itself, or one copy per annealed-mean temperature (a bins
  head) and per vividness."""
  if temperatures and config.model.colour_head != "bins":
    raise SystemExit("--temperatures needs a model with a bins head (model.colour_head='bins').")
  copies = []
  for temperature in temperatures or [None]:
    for level in vividness or [None]:
      copy = ml_collections.ConfigDict(config.to_dict())
      if temperature is not None:
        copy.model.temperature = float(temperature)
      if level is not None:
        copy.model.vividness = float(level)
      suffix = (f"@T{float(temperature):g}" if temperature is not None else "") + (
        f"@V{float(level):g}" if level is not None else ""
      )
      copies.append((suffix, copy))
  return copies


def saturated(outputs: np.ndarray, factor: float) -> np.ndarray:
  """uint8 RGB photos with their a,b scaled by `factor` (the saturation slider every colorizer is judged against)."""
  lab = color.rgb_to_lab(outputs.astype(np.float32) / 255.0, np)
  lab[..., 1:] *= factor
  return color.lab_to_uint8_rgb(lab, np)


def saturation_rows(row: dict, outputs: np.ndarray, real: np.ndarray, gray_psnr: np.ndarray) -> list:
  """[(row, outputs)] of `row`'s outputs at each --saturation factor."""
  scored = []
  for factor in map(float, FLAGS.saturation):
    more = saturated(outputs, factor)
    scores = summary_row(f"{row['row']}@sat{factor:g}", per_image_scores(more, real), gray_psnr)
    scored.append((scores | {"saturation": factor, "steps": row.get("steps", "-")}, more))
  return scored


def with_agreement(scored: list, real: np.ndarray) -> list:
  """Each row with the share of photos whose ImageNet top-1 class (the judge's) is the real photo's, with its
  95% interval."""
  from colorize.measuring import judge  # Reads EfficientNet-Lite2's weights: only when asked.

  classifier = judge.ImageNetJudge()
  real_classes = classifier.top1_classes(real)
  out = []
  for scores, outputs in scored:
    agree = (classifier.top1_classes(outputs) == real_classes).astype(np.float64)
    low, high = metrics.bootstrap_interval(agree)
    out.append((scores | {"agreement": float(agree.mean()), "agreement_low": low, "agreement_high": high}, outputs))
  return out


# ----------------------------------------------------------------------------- reporting


def normalized(data: str) -> str:
  """A photo set's name in rows: its folder as an absolute path (from the repository root), or a label."""
  return data if data == QUICK_DATA else os.path.normpath(os.path.abspath(data))


def row_key(row: dict) -> tuple:
  """What a row measured: (its name, its photo set, the size it was scored at)."""
  return row["row"], normalized(row.get("data", row.get("data_dir"))), row["eval_size"]


def outputs_folder(out_dir: str, row: str, data: str, size: int) -> str:
  """Where a row's outputs are saved: one folder per (row, photo set, size)."""
  tag = hashlib.sha256(f"{normalized(data)}|{size}".encode()).hexdigest()[:8]
  return os.path.join(out_dir, "outputs", f"{row}-{size}px-{tag}")


def store_rows(path: str, new_rows: list) -> list:
  """Adds `new_rows` to the JSON lines in `path`, each replacing an older row of the same key
  (a rerun updates its row in place); returns every row of the file, oldest first."""
  rows = {}
  if os.path.exists(path):
    with open(path) as f:
      rows = {row_key(row): row for row in map(json.loads, f)}
  rows |= {row_key(row): row for row in new_rows}
  temporary = f"{path}.tmp"
  with open(temporary, "w") as f:
    f.writelines(json.dumps(row) + "\n" for row in rows.values())
  os.replace(temporary, path)
  return list(rows.values())


def rows_of(rows: list, data: str, eval_size: int) -> list:
  """The rows measured on one photo set at one size: a table never mixes photo sets."""
  return [row for row in rows if row_key(row)[1:] == (normalized(data), eval_size)]


def markdown_table(rows: list) -> str:
  lines = [
    "| row | PSNR | vs gray [95% CI] | SSIM | MAE | acc@2 | colourfulness gap | agreement | steps | train min |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
  ]
  for r in rows:
    interval = f"{r['psnr_vs_gray']:+.2f} [{r['psnr_vs_gray_low']:+.2f}, {r['psnr_vs_gray_high']:+.2f}]"
    steps = r.get("steps", "-")
    minutes = f"{r['train_minutes']:.1f}" if "train_minutes" in r else "-"
    agreement = f"{r['agreement']:.2f}" if "agreement" in r else "-"
    lines.append(
      f"| {r['row']} | {r['psnr']:.2f} | {interval} | {r['ssim']:.3f} | {r['mae_rgb']:.2f} | {r['accuracy']:.3f} "
      f"| {r['delta_colorfulness']:.1f} | {agreement} | {steps} | {minutes} |"
    )
  return "\n".join(lines)


def save_outputs(folder: str, names: list, outputs: np.ndarray) -> None:
  os.makedirs(folder, exist_ok=True)
  for name, image in zip(names, outputs, strict=True):
    Image.fromarray(image).save(os.path.join(folder, os.path.splitext(name)[0] + ".png"))


def write_grid(out_dir: str, rows: list, names: list, real: np.ndarray, gray: np.ndarray, indices: list) -> str:
  """gray | real | `--grid_rows`, or the best classic (by PSNR) and each model row with saved outputs."""
  data, size = row_key(rows[0])[1:] if rows else (None, None)
  classic = [r for r in rows if r["row"] in baselines.NAMES and r["row"] != "gray"]
  shown = [max(classic, key=lambda r: r["psnr"])["row"]] if classic else []
  shown = FLAGS.grid_rows or shown + [r["row"] for r in rows if r["row"] not in baselines.NAMES]
  columns = [gray[indices], real[indices]]
  for row in shown:
    folder = outputs_folder(out_dir, row, data, size)
    files = [os.path.join(folder, os.path.splitext(names[i])[0] + ".png") for i in indices]
    if all(os.path.exists(f) for f in files):
      columns.append(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]))
  path = os.path.join(out_dir, "grid.png")
  Image.fromarray(inference.image_grid(columns, groups_per_row=2)).save(path)
  print(f"grid columns: gray | real | {' | '.join(shown)} -> {path}", file=sys.stderr)
  return path


def quick_photo_set(folder: str) -> str:
  """`folder` with train/ (16) and val/ (4) photos from scikit-image's wheel at 64 px, and their
  credits in manifest.csv: the --quick run needs no photo set."""
  credits = []
  for split, count in (("train", 16), ("val", 4)):
    os.makedirs(os.path.join(folder, split))
    for i in range(count):
      name = f"photo_{i:04d}.jpg"
      common.write_jpeg(os.path.join(folder, split, name), common.photo_like(64, 64, seed=i))
      credits.append({"file": name, **dict(zip(("author", "license"), common.photo_like_credit(i), strict=True))})
  with open(os.path.join(folder, "manifest.csv"), "w", newline="") as f:
    writer = csv.DictWriter(f, ["file", "author", "license"])
    writer.writeheader()
    writer.writerows(credits[16:])  # The val photos: the ones shown.
  return folder


def val_hint_points(real: np.ndarray, counts: list) -> dict:
  """{count: each val photo's first `count` points}: one seeded draw per photo, so 2 points are
  the 1 point and one more, and every model is given the same ones."""
  most = max(counts)
  rngs = [np.random.default_rng([HINT_SEED, i]) for i in range(len(real))]
  drawn = [hints_lib.points_from_photo(image, most, rng) for image, rng in zip(real, rngs, strict=True)]
  return {count: [points[:count] for points in drawn] for count in counts}


def hint_rows(config, real: np.ndarray) -> list:
  """[(row suffix, hint points or None)]: the automatic mode alone, or for a hints model none
  first (every gain's reference), then each of --hints."""
  if not config.model.hints:
    return [("", None)]
  counts = sorted({0, *map(int, FLAGS.hints)})
  return [(f"@{count}hints", points) for count, points in val_hint_points(real, counts).items()]


def score_model(config, source: str, row: str, gray: np.ndarray, real: np.ndarray, gray_psnr: np.ndarray) -> list:
  """[(row, outputs)] of a run or an exported generator: at its temperature, or at each of
  --temperatures; for a hints model with each number of --hints (and the PSNR gain over none)."""
  scored, first = [], True
  for suffix, scored_config in variant_configs(config, FLAGS.temperatures, FLAGS.vividness):
    automatic_psnr = None
    for hint_suffix, points in hint_rows(scored_config, real):
      outputs, step = colorize_gray(scored_config, source, gray, points)
      per_image = per_image_scores(outputs, real)
      scores = summary_row(row + suffix + hint_suffix, per_image, gray_psnr) | {"steps": step}
      if scored_config.model.colour_head == "bins":
        scores["temperature"] = scored_config.model.temperature
      if points is not None:
        scores["hints"] = len(points[0])
        automatic_psnr = per_image["psnr"] if automatic_psnr is None else automatic_psnr  # 0 points come first.
        scores |= gain_over(per_image["psnr"], automatic_psnr, "psnr_vs_no_hints")
      if scored_config.model.get("vividness", 0.0):
        scores["vividness"] = scored_config.model.vividness
      scored.append((scores, outputs))
      if first and (points is None or not len(points[0])):  # The saturation line starts at the first variant's colours.
        scored += saturation_rows(scores, outputs, real, gray_psnr)
        first = False
  return scored


def score_classics(data_dir: str, gray: np.ndarray, real: np.ndarray, gray_psnr: np.ndarray, quick: bool) -> list:
  """[(row, outputs)] of each classic colorizer, fitted on train/."""
  return [
    (summary_row(name, per_image_scores(outputs, real), gray_psnr), outputs)
    for name, outputs in classic_outputs(data_dir, gray, quick).items()
  ]


def score_training(config, workdir: str, row: str, gray: np.ndarray, real: np.ndarray, gray_psnr: np.ndarray) -> list:
  """[(row, outputs)] of the config trained (or resumed) in `workdir`."""
  minutes = train_run(config, workdir)
  scored = score_model(config, workdir, row, gray, real, gray_psnr)
  if (step := scored[0][0]["steps"]) < config.num_train_steps:
    raise SystemExit(f"training stopped at step {step} of {config.num_train_steps}; rerun to resume and score it.")
  facts = {"train_minutes": minutes, "argv": " ".join(sys.argv[1:])}
  return [(scores | facts, outputs) for scores, outputs in scored]


def report(out_dir: str, rows: list, names: list, real: np.ndarray, gray: np.ndarray, credits: dict) -> None:
  """The Markdown table of `rows` and the grid of the first showable val photos, with their credits."""
  print("\n" + markdown_table(rows), file=sys.stderr)
  indices = showable(names, credits)[: FLAGS.grid_photos]
  write_grid(out_dir, rows, names, real, gray, indices)
  shown = [f"{names[i]} ({', '.join(credits.get(names[i], ('?', '?')))})" for i in indices]
  print("grid photos, row by row: " + "; ".join(shown), file=sys.stderr)


def run(data_dir: str, data: str, size: int) -> None:
  """Scores what the flags ask for on `data_dir` (named `data` in the rows), then reports."""
  names, real = read_photos(os.path.join(data_dir, "val"), size, limit=4 if FLAGS.quick else None)
  gray = inference.gray_version(real)
  context = {"data": data, "eval_size": size, "cpu": common.cpu_model()}
  context["devices"] = jax.device_count()
  gray_psnr = gray_reference(gray, real)
  scored = []
  if FLAGS.weights:
    weights_config = bundle.bundle_config(FLAGS.weights)
    scored += score_model(weights_config, FLAGS.weights, FLAGS.row or "bundled", gray, real, gray_psnr)
  elif FLAGS.config is None or FLAGS.quick:
    scored += score_classics(data_dir, gray, real, gray_psnr, FLAGS.quick)
  if FLAGS.config is not None or FLAGS.quick:
    config = benchmark_config(FLAGS.config, data_dir, FLAGS.steps, FLAGS.quick)
    row = FLAGS.row or ("quick" if FLAGS.quick else "model")
    scored += score_training(config, os.path.join(FLAGS.out_dir, "runs", row), row, gray, real, gray_psnr)
  if FLAGS.judge:
    scored = with_agreement(scored, real)
  for scores, outputs in scored:
    save_outputs(outputs_folder(FLAGS.out_dir, scores["row"], data, size), names, outputs)
  new_rows = [common.emit(scores | context) for scores, _ in scored]
  rows = rows_of(store_rows(os.path.join(FLAGS.out_dir, "rows.jsonl"), new_rows), data, size)
  report(FLAGS.out_dir, rows, names, real, gray, photo_credits(data_dir))


def main(argv):
  del argv
  if FLAGS.max_tilt is not None:
    heads.MAX_TILT = FLAGS.max_tilt  # Read when the generator is traced: before any compilation.
  logging.set_verbosity(logging.WARNING)
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  if FLAGS.quick:  # Bundled photos in a folder of its own, removed afterwards.
    with tempfile.TemporaryDirectory(prefix="quality-quick-") as folder:
      run(quick_photo_set(folder), QUICK_DATA, 64)
  else:
    run(FLAGS.data_dir, os.path.abspath(FLAGS.data_dir), FLAGS.eval_size)


if __name__ == "__main__":
  define_flags()
  app.run(main)
