"""The command line as a user meets it: each mistake is one line and one hint, exit status 2."""

import os
import subprocess
import sys

import pytest

from colorize import predict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HINT = "Run `python main.py --help` for the modes, their flags and an example of each."


def run_main(*args):
  return subprocess.run(
    [sys.executable, os.path.join(REPO, "main.py"), *args],
    cwd=REPO,
    env=dict(os.environ, PYTHONPATH=REPO),
    capture_output=True,
    text=True,
    timeout=300,
  )


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
  ],
  ids=["no-run", "colorize-input", "turing-output"],
)
def test_mode_mistakes_are_one_line_and_one_hint(args, message, tmp_path):
  out = run_main(f"--workdir={tmp_path}", *args)
  assert out.returncode == 2
  error, hint = out.stderr.splitlines()  # Nothing else: no help text, no TensorFlow start-up lines.
  assert error.startswith(f"main.py: error: {message.format(tmp=tmp_path)}") and hint == HINT


def test_help_names_every_mode_and_the_config_overrides():
  out = run_main("--help")  # absl's --help exits with status 1.
  for example in ("--mode=evaluate", "--mode=colorize", "--mode=turing", "colorize.compare", "--config.FIELD=VALUE"):
    assert example in out.stdout


def test_the_colorize_rate_counts_written_photos_only(monkeypatch):
  progress = predict.ProgressLine(total=4)
  monkeypatch.setattr(progress, "start", progress.start - 2.0)  # Two seconds in.
  progress.advance(written=False)
  progress.advance(written=False)
  assert progress.text() == "[2/4] 0.00 img/s"
  progress.advance(written=True)
  assert progress.text().startswith("[3/4] 0.50 img/s, ETA 2 s")
