import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from colorize import checkpoint
from colorize import models
from colorize import steps
from colorize import train
from tests.conftest import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def smooth_colour_images(count, size):
  """Colour gradients: learnable from lightness, unlike noise."""
  y, x = np.mgrid[0:size, 0:size] / size
  images = [np.stack([x, y, 1 - x * y], -1) * (0.5 + 0.5 * i / count) for i in range(count)]
  return (np.stack(images) * 255).astype(np.uint8)


def train_on_fixed_batch(config, num_steps: int = 15):
  """(state, last metrics, L1 per step) after `num_steps` steps on one batch, G's learning rate 2e-3."""
  config.optim.g_learning_rate = 2e-3
  mesh = steps.make_mesh()
  state, (step_fn, _) = steps.setup(config, mesh)
  images = steps.global_batch(mesh, smooth_colour_images(4, 16))
  l1 = []
  for _ in range(num_steps):
    state, metrics = step_fn(state, images)
    l1.append(float(metrics["g_loss_l1"]))
  return state, metrics, l1


@pytest.mark.parametrize(
  "adversarial,architecture",
  [(True, ("paper", "paper")), (False, ("paper", "paper")), (True, ("pix2pix", "patchgan"))],
)
def test_a_few_steps_lower_the_l1_loss_on_a_fixed_batch(adversarial, architecture):
  config = tiny_config(adversarial=adversarial)
  config.model.generator, config.model.discriminator = architecture
  state, metrics, l1 = train_on_fixed_batch(config)
  assert l1[-1] < 0.8 * l1[0], l1
  assert int(state.step) == 15
  assert ("d_loss" in metrics) == adversarial


def test_bfloat16_computes_in_bfloat16_and_keeps_float32_state():
  config = tiny_config(dtype="bfloat16")
  state, _, l1 = train_on_fixed_batch(config)
  assert l1[-1] < 0.8 * l1[0], l1
  state_dtypes = {x.dtype for x in jax.tree.leaves((state.generator, state.discriminator))}
  assert state_dtypes == {np.dtype(np.float32), np.dtype(np.int32)}  # int32: Adam's step counts.
  generator, _ = models.create_models(config.model, config.dtype)
  gray = np.zeros((1, 16, 16, 1), np.float32)
  hidden = generator.apply(state.generator.variables(), gray, train=False, capture_intermediates=True)
  leaves = jax.tree_util.tree_leaves_with_path(hidden)
  conv_outputs = [v for path, v in leaves if "Conv_0" in jax.tree_util.keystr(path)]
  assert conv_outputs and all(x.dtype == jax.numpy.bfloat16 for x in conv_outputs)


def test_skip_nonfinite_keeps_the_old_state_and_counts_the_skipped_updates(tmp_path):
  config = tiny_config(num_train_steps=4, log_every_steps=2, skip_nonfinite=True)
  config.optim.g_learning_rate = float("nan")  # Every update would make G's parameters NaN.
  state = train.train_and_evaluate(config, str(tmp_path))
  initial, _ = steps.setup(config, steps.make_mesh())
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


def losses_subprocess(devices_per_process: int, *args: str) -> subprocess.Popen:
  env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices_per_process}", PYTHONPATH=REPO)
  return subprocess.Popen(
    [sys.executable, "-m", "tests.multidevice_losses", *args],
    cwd=REPO,
    env=env,
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def losses_of(process) -> dict:
  out, err = process.communicate(timeout=600)
  assert process.returncode == 0, err[-3000:]
  results = [line for line in out.splitlines() if line.startswith("{")]  # Gloo prints to stdout too.
  return json.loads(results[-1]) if results else {}


def free_port() -> int:
  with socket.socket() as probe:
    probe.bind(("127.0.0.1", 0))
    return probe.getsockname()[1]


def assert_same_training(reference, other):
  """Same logged metrics (gradient norms included) and the same parameters after plain-SGD steps."""
  assert len(reference["metrics"]) == len(other["metrics"]) == 4
  for step_reference, step_other in zip(reference["metrics"], other["metrics"], strict=True):
    assert step_reference.keys() == step_other.keys()
    for key in step_reference:
      assert step_other[key] == pytest.approx(step_reference[key], abs=1e-4, rel=1e-6), key  # eval sums: rel
  assert {"g_grad_norm", "d_grad_norm"} <= reference["metrics"][0].keys()
  assert reference["params"].keys() == other["params"].keys()
  for path, value in reference["params"].items():
    np.testing.assert_allclose(other["params"][path], value, rtol=0, atol=1e-5, err_msg=path)


@pytest.mark.slow
def test_one_and_eight_devices_train_to_the_same_parameters():
  result = losses_of(losses_subprocess(8))
  assert_same_training(result["1"], result["8"])


@pytest.mark.slow
def test_two_processes_train_like_one_process_with_as_many_devices():
  port = free_port()
  single = losses_subprocess(4)
  workers = [losses_subprocess(2, str(i), "2", str(port)) for i in range(2)]
  reference = losses_of(single)["4"]
  results = [losses_of(worker) for worker in workers]
  assert_same_training(reference, results[0]["4"])  # Process 0 reports; process 1 prints nothing.
  assert results[1] == {}


def params_of(workdir):
  manager = ocp.CheckpointManager(checkpoint.checkpoint_dir(workdir), item_names=checkpoint.ITEMS)
  step = manager.latest_step()
  restored = manager.restore(
    step, args=ocp.args.Composite(generator=ocp.args.StandardRestore(), discriminator=ocp.args.StandardRestore())
  )
  return step, restored


def train_losses(workdir):
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return {row["step"]: row["train/g_loss"] for row in rows if "train/g_loss" in row}


def assert_trees_equal(a, b):
  jax.tree.map(np.testing.assert_array_equal, a, b)


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


def test_another_seed_gives_other_parameters(tmp_path):
  mesh = steps.make_mesh()
  a, _ = steps.setup(tiny_config(seed=0), mesh)
  b, _ = steps.setup(tiny_config(seed=1), mesh)
  assert not np.array_equal(a.generator.params["Conv_0"]["kernel"], b.generator.params["Conv_0"]["kernel"])


@pytest.mark.parametrize(
  "overrides,message",
  [
    ({"batch_size": 6}, r"config.batch_size=6 is not divisible by the 4 devices"),
    ({"image_size": 18}, r"config.image_size=18 is not a multiple of 2\*\*model.depth=4"),
    ({"dtype": "float16"}, r"config.dtype='float16' is unknown"),
  ],
)
def test_bad_settings_fail_at_start_with_the_field_and_the_fix(overrides, message):
  with pytest.raises(ValueError, match=message):
    steps.check_config(tiny_config(**overrides), num_devices=4)


def test_init_from_starts_a_new_run_from_another_runs_weights(tmp_path):
  source, tuned = str(tmp_path / "source"), str(tmp_path / "tuned")
  train.train_and_evaluate(tiny_config(num_train_steps=2), source)
  frozen = tiny_config(num_train_steps=1, init_from=source)
  frozen.optim.g_learning_rate = frozen.optim.d_learning_rate = 0.0  # Adam with lr 0 leaves params as loaded.
  train.train_and_evaluate(frozen, tuned)
  (source_step, source_state), (tuned_step, tuned_state) = params_of(source), params_of(tuned)
  assert (source_step, tuned_step) == (2, 1)
  assert_trees_equal(tuned_state.generator["params"], source_state.generator["params"])
  assert_trees_equal(tuned_state.discriminator["params"], source_state.discriminator["params"])
  with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
    train.train_and_evaluate(tiny_config(init_from=str(tmp_path / "nothing")), str(tmp_path / "other"))


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


def test_a_failed_save_stops_the_run_naming_the_step_and_keeps_older_checkpoints(tmp_path, monkeypatch):
  real_save = ocp.CheckpointManager.save

  def save_until_the_disk_fills(self, step, *args, **kwargs):
    if step == 4:
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save_until_the_disk_fills)
  with pytest.raises(OSError, match="could not save the checkpoint of step 4 in .*No space left on device"):
    train.train_and_evaluate(tiny_config(num_train_steps=4), str(tmp_path))
  assert params_of(str(tmp_path))[0] == 2


