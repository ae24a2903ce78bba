"""Times the real tf.data training input: JPEG files -> decoded, cropped, flipped uint8 batches on the device.

    python -m benchmarks.input_pipeline                     # 64 and 256 px, batch 16, ../shared/photos/train
    python -m benchmarks.input_pipeline --quick             # 64 px only, fewer batches (CI smoke run)
    python -m benchmarks.input_pipeline --data_dir=PHOTOS --size=128

The folder source of `colorize/input_pipeline.py` (the same as `--config.dataset=folder`), looped
over epochs as in training, each batch made a sharded `jax.Array` with `steps.global_batch`, as the
train loop does. Without ../shared the photos are scikit-image's bundled ones, resized and saved as JPEG.
"""

import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from benchmarks import common  # noqa: E402
from colorize import input_pipeline  # noqa: E402
from colorize import steps  # noqa: E402
from configs import default  # noqa: E402

flags.DEFINE_string("data_dir", None, "A folder of photos; default ../shared/photos/train or generated ones.")
flags.DEFINE_multi_integer("size", [64, 256], "Training crop sizes.")
flags.DEFINE_integer("batch", 16, "Batch size.")
flags.DEFINE_integer("batches", 60, "Timed batches per size.")
flags.DEFINE_bool("quick", False, "64 px only, 15 timed batches.")
FLAGS = flags.FLAGS


def time_pipeline(data_dir: str, size: int, batch_size: int, batches: int) -> dict:
  config = default.get_config()
  config.update(dataset="folder", data_dir=data_dir, image_size=size, batch_size=batch_size, min_crop_fraction=0.5)
  mesh = steps.make_mesh()
  gray_skipped = tf.Variable(0, dtype=tf.int64, trainable=False)
  dataset = input_pipeline.train_dataset(config, batch_size, input_pipeline.DataPosition(), gray_skipped)
  iterator = dataset.as_numpy_iterator()
  for _ in range(5):  # Fill the buffers.
    jax.block_until_ready(steps.global_batch(mesh, next(iterator)["image"]))
  times = []
  for _ in range(batches):
    start = time.perf_counter()
    jax.block_until_ready(steps.global_batch(mesh, next(iterator)["image"]))
    times.append(time.perf_counter() - start)
  return {
    "benchmark": "input_pipeline",
    "size": size,
    "batch": batch_size,
    "cpu_cores": os.cpu_count(),
    "images_per_s": round(batch_size * len(times) / sum(times), 1),
    "median_batch_ms": round(1000 * statistics.median(times), 2),
    "peak_rss_mb": round(common.peak_rss_mb()),
  }


def main(argv):
  del argv
  data_dir = FLAGS.data_dir
  if data_dir is None:
    data_dir = common.SHARED_PHOTOS if os.path.isdir(common.SHARED_PHOTOS) else None
  if data_dir is None:
    data_dir = common.photo_folder(tempfile.mkdtemp(prefix="colorize-photos-"), 48)
  sizes, batches = ([64], 15) if FLAGS.quick else (FLAGS.size, FLAGS.batches)
  rows = [common.emit({**time_pipeline(data_dir, size, FLAGS.batch, batches), "data_dir": data_dir}) for size in sizes]
  common.print_table(rows, ["size", "batch", "cpu_cores", "images_per_s", "median_batch_ms", "peak_rss_mb"])


if __name__ == "__main__":
  app.run(main)
