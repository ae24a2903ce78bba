"""Trains, evaluates and applies the colorization GAN of Nazeri et al. (2018).

One example per mode:
  python main.py --config=configs/demo.py                           # train, or resume the run
  python main.py --workdir=runs/demo --mode=evaluate                # metrics.json, report.md, grid.png
  python main.py --workdir=runs/demo --mode=colorize --input=PHOTOS --output=OUT
  python main.py --mode=colorize --input=PHOTOS --output=OUT          # the bundled model (weights/)
  python main.py --mode=colorize --input=FILM.mp4 --output=OUT        # videos too: audio and timing kept
  python main.py --workdir=runs/demo --mode=turing --output=PAGE    # real-or-fake web page
  python main.py --mode=compare --runs=runs/a,runs/b --output=CMP   # runs side by side ('runs/*': all)
  python main.py --mode=export --workdir=runs/demo --output=BUNDLE   # the generator as a folder for --weights
  python main.py --mode=export --output=ONNX --format=onnx            # the bundled model for onnxruntime
  python main.py --mode=app                                         # a web page to colour photos with hints

Any config field can be set on the command line: --config.FIELD=VALUE, e.g.
  python main.py --config=configs/places365.py --config.batch_size=32 --config.model.depth=4
(configs/default.py lists every field). --workdir defaults to runs/<config name>; with a run
that exists, --config may be left out (its saved config.json is used).
"""

import logging as python_logging
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from colorize import REPO
from colorize.data import photos
from colorize.runs import command_line

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file(
  "config", None, "Config file (configs/*.py); optional if --workdir holds a run.", lock_config=True
)
flags.DEFINE_string("workdir", None, "Run folder; default runs/<config file name>.")
flags.DEFINE_string(
  "weights",
  None,
  "colorize, evaluate, turing, app, export: an exported generator folder (--mode=export) instead of a run; "
  "without --workdir and --config these modes use the bundled weights/.",
)
flags.DEFINE_enum(
  "mode",
  "train",
  ["train", "evaluate", "colorize", "turing", "compare", "export", "app"],
  "train: train or resume; evaluate: metrics + report; colorize: colour photos; turing: real-or-fake web page; "
  "compare: runs side by side; export: a generator as a folder for --weights (--format=bundle) or a file for "
  "onnxruntime (onnx) or jax.export (stablehlo); app: a web page to colour photos with colour hints.",
)
flags.DEFINE_integer("eval_images", -1, "evaluate, compare: images of the eval split to use; -1 = all.")
flags.DEFINE_string("input", None, "colorize: a photo or video, a folder or a glob.")
flags.DEFINE_string(
  "output",
  None,
  "colorize: the folder for the coloured photos; turing: for index.html; evaluate: for the report; compare; "
  "export: the new generator folder.",
)
flags.DEFINE_string("facts", None, "export: a JSON file of facts for the manifest (training data, scores).")
flags.DEFINE_list("runs", [], "compare: the run folders, comma-separated, or globs ('runs/*': every run in runs/).")
flags.DEFINE_integer(
  "eval_size", 0, "compare: the side (px) every run is evaluated at; 0 = the runs' own (they must agree)."
)
flags.DEFINE_integer("grid_images", 8, "compare: validation images in the grid.")
flags.DEFINE_bool("recursive", False, "colorize: also photos in subfolders of --input.")
flags.DEFINE_bool("overwrite", False, "colorize, turing, compare: replace outputs that exist (never the inputs).")
flags.DEFINE_string(
  "format", None, "colorize: png (default) or jpeg, for photos; export: bundle (default), onnx or stablehlo."
)
flags.DEFINE_integer("colorize_size", 0, "colorize: short side the generator sees; 0 = config.image_size.")
flags.DEFINE_string(
  "hints",
  None,
  "colorize: the user's colour points, a JSON file for one photo or a folder of <photo name>.json files, each "
  'a list of {"x": 120, "y": 45, "rgb": [200, 30, 40]} (optional "size" in pixels); docs/hints.md.',
)
flags.DEFINE_integer("colorize_batch", 8, "colorize: photos (or video frames) per generator call.")
flags.DEFINE_float(
  "steadiness",
  None,
  "colorize, videos: how much of the previous frame's colour a pixel keeps where its lightness stayed, in [0, 1); "
  "0 colours every frame on its own; default 0.9 (docs/video.md).",
)
flags.DEFINE_float(
  "colorize_temperature",
  None,
  "colorize, evaluate, turing: how bold the colours are, for a model that predicts each pixel's colour as "
  "a distribution (a bins head): 1 takes the distribution's mean (safe, muted), lower values bolder and more often "
  "wrong colours (the annealed-mean temperature; Zhang et al.: 0.38); default the model's own.",
)
flags.DEFINE_float(
  "vividness",
  None,
  "colorize, evaluate, turing, app, export: how bold the colours are, in [0, 1]: 0 the model's most faithful colour, "
  "1 its boldest (docs/quality.md); default the model's own (config model.vividness; 0 for the bundled model).",
)
flags.DEFINE_integer("port", 8000, "app: the port of the local web page.")
flags.DEFINE_string("host", "127.0.0.1", "app: the address to listen on (0.0.0.0: every network, unprotected).")
flags.DEFINE_integer("turing_pairs", 20, "turing: real/colorized pairs of validation images.")
flags.DEFINE_float("turing_seconds", 0.0, "turing: time limit per pair in seconds; 0 = none.")
flags.DEFINE_string("coordinator_address", None, "Multi-host: host:port of process 0 (SLURM etc. need nothing).")
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes, with --coordinator_address.")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's rank, with --coordinator_address.")
flags.DEFINE_integer(
  "max_pixels",
  None,
  "colorize, app: photos with more pixels are refused as too large (checked before decoding); "
  f"default {photos.MAX_PIXELS:,} for colorize and {photos.APP_MAX_PIXELS:,} for the app (it holds each open photo "
  "in memory).",
)