def test_sigterm_saves_a_checkpoint_and_exits_zero(tmp_path):
  script = (
    "import sys; from tests.conftest import tiny_config; from colorize import train; "
    f"train.train_and_evaluate(tiny_config(num_train_steps=100000, checkpoint_every_steps=100000), {str(tmp_path)!r})"
  )
  env = dict(os.environ, PYTHONPATH=REPO)
  process = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
  metrics = tmp_path / "metrics.jsonl"
  deadline = time.time() + 240
  while time.time() < deadline and (not metrics.exists() or len(metrics.read_text().splitlines()) < 3):
    time.sleep(0.5)
  process.send_signal(signal.SIGTERM)
  sent = time.time()
  _, err = process.communicate(timeout=120)
  assert process.returncode == 0, err[-2000:]
  assert time.time() - sent < 30
  step, _ = params_of(str(tmp_path))
  assert step >= 2 and "Stopped by SIGTERM at step" in err


def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
  reference, damaged = str(tmp_path / "reference"), str(tmp_path / "damaged")
  train.train_and_evaluate(tiny_config(num_train_steps=4), reference)
  train.train_and_evaluate(tiny_config(num_train_steps=4), damaged)
  newest = os.path.join(checkpoint.checkpoint_dir(damaged), "4", "generator")
  for folder, _, files in os.walk(newest):  # Truncate every file of the newest generator.
    for name in files:
      open(os.path.join(folder, name), "w").close()
  train.train_and_evaluate(tiny_config(num_train_steps=4), damaged)  # Falls back to 2, trains 3 and 4 again.
  assert_trees_equal(params_of(damaged)[1].generator, params_of(reference)[1].generator)
  assert train_losses(damaged) == train_losses(reference)
  assert [n.split("-")[0] for n in os.listdir(os.path.join(damaged, "damaged_checkpoints"))] == ["4"]  # kept aside

  for step in ("2", "4"):
    for folder, _, files in os.walk(os.path.join(checkpoint.checkpoint_dir(damaged), step, "generator")):
      for name in files:
        open(os.path.join(folder, name), "w").close()
  with pytest.raises(checkpoint.NoUsableCheckpointError, match="none of the checkpoints"):
    train.train_and_evaluate(tiny_config(num_train_steps=6), damaged)


# A run that SIGKILLs itself right after starting the save of step 6: the save is in flight.
KILLED_IN_SAVE = """
import os, signal, sys
from colorize import checkpoint, train
from tests.conftest import tiny_config
real_save = checkpoint.save
def save_then_die(manager, state, position):
  real_save(manager, state, position)
  if int(state.step) == 6:
    os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save = save_then_die
train.train_and_evaluate(tiny_config(**eval(sys.argv[1])), sys.argv[2])
"""
PLAIN_RUN = "import sys; from colorize import train; from tests.conftest import tiny_config; " + (
  "train.train_and_evaluate(tiny_config(**eval(sys.argv[1])), sys.argv[2])"
)


def logged_rows(workdir):
  """metrics.jsonl without the timing fields, which differ between runs."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  return [{k: v for k, v in row.items() if k not in ("images_per_second", "eta_seconds")} for row in rows]


def start_run(script, overrides, workdir):
  env = dict(os.environ, PYTHONPATH=REPO)
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
