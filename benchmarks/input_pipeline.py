"""Times the real training input: photo files -> decoded, cropped, flipped uint8 batches on the device.

    python -m benchmarks.input_pipeline                     # 64 and 256 px, batch 16, ../shared/photos/train
    python -m benchmarks.input_pipeline --quick             # 64 px only, fewer batches (CI smoke run)
    python -m benchmarks.input_pipeline --data_dir=PHOTOS --size=128 --workers=0 --workers=2

The folder source of `colorize/data/sources.py` (the same as `--config.dataset=folder`), through
Grain as in training, each batch made a sharded `jax.Array` with `steps.global_batch`, as the
train loop does; once per `--workers` setting (0: decoding threads in this process; N: N worker
processes). Without ../shared the photos are scikit-image's bundled ones, resized and saved as JPEG.
"""

import os
import statistics
import tempfile
import time

import jax
from absl import app
from absl import flags

from benchmarks import common
from colorize.data import input_pipeline
from colorize.data import usable
from colorize.training import steps
from configs import default

flags.DEFINE_string("data_dir", None, "A folder of photos; default ../shared/photos/train or generated ones.")
flags.DEFINE_multi_integer("size", [64, 256], "Training crop sizes.")
flags.DEFINE_multi_integer("workers", [0, 2, 4], "Decoding worker processes (0: threads); one row each.")
flags.DEFINE_integer("batch", 16, "Batch size.")
flags.DEFINE_integer("batches", 60, "Timed batches per setting.")
flags.DEFINE_bool("quick", False, "64 px only, threads only, 15 timed batches.")
FLAGS = flags.FLAGS


def time_pipeline(data_dir: str, size: int, batch_size: int, batches: int, workers: int) -> dict:
  config = default.get_config()
  config.update(dataset="folder", data_dir=data_dir, image_size=size, batch_size=batch_size, min_crop_fraction=0.5)
  config.folder_val_fraction = 0.0
  mesh = steps.make_mesh()
  photos = usable.training_photos(config)  # Counted once, before the clock starts.
  started = time.perf_counter()
  iterator = input_pipeline.train_batches(config, workers=workers, photos=photos)
  for _ in range(5):  # Start the workers, fill the buffers.
    jax.block_until_ready(steps.global_batch(mesh, next(iterator)["image"]))
  warmup_s = time.perf_counter() - started
  times = []
  for _ in range(batches):
    start = time.perf_counter()
    jax.block_until_ready(steps.global_batch(mesh, next(iterator)["image"]))
    times.append(time.perf_counter() - start)
  return {
    "benchmark": "input_pipeline",
    "size": size,
    "batch": batch_size,
    "workers": workers,
    "cpu_cores": os.cpu_count(),
    "cpu": common.cpu_model(),
    "images_per_s": round(batch_size * len(times) / sum(times), 1),
    "median_batch_ms": round(1000 * statistics.median(times), 2),
    "warmup_s": round(warmup_s, 1),
    "peak_rss_mb": round(common.peak_rss_mb()),
  }


def main(argv):
  del argv
  data_dir = FLAGS.data_dir
  if data_dir is None:
    data_dir = common.SHARED_PHOTOS if os.path.isdir(common.SHARED_PHOTOS) else None
  if data_dir is None:
    data_dir = common.photo_folder(tempfile.mkdtemp(prefix="colorize-photos-"), 48)
  sizes, worker_counts, batches = ([64], [0], 15) if FLAGS.quick else (FLAGS.size, FLAGS.workers, FLAGS.batches)
  rows = [
    common.emit({**time_pipeline(data_dir, size, FLAGS.batch, batches, workers), "data_dir": data_dir})
    for size in sizes
    for workers in worker_counts
  ]
  common.print_table(rows, ["size", "batch", "workers", "cpu_cores", "images_per_s", "median_batch_ms", "warmup_s"])


if __name__ == "__main__":
  app.run(main)