# ----------------------------------------------------------------------------- modes


def resolved_run():
  """(config, workdir) from --config and --workdir (see run_setup.resolve), the config checked."""
  from colorize.runs import run_setup
  from colorize.training import config_checks

  config_path = config_flags.get_config_filename(FLAGS["config"]) if FLAGS.config else None
  if FLAGS.mode in BUNDLE_MODES and (FLAGS.weights or not (FLAGS.workdir or FLAGS.config)):
    from colorize.runs import bundle

    if FLAGS.workdir:
      raise run_setup.UsageError("pass --workdir=RUN or --weights=DIR, not both.")
    workdir = FLAGS.weights or bundle.BUNDLED  # --config, if given, says which data to evaluate on.
    config = bundle.bundle_config(workdir, FLAGS.config)
  else:
    config, workdir = run_setup.resolve(FLAGS.config, config_path, FLAGS.workdir, create=FLAGS.mode == "train")
  try:
    with_colour_flags(config)
    config_checks.check_model_config(config)  # Every mode; train and evaluate also check the devices.
  except ValueError as error:
    raise run_setup.UsageError(str(error)) from None
  return config, workdir


def with_colour_flags(config) -> None:
  """--colorize_temperature and --vividness into the config's model, each checked under its flag's name."""
  from colorize.networks import colour_bins
  from colorize.networks import heads
  from colorize.runs import run_setup

  if FLAGS.colorize_temperature is not None:
    run_setup.set_temperature(config, FLAGS.colorize_temperature)  # Refused first for a model without bins.
    colour_bins.check_temperature(FLAGS.colorize_temperature, "--colorize_temperature")
  if FLAGS.vividness is not None:
    heads.check_vividness(FLAGS.vividness, "--vividness")
    with config.unlocked():
      config.model.vividness = FLAGS.vividness


def train():
  from colorize.runs import run_record
  from colorize.training import train

  config_file = config_flags.get_config_filename(FLAGS["config"]) if FLAGS.config else None
  if config_file and os.path.abspath(config_file) == command_line.RUN_CONFIG:
    config_file = None  # The run's own config, the base of the overrides.
  train.train_and_evaluate(*resolved_run(), invocation=run_record.invocation(config_file))


def evaluate():
  from colorize.measuring import evaluate

  config, workdir = resolved_run()
  output = FLAGS.output
  chosen = {"T": FLAGS.colorize_temperature, "V": FLAGS.vividness}
  if not output and (settings := [f"{key}{value:g}" for key, value in chosen.items() if value is not None]):
    output = os.path.join(workdir, "eval-" + "-".join(settings))  # Beside the run's own eval/, not over it.
  evaluate.evaluate_run(config, workdir, num_images=FLAGS.eval_images, output_dir=output)


def colorize():
  from colorize.colouring import predict

  return predict.run(
    *resolved_run(),
    input_pattern=FLAGS.input,
    output_dir=FLAGS.output,
    recursive=FLAGS.recursive,
    overwrite=FLAGS.overwrite,
    image_format=FLAGS.format or "png",
    size=FLAGS.colorize_size,
    batch_size=FLAGS.colorize_batch,
    max_pixels=FLAGS.max_pixels or photos.MAX_PIXELS,
    hints=FLAGS.hints or "",
    steadiness=FLAGS.steadiness,
  )


def turing():
  from colorize.measuring import turing

  turing.write_page(*resolved_run(), FLAGS.output, FLAGS.turing_pairs, FLAGS.turing_seconds, FLAGS.overwrite)


