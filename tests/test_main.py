"""The command line as a user meets it: each mistake is one line and one hint, exit status 2."""

import json
import os
import subprocess
import sys

import pytest

from colorize.colouring import predict
from tests.conftest import free_port
from tests.conftest import run_main
from tests.conftest import subprocess_env

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HINT = "Run `python main.py --help` for the modes, their flags and an example of each."


@pytest.mark.parametrize(
  "args,message",
  [
    (
      ["--config=configs/demo.py", "--config.num_train_step=10"],
      "--config.num_train_step: the config has no field num_train_step; did you mean num_train_steps?",
    ),
    (
      ["--config=configs/demo.py", "--config.model.dept=3"],
      "--config.model.dept: the config has no field model.dept; did you mean model.depth?",
    ),
    (["--config=configs/dmeo.py"], "--config=configs/dmeo.py does not exist: did you mean configs/demo.py?"),
    (["--config=configs/demo.py", "--wokdir=x"], "Unknown command line flag 'wokdir'. Did you mean: workdir ?"),
    (["--config=configs/demo.py", "stray"], "unexpected arguments: stray (flags take the form --name=value)."),
  ],
  ids=["field", "nested-field", "config-file", "flag", "argument"],
)
def test_flag_mistakes_are_one_line_and_one_hint(args, message):
  out = run_main(*args)
  assert out.returncode == 2
  assert out.stderr.splitlines() == [f"main.py: error: {message}", HINT]


@pytest.mark.parametrize(
  "args,message",
  [
    ([], "--config is missing and --workdir={tmp} holds no run (no config.json)"),
    (["--mode=colorize", "--config=configs/demo.py"], "--mode=colorize needs --input=PATH"),
    (["--mode=turing", "--config=configs/demo.py"], "--mode=turing needs --output=DIR"),
    (["--mode=compare", "--runs=runs/a"], "usage: python main.py --mode=compare --runs=RUN_A,RUN_B"),
    (
      ["--config=configs/demo.py", "--config.image_size=50"],
      "config.image_size=50 is not a multiple of 2**model.depth=16",
    ),
    (
      ["--config=configs/demo.py", "--weights=weights"],
      "--weights is for the colorize, evaluate, turing, app and export modes",
    ),
    (["--mode=colorize", "--weights=weights", "--input=x", "--output=y"], "pass --workdir=RUN or --weights=DIR"),
    (
      ["--config=configs/demo.py", "--colorize_temperature=0.5"],
      "--colorize_temperature is for the colorize, evaluate, turing, app and export modes, not --mode=train",
    ),
    (
      ["--mode=colorize", "--config=configs/demo.py", "--colorize_temperature=0.5", "--input=x", "--output=y"],
      "--colorize_temperature needs a generator trained with a bins head",
    ),
  ],
  ids=[
    "no-run",
    "colorize-input",
    "turing-output",
    "compare-runs",
    "bad-setting",
    "weights-train",
    "weights-and-run",
    "temperature-train",
    "temperature-regression",
  ],
)
def test_mode_mistakes_are_one_line_and_one_hint(args, message, tmp_path):
  out = run_main(f"--workdir={tmp_path}", *args)
  assert out.returncode == 2
  error, hint = out.stderr.splitlines()  # Nothing else: no help text, no log or warning lines.
  assert error.startswith(f"main.py: error: {message.format(tmp=tmp_path)}") and hint == HINT


@pytest.mark.parametrize(
  "args",
  [
    ["--config=configs/demo.py", "--wokdir=x"],
    ["--mode=colorize", "--config=configs/demo.py", "--colorize_temperature=0.5", "--input=x", "--output=y"],
  ],
  ids=["flag", "temperature-regression"],
)
def test_a_real_process_says_a_mistake_in_the_same_two_lines(args, tmp_path):
  # The tests above run the program in-process; a process of its own would also show what
  # libraries write as they start (TensorFlow, XLA): nothing, beside a mistake's two lines.
  command = [sys.executable, os.path.join(REPO, "main.py"), f"--workdir={tmp_path}", *args]
  done = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
  in_process = run_main(f"--workdir={tmp_path}", *args)
  assert done.returncode == in_process.returncode == 2
  assert done.stderr.splitlines() == in_process.stderr.splitlines() and len(done.stderr.splitlines()) == 2


