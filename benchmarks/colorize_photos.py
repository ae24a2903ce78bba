"""Times the colorize mode: one 1024x768 JPEG cold and warm, a folder of 50 photos, a 6000x4000 photo.

    python -m benchmarks.colorize_photos                 # places365 networks (256 px), as users run them
    python -m benchmarks.colorize_photos --quick         # demo networks, 10 photos, no 6000x4000 (CI smoke run)
    python -m benchmarks.colorize_photos --workdir=runs/p365   # a trained run instead of fresh weights
    python -m benchmarks.colorize_photos --weights=weights     # the bundled model (what users get by default)

Without --workdir or --weights the generator has freshly initialised weights (speed does not
depend on them), saved as a checkpoint of a throwaway run so that the real loading path is timed
too. Prints JSON lines, then a table. Peak memory of the 6000x4000 photo is measured in a separate
process, as that process's own high-water mark.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app
from absl import flags

from benchmarks import common
from colorize.colouring import app as hint_app
from colorize.colouring import predict
from colorize.data import photos
from colorize.networks import inference
from colorize.networks import models
from colorize.runs import bundle
from colorize.runs import checkpoint
from colorize.runs import run_setup
from colorize.training import compiled
from colorize.training import steps
from configs import demo
from configs import places365

flags.DEFINE_string("workdir", None, "A trained run; default: fresh weights of --config_name.")
flags.DEFINE_string("weights", None, "An exported generator folder (e.g. the bundled weights/) instead of a run.")
flags.DEFINE_enum("config_name", "places365", ["places365", "demo"], "Networks when --workdir is not given.")
flags.DEFINE_bool("quick", False, "Demo networks, 10 photos, no 6000x4000 photo.")
flags.DEFINE_integer("folder_photos", 50, "Photos in the throughput folder.")
FLAGS = flags.FLAGS
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fresh_run(config, workdir: str) -> str:
  """A run folder whose only checkpoint holds freshly initialised networks."""
  state, _ = compiled.setup(config, steps.make_mesh())
  manager = checkpoint.create_manager(workdir, 1)
  checkpoint.save(manager, state, {"epoch": 0, "index": 0})
  manager.wait_until_finished()
  manager.close()
  with open(os.path.join(workdir, "config.json"), "w") as f:
    json.dump({"config": config.to_dict()}, f)  # The layout main.py reads with --workdir alone.
  return workdir


def timed_colorize(
  config, generator, variables, sources: list, output_dir: str, hint_files: dict | None = None
) -> float:
  jobs = [(source, os.path.join(output_dir, os.path.basename(source) + ".png")) for source in sources]
  start = time.perf_counter()
  summary = predict.colorize_photos(
    generator,
    variables,
    jobs,
    size=config.image_size,
    multiple=models.input_multiple(config.model),
    batch_size=8,
    max_pixels=photos.MAX_PIXELS,
    image_format="png",
    hint_files=hint_files,
  )
  assert summary.done == len(jobs), summary
  return time.perf_counter() - start


def generator_alone_photos_per_s(generator, variables, size: int, batch_size: int = 8) -> float:
  """The folder rate's ceiling: the generator alone on batches of square gray photos at network size."""
  apply = jax.jit(lambda v, gray: generator.apply(v, gray, train=False))
  gray = jnp.zeros((batch_size, size, size, 1), jnp.float32)
  return batch_size / min(common.call_seconds(apply, variables, gray, repeats=3))


def ten_points(width: int, height: int) -> list:
  """Ten colour points spread over a photo, as a user might click them."""
  rng = np.random.default_rng(0)
  return [
    {"x": int(x), "y": int(y), "rgb": [int(v) for v in rng.integers(0, 256, 3)]}
    for x, y in zip(rng.integers(0, width, 10), rng.integers(0, height, 10), strict=True)
  ]


def app_preview_seconds(config, generator, variables, folder: str, points: int) -> float:
  """The app's preview of a 1200x800 photo (768 px wide) after a click, warm, server side: best of
  3 clicks with `points` colour points (0: the automatic colours)."""
  colorizer = hint_app.Colorizer(generator, variables, config.image_size, models.input_multiple(config.model))
  with open(common.write_jpeg(os.path.join(folder, "app.jpg"), common.photo_like(800, 1200)), "rb") as f:
    photo = colorizer.open_photo(f.read(), "app.jpg")
  clicks = ten_points(1200, 800)[:points]
  colorizer.colorize(photo["id"], clicks, full=False)  # Compiles.
  return min(colorizer.colorize(photo["id"], clicks, full=False)[1] for _ in range(3))


