import json
import os
import re
import signal
import subprocess
import sys
import time

import orbax.checkpoint as ocp
import pytest

from colorize.runs import checkpoint
from colorize.training import compiled
from colorize.training import steps
from colorize.training import train
from tests.conftest import assert_trees_equal
from tests.conftest import params_of
from tests.conftest import subprocess_env
from tests.conftest import tiny_config
from tests.conftest import train_losses

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
def test_skip_nonfinite_keeps_the_old_state_and_counts_the_skipped_updates(tmp_path):
  config = tiny_config(num_train_steps=4, log_every_steps=2, skip_nonfinite=True)
  config.optim.g_learning_rate = float("nan")  # Every update would make G's parameters NaN.
  state = train.train_and_evaluate(config, str(tmp_path))
  initial, _ = compiled.setup(config, steps.make_mesh())
  assert int(state.step) == 4
  assert_trees_equal(state.generator.params, initial.generator.params)
  logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert [m["train/nonfinite_skipped"] for m in logged if "train/nonfinite_skipped" in m] == [2, 2]
  assert params_of(str(tmp_path))[0] == 4  # Checkpoints are saved: the kept state is finite.


def test_average_finite_metrics_leaves_out_and_counts_skipped_steps():
  nan = float("nan")
  window = {
    3: {"g_loss": 1.0, "nonfinite_skipped": 0},
    4: {"g_loss": nan, "nonfinite_skipped": 1},
    5: {"g_loss": 3.0, "nonfinite_skipped": 0},
  }
  assert train.average_finite_metrics(window, None) == {"g_loss": 2.0, "nonfinite_skipped": 1}
  with pytest.raises(FloatingPointError, match="step 4"):
    train.average_finite_metrics({3: {"g_loss": 1.0}, 4: {"g_loss": nan}}, None)


@pytest.mark.slow
def test_same_seed_is_bitwise_reproducible_and_resume_matches_an_uninterrupted_run(tmp_path):
  config = tiny_config(num_train_steps=4)
  first, second, resumed = (str(tmp_path / name) for name in ("first", "second", "resumed"))
  train.train_and_evaluate(config, first)
  train.train_and_evaluate(config, second)
  train.train_and_evaluate(tiny_config(num_train_steps=2), resumed)
  train.train_and_evaluate(config, resumed)  # picks up at step 2

  step, reference = params_of(first)
  assert step == 4
  for other in (second, resumed):
    other_step, restored = params_of(other)
    assert other_step == 4
    assert_trees_equal(restored.generator, reference.generator)
    assert_trees_equal(restored.discriminator, reference.discriminator)
  assert train_losses(resumed) == train_losses(first)  # same batches, each step logged once

  for name in ("config.json", "metrics.jsonl", "samples/step_0000004.png"):
    assert os.path.exists(os.path.join(first, name)), name
  with open(os.path.join(first, "config.json")) as f:
    description = json.load(f)
  assert description["config"]["image_size"] == 16 and "jax" in description["versions"]
  assert any(name.startswith("events.out.tfevents") for name in os.listdir(first))


@pytest.mark.slow
def test_init_from_starts_a_new_run_from_another_runs_weights(trained_run, tmp_path):
  source, tuned = trained_run, str(tmp_path / "tuned")
  frozen = tiny_config(num_train_steps=1, init_from=source)
  frozen.optim.g_learning_rate = frozen.optim.d_learning_rate = 0.0  # Adam with lr 0 leaves params as loaded.
  train.train_and_evaluate(frozen, tuned)
  (source_step, source_state), (tuned_step, tuned_state) = params_of(source), params_of(tuned)
  assert (source_step, tuned_step) == (2, 1)
  assert_trees_equal(tuned_state.generator["params"], source_state.generator["params"])
  assert_trees_equal(tuned_state.discriminator["params"], source_state.discriminator["params"])
  with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
    train.train_and_evaluate(tiny_config(init_from=str(tmp_path / "nothing")), str(tmp_path / "other"))


