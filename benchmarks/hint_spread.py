"""Tunes and measures how far a colour point spreads (`colorize/colouring/propagate.py`), on real photos.

    python -m benchmarks.hint_spread --data_dir=PHOTOS/train --tuning      # the held-out tenth of train/
    python -m benchmarks.hint_spread --data_dir=PHOTOS/val                 # the chosen setting on val/
    python -m benchmarks.hint_spread --quick                                # CI smoke run

Each photo (its centre square at 256 px) is colorized by the bundled model from its gray version,
with 0, 1, 2, 5 and 10 points read off the real photo as the quality benchmark reads them
(`hints.points_from_photo`, seeded by the photo's place), four ways: the learned hint channels
alone (the model as it was), the spread alone (the generator colours automatically, the points'
residual spreads), both, and, as the floor, none. Reports the mean PSNR gain over the automatic
colour with its 95% bootstrap interval, and the colourfulness gap, as JSON lines.
"""

import dataclasses
import itertools
import os
import time

import numpy as np
from absl import app
from absl import flags

from benchmarks import common
from colorize import hints as hints_lib
from colorize import metrics
from colorize.colouring import predict
from colorize.colouring import propagate
from colorize.data import input_pipeline
from colorize.data import photos
from colorize.data import sources
from colorize.networks import inference
from colorize.networks import models
from colorize.runs import bundle

flags.DEFINE_string("data_dir", os.path.join(os.path.dirname(common.SHARED_PHOTOS), "val"), "A folder of photos.")
flags.DEFINE_bool("tuning", False, "Use the held-out tenth of --data_dir (a train/ folder) and try a grid of settings.")
flags.DEFINE_list("counts", ["1", "2", "5", "10"], "Numbers of points per photo.")
flags.DEFINE_bool("quick", False, "4 bundled scikit-image photos at 128 px, one setting.")
FLAGS = flags.FLAGS
SIZE = 256
HINT_SEED = 20_171_207  # The quality benchmark's seed of the points (benchmarks/quality.py).


def tuning_grid() -> list:
  """Decays x caps of the window variance (the graph-Laplacian form), and Levin's own form."""
  grid = [
    propagate.Spread(decay=d, max_variance=v) for d, v in itertools.product((1e-6, 1e-4, 1e-3), (16.0, 64.0, np.inf))
  ]
  return grid + [propagate.Spread(decay=1e-4, form="levin")]


def photo_set(size: int) -> np.ndarray:
  if FLAGS.quick:
    return np.stack([common.photo_like(size, size, seed) for seed in range(4)])
  paths = [path for path, _ in photos.find_photos(FLAGS.data_dir)]
  if FLAGS.tuning:
    paths = [p for p in paths if sources.is_validation_photo(p, 0.1)]
  return np.stack([input_pipeline.center_square_crop(photos.load_photo(p, "").rgb, size) for p in paths])


def colourised(generator, variables, config, real: np.ndarray, points, spread, channels: bool) -> np.ndarray:
  """The photos coloured from their gray with `points` (None: none), through the colorize path."""
  gray = np.stack([inference.gray_version(image[None])[0] for image in real])
  group = [
    photos.Photo("", "", image, None, hints=None if points is None else p)
    for image, p in zip(gray, points or [None] * len(gray), strict=True)
  ]
  multiple = models.input_multiple(config.model)
  out = []
  for i in range(0, len(group), 8):
    out += predict.colorize_group(
      generator, variables, group[i : i + 8], config.image_size, multiple, spread=spread, learned_channels=channels
    )
  return np.stack(out)


def scores(outputs: np.ndarray, real: np.ndarray) -> dict:
  import jax

  per_image = jax.device_get(metrics.jitted_output_metrics(outputs, real))
  return {k: np.asarray(v) for k, v in per_image.items()}


def main(argv):
  del argv
  size = 128 if FLAGS.quick else SIZE
  config = bundle.bundle_config(bundle.BUNDLED)
  generator, variables, _ = inference.load_generator(config, bundle.BUNDLED)
  real = photo_set(size)
  counts = [int(c) for c in FLAGS.counts]
  rngs = [np.random.default_rng([HINT_SEED, i]) for i in range(len(real))]
  drawn = [hints_lib.points_from_photo(image, max(counts), rng) for image, rng in zip(real, rngs, strict=True)]
  automatic = scores(colourised(generator, variables, config, real, None, None, True), real)
  real_colour = float(automatic["real_colorfulness"].mean())
  settings = tuning_grid() if FLAGS.tuning and not FLAGS.quick else [propagate.Spread()]
  ways = [(None, True)] + [(s, False) for s in settings]
  if not FLAGS.tuning:  # The learned channels on top of the spread: measured at the chosen setting.
    ways += [(s, True) for s in settings]
  for (spread, channels), count in itertools.product(ways, counts):
    start = time.perf_counter()
    outputs = colourised(generator, variables, config, real, [p[:count] for p in drawn], spread, channels)
    per_image = scores(outputs, real)
    gain = per_image["psnr"] - automatic["psnr"]
    low, high = metrics.bootstrap_interval(gain)
    common.emit(
      {
        "benchmark": "hint_spread",
        "photos": "quick"
        if FLAGS.quick
        else os.path.basename(os.path.normpath(FLAGS.data_dir)) + (" tuning tenth" if FLAGS.tuning else ""),
        "count": len(real),
        "way": "channels" if spread is None else ("spread" if not channels else "both"),
        "spread": None if spread is None else dataclasses.asdict(spread),
        "points": count,
        "psnr": round(float(per_image["psnr"].mean()), 3),
        "gain_db": round(float(gain.mean()), 3),
        "gain_low": round(low, 3),
        "gain_high": round(high, 3),
        "colourfulness_gap": round(abs(float(per_image["colorfulness"].mean()) - real_colour), 2),
        "automatic_psnr": round(float(automatic["psnr"].mean()), 3),
        "seconds_per_photo": round((time.perf_counter() - start) / len(real), 3),
      }
    )


if __name__ == "__main__":
  app.run(main)
