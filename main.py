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
flags.DEFINE_enum("mode", "train", ["train"], "What to do with the run.")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
  from colorize import run_setup  # Imported after flag parsing: it imports jax and tensorflow.

  config_path = config_flags.get_config_filename(FLAGS["config"]) if FLAGS.config else None
  config, workdir = run_setup.resolve(FLAGS.config, config_path, FLAGS.workdir)
  if FLAGS.mode == "train":
    from colorize import train

    train.train_and_evaluate(config, workdir)


_OURS = (os.path.join(os.path.dirname(os.path.abspath(__file__)), "colorize"), os.path.abspath(__file__))


def _only_our_info(record) -> bool:
  """Keeps our INFO lines and every library's warnings; drops Orbax's and JAX's INFO chatter."""
  return record.levelno >= python_logging.WARNING or record.pathname.startswith(_OURS)


if __name__ == "__main__":
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().python_handler.addFilter(_only_our_info)
  app.run(main)
