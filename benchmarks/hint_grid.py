"""The hints picture: gray | automatic | with 3 points (drawn as rings) | real, for val photos.

    python -m benchmarks.hint_grid --data_dir=PHOTOS --weights=weights --output=docs/hints_grid.jpg

The points are the quality benchmark's (`quality.val_hint_points`: read off the real photo,
seeded by the photo's place); the photos the first of val/ that may be shown without conditions.
"""

import os
import sys

import numpy as np
from absl import app
from absl import flags
from PIL import Image
from PIL import ImageDraw

from benchmarks import quality
from colorize import color
from colorize.networks import inference
from colorize.runs import bundle

# --data_dir (a folder with val/ and manifest.csv) and --weights (default: the bundled model) are quality.py's flags.
flags.DEFINE_string("output", "docs/hints_grid.jpg", "The picture to write (never over an existing file).")
flags.DEFINE_integer("photos", 4, "Val photos shown, one per row.")
flags.DEFINE_integer("points", 3, "Points per photo.")
flags.DEFINE_integer("size", 256, "Side of the photos shown.")
FLAGS = flags.FLAGS


def with_rings(image: np.ndarray, points: np.ndarray) -> np.ndarray:
  """`image` with each point drawn as a ring of its colour, outlined in white and black: the
  colour it causes stays visible inside."""
  picture = Image.fromarray(image)
  draw = ImageDraw.Draw(picture)
  radius = max(4, image.shape[0] // 32)
  for x, y, _, a, b in points:
    lab = np.array([60.0, a, b], np.float32)  # The point's colour, shown at a mid lightness.
    rgb = tuple(int(v) for v in color.lab_to_uint8_rgb(lab, np))
    box = (x - radius, y - radius, x + radius, y + radius)
    draw.ellipse((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), outline=(0, 0, 0), width=1)
    draw.ellipse((box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1), outline=(255, 255, 255), width=1)
    draw.ellipse(box, outline=rgb, width=3)
  return np.asarray(picture)


def main(argv):
  del argv
  if os.path.exists(FLAGS.output):
    raise SystemExit(f"{FLAGS.output} exists: remove it or pass another --output.")
  weights = FLAGS.weights or bundle.BUNDLED
  config = bundle.bundle_config(weights)
  names, real = quality.read_photos(os.path.join(FLAGS.data_dir, "val"), FLAGS.size)
  chosen = quality.showable(names, quality.photo_credits(FLAGS.data_dir))[: FLAGS.photos]
  points = quality.val_hint_points(real, [FLAGS.points])[FLAGS.points]  # Seeded by the place in val/.
  real, points = real[chosen], [points[i] for i in chosen]
  gray = inference.gray_version(real)
  automatic, _ = quality.colorize_gray(config, weights, gray)
  hinted, _ = quality.colorize_gray(config, weights, gray, points)
  ringed = np.stack([with_rings(image, p) for image, p in zip(hinted, points, strict=True)])
  grid = inference.image_grid([gray, automatic, ringed, real], groups_per_row=1)
  os.makedirs(os.path.dirname(FLAGS.output) or ".", exist_ok=True)
  Image.fromarray(grid).save(FLAGS.output, quality=90)
  print(f"gray | automatic | {FLAGS.points} points | real, photos {[names[i] for i in chosen]} -> {FLAGS.output}")
  sys.stdout.flush()


if __name__ == "__main__":
  quality.define_flags()
  app.run(main)