def compare():
  from colorize.measuring import compare

  compare.compare(FLAGS.runs, FLAGS.output, FLAGS.grid_images, FLAGS.eval_images, FLAGS.overwrite, FLAGS.eval_size)


def export():
  from colorize.exporting import export
  from colorize.runs import run_setup

  file_format = FLAGS.format or "bundle"
  if file_format not in export.FORMATS:
    choices = ", ".join(export.FORMATS)
    raise run_setup.UsageError(f"--format={file_format} is not an export format: use one of {choices}.")
  if file_format == "bundle":
    for flag in ("colorize_temperature", "vividness"):
      if FLAGS[flag].present:
        raise run_setup.UsageError(f"--{flag} is for --format=onnx or stablehlo (a bundle keeps the run's own).")
    if FLAGS.weights:
      raise run_setup.UsageError(
        f"--weights={FLAGS.weights} is a bundle already: copy the folder, or pick --format=onnx."
      )
    export.export_bundle(FLAGS.workdir, FLAGS.output, FLAGS.facts)
    return
  if FLAGS.facts:
    raise run_setup.UsageError("--facts is for --format=bundle (a bundle's manifest).")
  export.export_portable(*resolved_run(), FLAGS.output, file_format)


def web_app():
  from colorize.colouring import app as hint_app

  try:
    hint_app.serve(*resolved_run(), FLAGS.host, FLAGS.port, FLAGS.max_pixels or photos.APP_MAX_PIXELS)
  except hint_app.AppError as error:
    from colorize.runs import run_setup

    raise run_setup.UsageError(str(error)) from None


MODES = {
  "train": train,
  "evaluate": evaluate,
  "colorize": colorize,
  "turing": turing,
  "compare": compare,
  "export": export,
  "app": web_app,
}
BUNDLE_MODES = ("colorize", "evaluate", "turing", "app", "export")  # Modes that use a generator: a run or a bundle.


def main(argv):
  from colorize.runs import run_setup  # Imported when a mode runs: it reads configs/.

  try:
    if len(argv) > 1:
      raise run_setup.UsageError(f"unexpected arguments: {' '.join(argv[1:])} (flags take the form --name=value).")
    for flag in ("weights", "colorize_temperature", "vividness"):
      if FLAGS[flag].present and FLAGS.mode not in BUNDLE_MODES:
        raise run_setup.UsageError(
          f"--{flag} is for the {', '.join(BUNDLE_MODES[:-1])} and {BUNDLE_MODES[-1]} modes, not --mode={FLAGS.mode}."
        )
    for flag, mode in (
      ("hints", "colorize"),
      ("port", "app"),
      ("host", "app"),
      ("facts", "export"),
      ("steadiness", "colorize"),
      ("eval_size", "compare"),
    ):
      if FLAGS[flag].present and FLAGS.mode != mode:
        raise run_setup.UsageError(f"--{flag} is for the {mode} mode, not --mode={FLAGS.mode}.")
    if FLAGS["format"].present and FLAGS.mode not in ("colorize", "export"):
      raise run_setup.UsageError(f"--format is for the colorize and export modes, not --mode={FLAGS.mode}.")
    if FLAGS["max_pixels"].present and FLAGS.mode not in ("colorize", "app"):
      raise run_setup.UsageError(f"--max_pixels is for the colorize and app modes, not --mode={FLAGS.mode}.")
    if FLAGS.max_pixels is not None:
      try:
        photos.check_max_pixels(FLAGS.max_pixels)
      except ValueError as error:
        raise run_setup.UsageError(str(error)) from None
    run_setup.initialize_distributed(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    return MODES[FLAGS.mode]()
  except run_setup.UsageError as error:
    command_line.exit_with_usage_error(str(error))
  except run_setup.DatasetUnavailableError as error:
    command_line.exit_with_error(str(error))


_OURS = os.path.dirname(os.path.abspath(__file__))  # The package: our own log lines come from its files.


def _only_our_info(record) -> bool:
  """Keeps our INFO lines and every library's warnings; drops Orbax's and JAX's INFO chatter."""
  return record.levelno >= python_logging.WARNING or record.pathname.startswith(_OURS)


def run() -> None:
  """The program: `python main.py ...`, or `colorize ...` once the project is installed (`pip install -e .`)."""
  if REPO not in sys.path:  # Configs import their bases (`from configs import photos`) from the checkout.
    sys.path.insert(0, REPO)
  if not getattr(sys.modules["__main__"], "__doc__", None):  # --help shows the examples whatever the launcher.
    sys.modules["__main__"].__doc__ = __doc__
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().python_handler.addFilter(_only_our_info)
  app.run(main, flags_parser=command_line.parse_command_line)