def test_help_names_every_mode_and_the_config_overrides_and_succeeds():
  out = run_main("--help")
  assert out.returncode == 0  # absl's own --help exits with status 1.
  modes = ("--mode=evaluate", "--mode=colorize", "--mode=turing", "--mode=compare", "--mode=export", "--mode=app")
  for example in (*modes, "--config.FIELD=VALUE"):
    assert example in out.stdout


def test_a_misspelt_mode_gets_the_closest_one():
  out = run_main("--mode=evalute")
  assert out.returncode == 2
  assert out.stderr.splitlines()[0] == (
    "main.py: error: --mode=evalute is not one of train, evaluate, colorize, turing, compare, export, app: "
    "did you mean --mode=evaluate?"
  )


@pytest.mark.parametrize("exists", [False, True])
def test_evaluating_a_run_that_was_never_trained_is_one_line_and_creates_nothing(tmp_path, exists):
  workdir = tmp_path / "new"
  if exists:
    workdir.mkdir()
  out = run_main("--mode=evaluate", f"--workdir={workdir}", "--config=configs/demo.py")
  assert out.returncode == 2
  error, hint = out.stderr.splitlines()
  expected = f"no checkpoint in {workdir}/checkpoints: train the run first" if exists else "does not exist"
  assert error.startswith("main.py: error: ") and expected in error and hint == HINT
  assert os.listdir(tmp_path) == (["new"] if exists else []) and (not exists or os.listdir(workdir) == [])


@pytest.mark.parametrize(
  "flags,message,status",
  [  # A folder that is not there is a mistake on the command line (2); a dataset not prepared is not (1).
    (["--config=configs/photos.py", "--config.data_dir={tmp}/nowhere"], "config.data_dir='{tmp}/nowhere' is not a", 2),
    (
      ["--config=configs/places365.py", "--config.data_dir={tmp}", "--config.download=False"],
      "dataset 'places365_small' is not prepared in {tmp}",
      1,
    ),
  ],
  ids=["folder", "tfds"],
)
def test_a_dataset_that_is_not_there_is_one_line(tmp_path, flags, message, status):
  out = run_main(f"--workdir={tmp_path / 'run'}", *(flag.format(tmp=tmp_path) for flag in flags))
  assert out.returncode == status
  line, *hint = out.stderr.splitlines()
  assert line.startswith(f"main.py: error: {message.format(tmp=tmp_path)}") and hint == ([HINT] if status == 2 else [])


def test_export_writes_a_bundle_that_colorize_uses_and_never_replaces_one(trained_run, tmp_path):
  bundle_dir = tmp_path / "bundle"
  done = run_main("--mode=export", f"--workdir={trained_run}", f"--output={bundle_dir}")
  assert done.returncode == 0, done.stderr
  assert sorted(os.listdir(bundle_dir)) == ["generator.msgpack", "manifest.json"]
  again = run_main("--mode=export", f"--workdir={trained_run}", f"--output={bundle_dir}")
  assert again.returncode == 2 and "already holds a bundle" in again.stderr


def test_the_colorize_rate_counts_written_photos_only(monkeypatch):
  progress = predict.ProgressLine(total=4)
  monkeypatch.setattr(progress, "start", progress.start - 2.0)  # Two seconds in.
  progress.advance(written=False)
  progress.advance(written=False)
  assert progress.text() == "[2/4]"  # No rate before a photo is written (it was "0.00 img/s").
  progress.advance(written=True)
  assert progress.text().startswith("[3/4] 0.50 img/s, ETA 2 s")


def start_main(workdir, devices: int, *flags: str) -> subprocess.Popen:
  env = subprocess_env(devices)
  command = [sys.executable, os.path.join(REPO, "main.py"), "--config=configs/test.py", f"--workdir={workdir}", *flags]
  return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def logged_losses(workdir) -> dict:
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {(row["step"], k): v for row in rows for k, v in row.items() if k.startswith(("train/", "eval/"))}


