"""A run's record of itself: another config cannot damage it, every resume is in its history, and
overrides without --config apply to the run's own config."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from colorize.runs import command_line
from colorize.runs import run_record
from colorize.runs import run_setup
from colorize.training import train
from configs import from_run
from tests.conftest import subprocess_env
from tests.conftest import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def run_copy(trained_run, tmp_path):
  """A copy of the session's tiny trained run (2 steps), to change."""
  return shutil.copytree(trained_run, tmp_path / "run")


def snapshot(folder) -> dict:
  """{relative path: bytes} of every file under `folder`."""
  files = {}
  for root, _, names in os.walk(folder):
    for name in names:
      path = os.path.join(root, name)
      with open(path, "rb") as f:
        files[os.path.relpath(path, folder)] = f.read()
  return files


@pytest.mark.parametrize(
  "overrides, named",
  [
    ({"model.base_width": 8}, "model.base_width 4 -> 8"),
    ({"image_size": 32}, "image_size 16 -> 32"),
    ({"seed": 3, "dataset": "folder", "data_dir": "/photos"}, "data_dir '' -> '/photos', dataset 'demo' -> 'folder'"),
  ],
)
def test_a_run_given_another_config_is_refused_in_one_line_and_stays_byte_identical(run_copy, overrides, named):
  before = snapshot(run_copy)
  with pytest.raises(run_setup.UsageError, match="is a run of another config") as raised:
    train.train_and_evaluate(tiny_config(num_train_steps=3, **overrides), str(run_copy))
  assert named in str(raised.value) and "\n" not in str(raised.value)
  assert snapshot(run_copy) == before


def test_a_run_started_under_other_data_rules_is_not_resumed(run_copy):
  with open(run_copy / "config.json") as f:
    saved = json.load(f)
  saved["data_rules"] = {**run_record.DATA_RULES, "folder_split": "sha256-of-path"}
  (run_copy / "config.json").write_text(json.dumps(saved))
  before = snapshot(run_copy)
  with pytest.raises(run_setup.UsageError, match="other data rules .*folder_split 'sha256-of-path' -> 'sha256-of-file"):
    train.train_and_evaluate(tiny_config(num_train_steps=3), str(run_copy))
  assert snapshot(run_copy) == before


@pytest.mark.slow  # One resumed step compiles a train step: about 10 s.
def test_a_resume_with_a_changed_learning_rate_is_in_the_runs_history_and_its_config_stays(run_copy, caplog):
  original = (run_copy / "config.json").read_bytes()
  started = run_setup.history(run_copy)
  assert [line["step"] for line in started] == [0] and started[0]["changed"] == {}
  config = tiny_config(num_train_steps=3)
  config.optim.g_learning_rate = 1e-3
  invocation = run_record.invocation("configs/test.py", ["main.py", "--config.optim.g_learning_rate=1e-3"])
  train.train_and_evaluate(config, str(run_copy), invocation)
  assert (run_copy / "config.json").read_bytes() == original  # The run's first config, kept.
  resumed = run_setup.history(run_copy)[-1]
  assert resumed["step"] == 2 and resumed["overrides"] == ["--config.optim.g_learning_rate=1e-3"]
  assert resumed["changed"] == {"num_train_steps": [2, 3], "optim.g_learning_rate": [0.0002, 0.001]}
  assert resumed["config"]["optim.g_learning_rate"] == 1e-3 and resumed["commit"] and "jax" in resumed["versions"]
  assert "num_train_steps 2 -> 3, optim.g_learning_rate 0.0002 -> 0.001" in caplog.text
  # A later start without --config takes the setting the run last trained with.
  assert run_setup.saved_config(str(run_copy)).optim.g_learning_rate == 1e-3


def test_overrides_without_config_take_the_runs_own_config_as_their_base(run_copy):
  argv = ["main.py", f"--workdir={run_copy}", "--config.num_train_steps=400"]
  assert command_line.with_run_config(argv) == [argv[0], f"--config={command_line.RUN_CONFIG}:{run_copy}", *argv[1:]]
  assert command_line.with_run_config(["main.py", "--config=configs/demo.py", "--config.seed=1"])[1] == (
    "--config=configs/demo.py"
  )
  base = from_run.get_config(str(run_copy))
  assert base.image_size == 16 and base.model.base_width == 4  # The run's config, not configs/default.py's.
  with pytest.raises(run_setup.UsageError, match="names no run"):
    from_run.get_config(str(run_copy / "nowhere"))


@pytest.mark.slow  # A subprocess that imports JAX and parses the command line: about 8 s.
def test_main_applies_overrides_to_an_existing_run_without_config(run_copy):
  command = [sys.executable, os.path.join(REPO, "main.py"), f"--workdir={run_copy}", "--config.num_train_steps=2"]
  out = subprocess.run(command, capture_output=True, text=True, timeout=300, env=subprocess_env())
  assert out.returncode == 0, out.stderr[-2000:]
  assert "Nothing to do: the run" in out.stderr and "is at step 2 already" in out.stderr
  missing = subprocess.run(
    [*command[:2], f"--workdir={run_copy / 'nowhere'}", "--config.seed=1"], capture_output=True, text=True, timeout=300
  )
  assert missing.returncode == 2 and "holds no run (no config.json)" in missing.stderr.splitlines()[0]


def test_fields_a_run_never_recorded_or_reads_only_at_inference_are_no_change_of_identity(run_copy):
  saved = json.loads((run_copy / "config.json").read_text())
  del saved["config"]["model"]["border"]  # A run from before the field existed.
  (run_copy / "config.json").write_text(json.dumps(saved))
  config = tiny_config(num_train_steps=2)
  config.model.border, config.model.temperature = 16, 1.0  # Inference alone; refused elsewhere for this model.
  assert run_record.check_start(config, str(run_copy)) == {"model.border": [0, 16]}
  relative = tiny_config(num_train_steps=2, data_dir=os.path.relpath(str(run_copy)))
  saved["config"]["data_dir"] = str(run_copy)  # The same folder, named absolutely then relatively.
  (run_copy / "config.json").write_text(json.dumps(saved))
  run_record.check_start(relative, str(run_copy))


def test_a_run_that_never_trained_may_start_again_with_another_config(run_copy):
  shutil.rmtree(run_copy / "checkpoints")  # It stopped before its first checkpoint.
  assert run_record.check_start(tiny_config(image_size=32), str(run_copy), trained=False) == {}


def test_a_folder_run_records_no_tfds_split_it_never_reads():
  folder = run_record.recorded(tiny_config(dataset="folder", data_dir="/photos"))
  assert "eval_split" not in folder and "train_split" not in folder and folder["data_dir"] == "/photos"
  assert run_record.recorded(tiny_config(dataset="cifar10"))["eval_split"] == "test"
