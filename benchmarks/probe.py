"""The linear-probe floor: what EfficientNet-Lite0's frozen ImageNet features know about colour.

    python -m benchmarks.probe --data_dir=../shared/photos --ridge=1e4,1e5,1e6
    python -m benchmarks.probe --data_dir=../shared/photos --random_encoder   # the same network untrained
    python -m benchmarks.probe --quick --out_dir=/tmp/probe                   # CI smoke run

Each photo's gray (L with a = b = 0, as RGB) at 224 px goes through the frozen encoder; the
features of blocks 2, 4, 10 and 15 and of the head (1776 channels) are resized to a 32x32 grid;
a ridge regression per grid cell, fitted on `train/`, maps them to the cell's mean a,b; on `val/`
the predicted grid is resized to the photo (bilinear) and joined with the photo's own L. No
decoder is trained: a trained one should do at least this well. Rows (`probe_ridge<lambda>`)
join the quality benchmark's `--out_dir/rows.jsonl`, scored by the same code.
"""

import os
import sys
import tempfile
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from benchmarks import common
from benchmarks import quality
from colorize import color
from colorize.networks import efficientnet
from colorize.networks import inference

flags.DEFINE_list("ridge", ["1e4", "1e5", "1e6"], "Ridge strengths, one row each (features standardised).")
flags.DEFINE_bool("random_encoder", False, "The same network randomly initialised: how much is the pretraining's.")
FLAGS = flags.FLAGS
ENCODER_SIZE = 224  # The side ImageNet classifiers see.
GRID = 32  # Probe cells per side.
PROBE_BLOCKS = (2, 4, 10, 15)  # Strides 4, 8, 16, 32 (efficientnet.SKIP_BLOCKS without the stride-2 block).


def encoder_variables(random: bool) -> dict:
  if not random:
    return efficientnet.pretrained_variables()
  rgb = jnp.zeros((1, ENCODER_SIZE, ENCODER_SIZE, 3))
  return efficientnet.EfficientNetLite0().init(jax.random.key(0), rgb)


@jax.jit
def grid_features(variables, lightness):
  """L* [B, H, W] -> the probe's features [B, GRID, GRID, 1776]: chosen blocks and the head, resized."""
  lightness = jax.image.resize(lightness[..., None], (lightness.shape[0], ENCODER_SIZE, ENCODER_SIZE, 1), "linear")
  skips = efficientnet.EfficientNetLite0().apply(variables, efficientnet.as_gray_rgb(lightness), features=True)
  chosen = [skips[efficientnet.SKIP_BLOCKS.index(block)] for block in PROBE_BLOCKS]
  head = nn.Conv(efficientnet.HEAD, (1, 1), use_bias=False).apply(
    {"params": variables["params"]["conv_head"]}, chosen[-1]
  )
  normalize = nn.BatchNorm(use_running_average=True, epsilon=1e-3)
  head = nn.relu6(normalize.apply({name: variables[name]["bn1"] for name in ("params", "batch_stats")}, head))
  size = (lightness.shape[0], GRID, GRID)
  return jnp.concatenate([jax.image.resize(f, (*size, f.shape[-1]), "linear") for f in (*chosen, head)], axis=-1)


QUALITY_ONLY_FLAGS = ("config", "row", "steps", "weights", "temperatures", "grid_rows", "grid_photos")