# Runs main.py in the child and prints that process's own peak RSS. The child's ru_maxrss would
# not do: a child started by vfork + exec from this (large) process inherits its high-water mark.
_MAIN_REPORTING_PEAK_RSS = """
import atexit, re, runpy, sys
def report():
  status = open("/proc/self/status").read()
  print("PEAK_RSS_KB", re.search(r"VmHWM:\\s+(\\d+)", status).group(1), file=sys.stderr)
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def peak_rss_of_big_photo(source_flag: str, folder: str) -> float:
  """Peak RSS (MB) of `main.py --mode=colorize` on one 6000x4000 JPEG, in its own process."""
  big = common.write_jpeg(os.path.join(folder, "big.jpg"), common.photo_like(4000, 6000))
  command = [sys.executable, "-c", _MAIN_REPORTING_PEAK_RSS, os.path.join(REPO, "main.py"), source_flag]
  command += ["--mode=colorize", f"--input={big}", f"--output={os.path.join(folder, 'big_out')}"]
  child = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
  if child.returncode:
    raise RuntimeError(child.stderr[-2000:])
  return int(child.stderr.rsplit("PEAK_RSS_KB", 1)[1].split()[0]) / 1024


def main(argv):
  del argv
  folder = tempfile.mkdtemp(prefix="colorize-bench-")
  if FLAGS.weights:
    workdir, networks = FLAGS.weights, f"bundle {FLAGS.weights}"
    config = bundle.bundle_config(workdir)
  elif FLAGS.workdir:
    workdir, networks = FLAGS.workdir, f"run {FLAGS.workdir}"
    config = run_setup.saved_config(workdir)
  else:
    networks = "demo" if FLAGS.quick else FLAGS.config_name
    config = {"demo": demo, "places365": places365}[networks].get_config()
    workdir = fresh_run(config, os.path.join(folder, "run"))
  source_flag = f"--weights={workdir}" if FLAGS.weights else f"--workdir={workdir}"
  generator, variables, _ = inference.load_generator(config, workdir)
  photo = common.write_jpeg(os.path.join(folder, "one.jpg"), common.photo_like(768, 1024))
  cold = timed_colorize(config, generator, variables, [photo], os.path.join(folder, "cold"))
  warm = min(timed_colorize(config, generator, variables, [photo], os.path.join(folder, f"warm{i}")) for i in range(3))
  with open(os.path.join(folder, "one.json"), "w") as f:
    json.dump(ten_points(1024, 768), f)
  hinted = {photo: os.path.join(folder, "one.json")}
  timed_colorize(config, generator, variables, [photo], os.path.join(folder, "hinted_warmup"), hinted)
  warm_points = min(
    timed_colorize(config, generator, variables, [photo], os.path.join(folder, f"hinted{i}"), hinted) for i in range(3)
  )
  count = 10 if FLAGS.quick else FLAGS.folder_photos
  photos = common.photo_folder(os.path.join(folder, "photos"), count)
  sources = sorted(os.path.join(photos, name) for name in os.listdir(photos))
  timed_colorize(config, generator, variables, sources[:8], os.path.join(folder, "folder_warmup"))  # Compile.
  folder_s = timed_colorize(config, generator, variables, sources, os.path.join(folder, "folder"))
  row = {
    "benchmark": "colorize",
    "networks": networks,
    "network_size": config.image_size,
    "photo_1024x768_cold_s": round(cold, 3),
    "photo_1024x768_warm_s": round(warm, 3),
    "photo_1024x768_10_points_warm_s": round(warm_points, 3),
    "folder_photos": count,
    "folder_photos_per_s": round(count / folder_s, 2),
    "generator_alone_photos_per_s": round(generator_alone_photos_per_s(generator, variables, config.image_size), 2),
    "app_preview_1200x800_s": round(app_preview_seconds(config, generator, variables, folder, 0), 3),
    "app_preview_1200x800_10_points_s": round(app_preview_seconds(config, generator, variables, folder, 10), 3),
    "peak_rss_mb_6000x4000": None if FLAGS.quick else round(peak_rss_of_big_photo(source_flag, folder)),
    "cpu": common.cpu_model(),
  }
  common.emit(row)
  common.print_table([row], list(row))


if __name__ == "__main__":
  app.run(main)