@pytest.mark.slow
def test_non_finite_values_stop_the_run_with_the_step_and_save_no_nan_state(tmp_path):
  config = tiny_config(num_train_steps=4, log_every_steps=4, checkpoint_every_steps=2, generator_steps_per_batch=1)
  config.optim.g_learning_rate = float("nan")  # Step 1's update makes the parameters and later losses NaN.
  with pytest.raises(FloatingPointError, match=r"non-finite loss at step 2: .*g_loss.*no checkpoint yet"):
    train.train_and_evaluate(config, str(tmp_path / "a"))
  config.checkpoint_every_steps = 1  # Saving right after the bad update: the state itself is checked.
  with pytest.raises(FloatingPointError, match=r"non-finite parameters after step 1"):
    train.train_and_evaluate(config, str(tmp_path / "b"))
  for run in ("a", "b"):
    manager = ocp.CheckpointManager(checkpoint.checkpoint_dir(str(tmp_path / run)), item_names=checkpoint.ITEMS)
    assert manager.latest_step() is None


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_and_exits_zero(tmp_path):
  script = (
    "import sys; from tests.conftest import tiny_config; from colorize.training import train; "
    f"train.train_and_evaluate(tiny_config(num_train_steps=100000, checkpoint_every_steps=100000), {str(tmp_path)!r})"
  )
  env = subprocess_env()
  process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
  metrics = tmp_path / "metrics.jsonl"
  deadline = time.time() + 240
  while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
    time.sleep(0.5)
  process.send_signal(signal.SIGTERM)
  _, err = process.communicate(timeout=120)  # A run that ignored the signal would train 100,000 steps.
  assert process.returncode == 0, err[-2000:]
  stopped_at = int(re.search(r"Stopped by SIGTERM at step (\d+)", err).group(1))
  step, _ = params_of(str(tmp_path))
  assert step == stopped_at >= 2  # The checkpoint of the very step it stopped at.


# A run that SIGKILLs itself right after starting the save of step 6: the save is in flight.
KILLED_IN_SAVE = """
import os, signal, sys
from colorize.runs import checkpoint
from colorize.training import train
from tests.conftest import assert_trees_equal
from tests.conftest import params_of
from tests.conftest import tiny_config
from tests.conftest import train_losses
real_save = checkpoint.save
def save_then_die(manager, state, position):
  real_save(manager, state, position)
  if int(state.step) == 6:
    os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save = save_then_die
train.train_and_evaluate(tiny_config(**eval(sys.argv[1])), sys.argv[2])
"""
PLAIN_RUN = "import sys; from colorize.training import train; from tests.conftest import tiny_config; " + (
  "train.train_and_evaluate(tiny_config(**eval(sys.argv[1])), sys.argv[2])"
)


def logged_rows(workdir):
  """metrics.jsonl without the timing fields, which differ between runs."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return [{k: v for k, v in row.items() if k not in ("images_per_second", "eta_seconds")} for row in rows]


def start_run(script, overrides, workdir):
  env = subprocess_env()
  command = [sys.executable, "-c", script, repr(overrides), workdir]
  return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kill_after_logged_steps(process, workdir, count):
  path = os.path.join(workdir, "metrics.jsonl")
  deadline = time.time() + 240
  while time.time() < deadline and process.poll() is None:
    if os.path.exists(path) and sum(1 for _ in open(path)) >= count:
      break
    time.sleep(0.05)
  process.kill()
  process.wait()


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_matches_an_uninterrupted_run(tmp_path):
  overrides = dict(num_train_steps=8, checkpoint_every_steps=2, eval_every_steps=4, sample_every_steps=4)
  reference, killed = str(tmp_path / "reference"), str(tmp_path / "killed")
  train.train_and_evaluate(tiny_config(**overrides), reference)

  kill_after_logged_steps(start_run(PLAIN_RUN, overrides, killed), killed, 1)  # Before any checkpoint.
  kill_after_logged_steps(start_run(PLAIN_RUN, overrides, killed), killed, 5)  # Between checkpoints.
  process = start_run(KILLED_IN_SAVE, overrides, killed)  # While the checkpoint of step 6 is written.
  _, err = process.communicate(timeout=300)
  assert process.returncode == -signal.SIGKILL, err[-2000:]
  assert "6.orbax-checkpoint-tmp" in os.listdir(checkpoint.checkpoint_dir(killed))  # Killed mid-save indeed.
  process = start_run(PLAIN_RUN, overrides, killed)
  _, err = process.communicate(timeout=300)
  assert process.returncode == 0, err[-2000:]

  (killed_step, killed_state), (_, reference_state) = params_of(killed), params_of(reference)
  assert killed_step == 8
  assert_trees_equal(killed_state.generator, reference_state.generator)
  assert_trees_equal(killed_state.discriminator, reference_state.discriminator)
  rows = logged_rows(killed)
  assert rows == logged_rows(reference)
  assert len({tuple(sorted(row)) + (row["step"],) for row in rows}) == len(rows)  # Each step's line once.