def cell_colours(images: np.ndarray) -> np.ndarray:
  """uint8 RGB [N, S, S, 3] -> each grid cell's mean a,b in Lab units, [N, GRID, GRID, 2]."""
  ab = color.rgb_to_lab(images / 255.0, np)[..., 1:]
  n, size = len(images), images.shape[1]
  return ab.reshape(n, GRID, size // GRID, GRID, size // GRID, 2).mean(axis=(2, 4))


def batches(images: np.ndarray, size: int = 16):
  for i in range(0, len(images), size):
    yield images[i : i + size]


def features_of(variables, images: np.ndarray) -> np.ndarray:
  """The probe's features of each grid cell of `images`, [N * GRID * GRID, 1776] float64."""
  return np.asarray(grid_features(variables, color.lightness(images)), np.float64).reshape(-1, 1776)


def fit(variables, images: np.ndarray, strengths: list) -> dict:
  """{strength: (mean, std, weights, intercept)} of the ridge regression from standardised features
  to a,b, from sums over the photos (the features of 630 photos would take 4.6 GB at once)."""
  count, total, gram, cross, target_total = 0, 0.0, 0.0, 0.0, 0.0
  for batch in batches(images):
    x, y = features_of(variables, batch), cell_colours(batch).reshape(-1, 2).astype(np.float64)
    count += len(x)
    total += x.sum(0)
    gram += x.T @ x
    cross += x.T @ y
    target_total += y.sum(0)
  mean = total / count
  variance = np.diag(gram) / count - mean**2
  std = np.where(variance > 1e-8, np.sqrt(np.maximum(variance, 1e-8)), 1.0)  # Constant features stay unscaled.
  centred_gram = (gram - count * np.outer(mean, mean)) / np.outer(std, std)
  centred_cross = (cross - np.outer(mean, target_total)) / std[:, None]
  solutions = {}
  for strength in strengths:
    weights = np.linalg.solve(centred_gram + strength * np.eye(len(mean)), centred_cross)
    solutions[strength] = (mean, std, weights, target_total / count)
  return solutions


def colorize(variables, solution, images: np.ndarray) -> np.ndarray:
  """The probe's uint8 RGB for the (colour) `images`, from their lightness alone."""
  mean, std, weights, intercept = solution
  cells = [((features_of(variables, batch) - mean) / std) @ weights + intercept for batch in batches(images)]
  grids = np.concatenate(cells)
  grids = grids.reshape(len(images), GRID, GRID, 2).astype(np.float32)
  ab = np.asarray(jax.image.resize(grids, (len(images), *images.shape[1:3], 2), "linear"))
  lab = np.concatenate([color.lightness(images)[..., None], ab], axis=-1)
  return np.asarray(color.lab_to_uint8_rgb(lab, np))


def run(data_dir: str, data: str, size: int) -> None:
  """Fits the probe on `data_dir`/train, scores it on val/ (rows named for the photo set `data`)."""
  _, train_images = quality.read_photos(os.path.join(data_dir, "train"), size)
  names, real = quality.read_photos(os.path.join(data_dir, "val"), size)
  gray_psnr = quality.gray_reference(inference.gray_version(real), real)
  variables = encoder_variables(FLAGS.random_encoder)
  start = time.perf_counter()
  solutions = fit(variables, train_images, [float(s) for s in FLAGS.ridge])
  minutes = (time.perf_counter() - start) / 60
  context = {"data": data, "eval_size": size, "cpu": common.cpu_model()}
  context |= {"devices": jax.device_count(), "train_minutes": minutes, "argv": " ".join(sys.argv[1:])}
  prefix = "probe_random" if FLAGS.random_encoder else "probe"
  rows = []
  for strength, solution in solutions.items():
    name = f"{prefix}_ridge{strength:.6g}".replace("e+0", "e").replace("e+", "e")  # probe_ridge100000, probe_ridge1e6
    outputs = colorize(variables, solution, real)
    quality.save_outputs(quality.outputs_folder(FLAGS.out_dir, name, context["data"], size), names, outputs)
    rows.append(common.emit(quality.summary_row(name, quality.per_image_scores(outputs, real), gray_psnr) | context))
  stored = quality.store_rows(os.path.join(FLAGS.out_dir, "rows.jsonl"), rows)
  print("\n" + quality.markdown_table(quality.rows_of(stored, data, size)), file=sys.stderr)


def main(argv):
  del argv
  for name in QUALITY_ONLY_FLAGS:
    if FLAGS[name].present:
      raise SystemExit(f"--{name} is the quality benchmark's; the probe takes --data_dir, --eval_size, --ridge, ...")
  if FLAGS.eval_size % GRID:
    raise SystemExit(f"--eval_size={FLAGS.eval_size} must be a multiple of the probe's {GRID}x{GRID} grid.")
  os.makedirs(FLAGS.out_dir, exist_ok=True)
  if FLAGS.quick:  # The quality benchmark's --quick photos: 16 to fit, 4 to score, at 64 px.
    with tempfile.TemporaryDirectory(prefix="probe-quick-") as folder:
      run(quality.quick_photo_set(folder), quality.QUICK_DATA, 64)
  else:
    run(FLAGS.data_dir, os.path.abspath(FLAGS.data_dir), FLAGS.eval_size)


if __name__ == "__main__":
  quality.define_flags()
  app.run(main)
