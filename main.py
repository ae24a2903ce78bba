"""Trains, evaluates or applies the colorization GAN.

python main.py --config=configs/demo.py                          # train (resumes if possible)
python main.py --config=configs/places365.py --workdir=runs/p365
"""

import logging as python_logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
  "config", None, "Config file (configs/*.py); optional if --workdir holds a run.", lock_config=True
)
flags.DEFINE_string("workdir", None, "Run folder; default runs/<config file name>.")
flags.DEFINE_enum(
  "mode",
  "train",
  ["train", "evaluate", "colorize", "turing"],
  "train: train or resume; evaluate: metrics + report; colorize: colour photos; turing: real-or-fake web page.",
)
flags.DEFINE_integer("eval_images", -1, "evaluate: images of the eval split to use; -1 = all.")
flags.DEFINE_string("input", None, "colorize: a photo, a folder or a glob.")
flags.DEFINE_string("output", None, "colorize: the folder for the coloured photos; turing: for index.html.")
flags.DEFINE_bool("recursive", False, "colorize: also photos in subfolders of --input.")
flags.DEFINE_bool("overwrite", False, "colorize, turing: replace outputs that exist (never the inputs).")
flags.DEFINE_enum("format", "png", ["png", "jpeg"], "colorize: output format.")
flags.DEFINE_integer("colorize_size", 0, "colorize: short side the generator sees; 0 = config.image_size.")
flags.DEFINE_integer("colorize_batch", 8, "colorize: photos per generator call.")
flags.DEFINE_integer("turing_pairs", 20, "turing: real/colorized pairs of validation images.")
flags.DEFINE_float("turing_seconds", 0.0, "turing: time limit per pair in seconds; 0 = none.")
flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0 (SLURM etc. need nothing).")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes, with --coordinator_address.")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's rank, with --coordinator_address.")
flags.DEFINE_integer("max_pixels", 200_000_000, "colorize: larger photos are refused as too large.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from colorize import run_setup  # Imported after flag parsing: it imports jax and tensorflow.

  run_setup.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
  config_path = config_flags.get_config_filename(FLAGS["config"]) if FLAGS.config else None
  try:
    config, workdir = run_setup.resolve(FLAGS.config, config_path, FLAGS.workdir)
  except (ValueError, PermissionError) as error:  # No config, no run, or an unwritable workdir.
    raise app.UsageError(str(error), exitcode=2) from None
  if FLAGS.mode == "train":
    from colorize import train

    train.train_and_evaluate(config, workdir)
  elif FLAGS.mode == "evaluate":
    from colorize import evaluate

    evaluate.evaluate_run(config, workdir, num_images=FLAGS.eval_images)
  elif FLAGS.mode == "colorize":
    from colorize import predict

    try:
      return predict.run(
        config,
        workdir,
        input_pattern=FLAGS.input,
        output_dir=FLAGS.output,
        recursive=FLAGS.recursive,
        overwrite=FLAGS.overwrite,
        image_format=FLAGS.format,
        size=FLAGS.colorize_size,
        batch_size=FLAGS.colorize_batch,
        max_pixels=FLAGS.max_pixels,
      )
    except predict.UsageError as error:
      raise app.UsageError(str(error), exitcode=2) from None
  elif FLAGS.mode == "turing":
    from colorize import predict
    from colorize import turing

    if not FLAGS.output:
      raise app.UsageError("--mode=turing needs --output=DIR for the page.", exitcode=2)
    try:
      turing.write_page(config, workdir, FLAGS.output, FLAGS.turing_pairs, FLAGS.turing_seconds, FLAGS.overwrite)
    except predict.UsageError as error:
      raise app.UsageError(str(error), exitcode=2) from None


_OURS = (os.path.join(os.path.dirname(os.path.abspath(__file__)), "colorize"), os.path.abspath(__file__))


def _only_our_info(record) -> bool:
  """Keeps our INFO lines and every library's warnings; drops Orbax's and JAX's INFO chatter."""
  return record.levelno >= python_logging.WARNING or record.pathname.startswith(_OURS)


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().python_handler.addFilter(_only_our_info)
  app.run(main)