@pytest.mark.slow
def test_a_whole_run_on_two_processes_logs_the_losses_of_one_process(tmp_path):
  # Each process reads its own contiguous slice of every global batch: 2 processes x 2 devices
  # train on the batches of 1 process x 4 devices.
  steps = ["--config.num_train_steps=3", "--config.eval_every_steps=3", "--config.checkpoint_every_steps=3"]
  single = start_main(tmp_path / "one", 4, *steps)
  port = free_port()
  cluster = [
    start_main(
      tmp_path / "two", 2, *steps, f"--coordinator_address=127.0.0.1:{port}", "--num_processes=2", f"--process_id={i}"
    )
    for i in range(2)
  ]
  for process in (single, *cluster):
    _, err = process.communicate(timeout=600)
    assert process.returncode == 0, err[-3000:]
  one, two = logged_losses(tmp_path / "one"), logged_losses(tmp_path / "two")
  assert one.keys() == two.keys() and ((3, "eval/l1") in one)
  for key, value in one.items():
    assert two[key] == pytest.approx(value, abs=1e-4), key


NO_TENSORFLOW = """
import importlib.machinery, os, sys

class PathFinderWithoutTensorFlow(importlib.machinery.PathFinder):
  @classmethod
  def find_spec(cls, name, path=None, target=None):  # As if TensorFlow were not installed.
    return None if name.split(".")[0] == "tensorflow" else super().find_spec(name, path, target)

sys.meta_path = [PathFinderWithoutTensorFlow if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
from colorize.colouring import predict
from colorize.measuring import evaluate
from colorize.training import train
from tests.conftest import tiny_config

workdir, photos, out = sys.argv[1:]
config = tiny_config(num_train_steps=2)
train.train_and_evaluate(config, workdir)
evaluate.evaluate_run(config, workdir)
assert predict.run(config, workdir, input_pattern=photos, output_dir=out) == 0
assert os.listdir(out) and "tensorflow" not in sys.modules
"""


@pytest.mark.slow
def test_training_evaluating_and_colorizing_need_no_tensorflow(tmp_path):
  import skimage.data
  from PIL import Image

  (tmp_path / "photos").mkdir()
  Image.fromarray(skimage.data.astronaut()).save(tmp_path / "photos" / "astronaut.jpg")
  command = [
    sys.executable,
    "-c",
    NO_TENSORFLOW,
    str(tmp_path / "run"),
    str(tmp_path / "photos"),
    str(tmp_path / "out"),
  ]
  done = subprocess.run(command, cwd=REPO, env=subprocess_env(), capture_output=True, text=True)
  assert done.returncode == 0, done.stderr[-3000:]


def test_a_misspelt_nested_field_gets_its_sections_closest_name_or_its_fields():
  from colorize.runs import command_line

  assert command_line.nested_field_hint("optim.g_learning_rat") == "did you mean optim.g_learning_rate?"
  assert command_line.nested_field_hint("model.encodr") == "did you mean model.encoder?"
  assert "optim.g_learning_rate" in command_line.nested_field_hint("optim.lr")  # Read as "learning rate".
  assert command_line.nested_field_hint("optim.foo").startswith("optim has beta1, beta2, d_learning_rate")


def test_the_installed_colorize_command_is_main_py_from_any_folder(tmp_path):
  """`pip install -e .` gives a `colorize` command (pyproject.toml): the same program, whose configs
  still find the ones they build on (`from configs import photos`) when started outside the checkout."""
  command = os.path.join(os.path.dirname(sys.executable), "colorize")
  assert os.path.exists(command), f"no {command}: install the project with `pip install -e .` (README)"
  config = os.path.join(REPO, "configs", "photos_vivid.py")  # Imports photos_pretrained, which imports photos.
  out = subprocess.run(
    [command, f"--config={config}", "--config.no_such_field=1"],
    cwd=tmp_path,
    capture_output=True,
    text=True,
    timeout=300,
  )
  assert out.returncode == 2
  assert out.stderr.splitlines() == [
    "colorize: error: --config.no_such_field: the config has no field no_such_field; configs/default.py lists "
    "every field.",
    "Run `colorize --help` for the modes, their flags and an example of each.",
  ]
  out = subprocess.run([command, "--mode=colorize", "--vividness=2"], cwd=tmp_path, capture_output=True, text=True)
  assert out.stderr.splitlines()[0].startswith("colorize: error: --vividness=2.0 must lie in [0, 1]")
