import json
import os
import subprocess
import sys
import types

import jax
import numpy as np
import optax
import pytest

from colorize.networks import colour_bins
from colorize.networks import models
from colorize.training import compiled
from colorize.training import config_checks
from colorize.training import optim
from colorize.training import steps
from tests.conftest import free_port
from tests.conftest import subprocess_env
from tests.conftest import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sgd_config(**overrides):
  """Plain SGD, no dropout, one G update: a step's parameter change is exactly -rate * gradient."""
  config = tiny_config(generator_steps_per_batch=1, **overrides)
  config.optim.optimizer = "sgd"
  config.optim.g_learning_rate = config.optim.d_learning_rate = 0.05  # Changes far above float32 rounding.
  config.model.disc_dropout = 0.0
  return config


def parameter_change(config, start_step: int) -> dict:
  """G's and D's parameter change in one step from the initial state, with `state.step` set to `start_step`."""
  mesh = steps.make_mesh()
  state, (step_fn, _) = compiled.setup(config, mesh)
  before = jax.device_get(state)
  state = state.replace(step=jax.device_put(np.int32(start_step), state.step.sharding))
  images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
  after, metrics = step_fn(state, steps.global_batch(mesh, images))
  after = jax.device_get(after)

  def change(net_after, net_before):
    return np.concatenate(
      [(a - b).ravel() for a, b in zip(jax.tree.leaves(net_after), jax.tree.leaves(net_before), strict=True)]
    )

  return {
    "generator": change(after.generator.params, before.generator.params),
    "discriminator": change(after.discriminator.params, before.discriminator.params),
    "metrics": jax.device_get(metrics),
  }


@pytest.mark.slow
def test_learning_rates_follow_the_batch_count_not_the_optimiser_count():
  # Skipped non-finite steps keep the old optimiser state and G counts several updates per batch:
  # the rate of batch k must still be the schedule at k. Here the optimiser state is fresh
  # (count 0) while state.step is 3, so a count-driven schedule would use the undecayed rate.
  # D is updated first, so its change is exactly the scaled gradient; G's is checked without D,
  # whose own smaller step would otherwise change G's gradient.
  for network, adversarial in (("discriminator", True), ("generator", False)):
    config = sgd_config(adversarial=adversarial)
    config.optim.decay_rate, config.optim.decay_steps = 0.5, 1
    first, fourth = parameter_change(config, 0), parameter_change(config, 3)
    assert np.abs(first[network]).max() > 1e-3
    np.testing.assert_allclose(fourth[network], first[network] * 0.5**3, rtol=1e-3, atol=1e-6, err_msg=network)
    assert float(fourth["metrics"]["g_learning_rate"]) == pytest.approx(config.optim.g_learning_rate * 0.5**3)


def test_decayed_learning_rates_are_floored_like_the_reference_code():
  config = tiny_config()
  config.optim.decay_rate, config.optim.decay_steps = 0.1, 10
  schedule = optim.learning_rate_schedule(2e-4, config.optim)
  assert float(schedule(10)) == pytest.approx(2e-5)
  assert float(schedule(1_000)) == pytest.approx(1e-6)  # Reference code: max(1e-6, decayed rate).
  config.optim.decay_rate = 1.0
  assert float(optim.learning_rate_schedule(2e-4, config.optim)(10**9)) == pytest.approx(2e-4)


@pytest.mark.slow  # 7 s or more on 2 cores.
def test_gradient_norms_are_logged_and_scale_the_sgd_update():
  config = sgd_config()
  change = parameter_change(config, 0)
  rate = config.optim.d_learning_rate
  # With plain SGD the update is -rate * gradient, so its norm is rate * the logged norm.
  assert np.linalg.norm(change["discriminator"]) == pytest.approx(
    rate * float(change["metrics"]["d_grad_norm"]), rel=1e-4
  )
  assert float(change["metrics"]["g_grad_norm"]) > 0


def test_unknown_optimizer_is_a_clear_error():
  config = tiny_config()
  config.optim.optimizer = "rmsprop"
  with pytest.raises(ValueError, match="config.optim.optimizer='rmsprop' is unknown"):
    config_checks.check_model_config(config)


def smooth_colour_images(count, size):
  """Colour gradients: learnable from lightness, unlike noise."""
  y, x = np.mgrid[0:size, 0:size] / size
  images = [np.stack([x, y, 1 - x * y], -1) * (0.5 + 0.5 * i / count) for i in range(count)]
  return (np.stack(images) * 255).astype(np.uint8)


def train_on_fixed_batch(config, num_steps: int = 15):
  """(state, last metrics, L1 per step) after `num_steps` steps on one batch, G's learning rate 2e-3."""
  config.optim.g_learning_rate = 2e-3
  mesh = steps.make_mesh()
  state, (step_fn, _) = compiled.setup(config, mesh)
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
@pytest.mark.slow
def test_a_few_steps_lower_the_l1_loss_on_a_fixed_batch(adversarial, architecture):
  config = tiny_config(adversarial=adversarial)
  config.model.generator, config.model.discriminator = architecture
  state, metrics, l1 = train_on_fixed_batch(config)
  assert l1[-1] < 0.8 * l1[0], l1
  assert int(state.step) == 15
  assert ("d_loss" in metrics) == adversarial


@pytest.mark.slow
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


def test_another_seed_gives_other_parameters(tmp_path):
  mesh = steps.make_mesh()
  a, _ = compiled.setup(tiny_config(seed=0), mesh)
  b, _ = compiled.setup(tiny_config(seed=1), mesh)
  assert not np.array_equal(a.generator.params["Conv_0"]["kernel"], b.generator.params["Conv_0"]["kernel"])


def test_a_run_set_up_again_reuses_its_jitted_steps_but_not_its_state_or_a_changed_configs_steps():
  mesh = steps.make_mesh()
  config = tiny_config()
  state, (step_fn, eval_fn) = compiled.setup(config, mesh)
  again, (same_step, same_eval) = compiled.setup(tiny_config(), mesh)
  assert same_step is step_fn and same_eval is eval_fn  # Traced and compiled once.
  assert all(a is not b for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(again), strict=True))  # A fresh state.
  weights = np.ones(colour_bins.num_bins(), np.float32)
  for other_config, other_weights in ((tiny_config(seed=1), None), (config, weights), (config, 2 * weights)):
    _, (other_step, _) = compiled.setup(other_config, mesh, other_weights)
    assert other_step is not step_fn
  # The kept steps read a copy of the config: the caller's later change does not reach them.
  config.adversarial = False
  images, mask = smooth_colour_images(4, 16), np.ones(4, np.float32)
  batch = {"image": steps.global_batch(mesh, images), "mask": steps.global_batch(mesh, mask)}
  assert "d_loss_real" in jax.eval_shape(eval_fn, state, batch)  # Traced now, as the GAN it was set up as.
  _, (_, l1_eval) = compiled.setup(config, mesh)
  assert "d_loss_real" not in jax.eval_shape(l1_eval, state, batch)


@pytest.mark.parametrize(
  "overrides,message",
  [
    ({"batch_size": 6}, r"config.batch_size=6 is not divisible by the 4 devices"),
    ({"image_size": 18}, r"config.image_size=18 is not a multiple of 2\*\*model.depth=4"),
    ({"dtype": "float16"}, r"config.dtype='float16' is unknown"),
    ({"generator_steps_per_batch": 0}, r"config.generator_steps_per_batch must be at least 1"),
    ({"ema_decay": 1.0}, r"config.ema_decay=1.0 must be in \[0, 1\)"),
    ({"loss.rebalance": 1.5}, r"config.loss.rebalance=1.5 must be in \[0, 1\]"),
    ({"loss.regression": "huber"}, r"config.loss.regression='huber' is unknown; use 'l1' or 'l2'"),
    ({"model.disc_norm": "layer"}, r"config.model.disc_norm='layer' is unknown"),
    ({"model.disc_norm": "spectral", "model.discriminator": "patchgan"}, r"needs the paper discriminator"),
    ({"model.encoder": "efficientnet_lite0", "image_size": 48}, r"image_size=48 is not a multiple of model.encoder's"),
    ({"optim.decay_rate": 10.0}, r"config.optim.decay_rate=10.0 must be in \(0, 1\]: .*ceiling"),
    ({"optim.decay_rate": 0.0}, r"config.optim.decay_rate=0.0 must be in \(0, 1\]"),
    ({"optim.decay_rate": 0.5, "optim.decay_steps": 0}, r"config.optim.decay_steps=0 must be at least 1"),
    (
      {"optim.decay_rate": 0.1, "optim.g_learning_rate": 1e-7},
      r"config.optim.g_learning_rate=1e-07 is below the decay's floor config.optim.min_learning_rate=1e-06",
    ),
    ({"pretrain_steps": -1}, r"config.pretrain_steps=-1 must be 0 \(off\) or more"),
  ],
)
def test_bad_settings_fail_at_start_with_the_field_and_the_fix(overrides, message):
  with pytest.raises(ValueError, match=message):
    config_checks.check_config(tiny_config(**overrides), num_devices=4)


@pytest.mark.parametrize(
  "overrides",
  [
    {"loss.regression": "l2", "optim.optimizer": "sgd", "model.output": "ab"},
    {"dtype": "bfloat16", "generator_steps_per_batch": 1, "ema_decay": 0.0, "loss.rebalance": 1.0},
    {"model.disc_norm": "spectral", "ema_decay": 0.999, "loss.rebalance": 0.0},
    {"optim.decay_rate": 0.1, "optim.decay_steps": 1, "optim.g_learning_rate": 1e-6, "pretrain_steps": 5},
    {"optim.decay_rate": 1.0, "optim.g_learning_rate": 1e-9},  # No decay, no floor.
  ],
)
def test_every_known_setting_is_accepted(overrides):
  config_checks.check_config(tiny_config(**overrides), num_devices=4)


@pytest.mark.slow  # 7 s or more on 2 cores.
def test_evaluation_scores_the_discriminator_on_real_and_generated_images_in_eval_mode():
  config = tiny_config()
  mesh = steps.make_mesh()
  state, (_, eval_fn) = compiled.setup(config, mesh)
  images = smooth_colour_images(4, 16)
  batch = {"image": steps.global_batch(mesh, images), "mask": steps.global_batch(mesh, np.ones(4, np.float32))}
  sums = jax.device_get(eval_fn(state, batch))
  state = jax.device_get(state)
  generator, discriminator = models.create_models(config.model, config.dtype)
  real = steps.color.uint8_rgb_to_normalized_lab(images)
  fake = generator.apply(state.inference_variables(), real[..., :1], train=False)
  real_logits = discriminator.apply(state.discriminator.variables(), real[..., :1], real, train=False)
  fake_logits = discriminator.apply(state.discriminator.variables(), real[..., :1], fake, train=False)
  expected = {
    "d_loss_real": steps.losses.sigmoid_cross_entropy(real_logits, 1.0),
    "d_loss_fake": steps.losses.sigmoid_cross_entropy(fake_logits, 0.0),
    "g_loss_adv": steps.losses.sigmoid_cross_entropy(fake_logits, 1.0),
  }
  assert float(sums["count"]) == 4
  for key, value in expected.items():
    assert float(sums[key]) / 4 == pytest.approx(float(value), rel=1e-4), key


def losses_subprocess(devices_per_process: int, *args: str) -> subprocess.Popen:
  env = subprocess_env(devices_per_process)
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


def assert_same_training(reference, other):
  """Same logged metrics (gradient norms included) and the same parameters after plain-SGD steps."""
  assert len(reference["metrics"]) == len(other["metrics"]) == 4
  for step_reference, step_other in zip(reference["metrics"], other["metrics"], strict=True):
    assert step_reference.keys() == step_other.keys()
    for key in step_reference:
      assert step_other[key] == pytest.approx(step_reference[key], abs=1e-4, rel=1e-6), key  # eval sums: rel
  assert {"g_grad_norm", "d_grad_norm"} <= reference["metrics"][-2].keys()  # The last train step's.
  assert reference["params"].keys() == other["params"].keys()
  for path, value in reference["params"].items():
    np.testing.assert_allclose(other["params"][path], value, rtol=0, atol=1e-5, err_msg=path)


@pytest.mark.slow
def test_one_and_eight_devices_train_to_the_same_parameters():
  result = losses_of(losses_subprocess(8))
  assert_same_training(result["1"], result["8"])


@pytest.mark.slow
def test_the_quality_recipe_trains_alike_on_one_and_eight_devices():
  # Pretraining, the weight average, spectral norm's power iteration, the rebalanced L1 and the bins head.
  result = losses_of(losses_subprocess(8, "--recipe"))
  assert "d_loss" not in result["1"]["metrics"][0] and "d_loss" in result["1"]["metrics"][1]
  assert "g_loss_bins" in result["1"]["metrics"][0]
  assert any("generator_ema" in path for path in result["1"]["params"])
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


def steps_on_fixed_batch(config, num_steps: int):
  """(initial state, final state, metrics per step) on the smooth-colour batch of 4."""
  mesh = steps.make_mesh()
  initial, (step_fn, _) = compiled.setup(config, mesh)
  first = jax.device_get(initial)
  images = steps.global_batch(mesh, smooth_colour_images(4, 16))
  state, history = initial, []
  for _ in range(num_steps):
    state, metrics = step_fn(state, images)
    history.append(jax.device_get(metrics))
  return first, state, history


@pytest.mark.slow
def test_with_the_generator_frozen_the_discriminator_learns_real_from_fake():
  # Catches a D that never updates, real and fake swapped in D's loss or inputs, and wrong labels.
  config = tiny_config()
  config.optim.g_learning_rate = 0.0
  config.optim.d_learning_rate = 2e-3
  _, state, history = steps_on_fixed_batch(config, 12)
  d_loss = [float(m["d_loss"]) for m in history]
  assert d_loss[-1] < 0.5 * d_loss[0], d_loss
  _, discriminator = models.create_models(config.model, config.dtype)
  generator = models.create_models(config.model, config.dtype)[0]
  real = np.asarray(steps.color.uint8_rgb_to_normalized_lab(smooth_colour_images(4, 16)))
  gray = real[..., :1]
  fake = generator.apply(state.generator.variables(), gray, train=False)
  d_vars = state.discriminator.variables()
  real_logits = discriminator.apply(d_vars, gray, real, train=False)
  fake_logits = discriminator.apply(d_vars, gray, fake, train=False)
  assert (real_logits > fake_logits).all(), (real_logits, fake_logits)


def test_the_generator_loss_is_the_adversarial_loss_plus_lambda_l1():
  config = tiny_config()
  _, _, history = steps_on_fixed_batch(config, 2)
  for metrics in history:
    expected = metrics["g_loss_adv"] + config.loss.l1_weight * metrics["g_loss_l1"]
    assert float(metrics["g_loss"]) == pytest.approx(float(expected), rel=1e-6)
    assert float(metrics["g_loss_adv"]) > 0  # -log D(G(x)) of a sigmoid: never negative


@pytest.mark.slow
def test_skip_nonfinite_changes_nothing_when_every_step_is_finite():
  off, on = tiny_config(), tiny_config(skip_nonfinite=True)
  _, state_off, history_off = steps_on_fixed_batch(off, 3)
  _, state_on, history_on = steps_on_fixed_batch(on, 3)
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(state_on), jax.device_get(state_off))
  assert [int(m["nonfinite_skipped"]) for m in history_on] == [0, 0, 0]
  assert [float(m["g_loss"]) for m in history_on] == [float(m["g_loss"]) for m in history_off]


@pytest.mark.slow  # 7 s or more on 2 cores.
def test_batch_norm_running_averages_are_updated_in_training_and_used_at_evaluation():
  config = tiny_config()
  first, state, _ = steps_on_fixed_batch(config, 1)
  for network in ("generator", "discriminator"):
    before = jax.tree.leaves(getattr(first, network).batch_stats)
    after = jax.tree.leaves(jax.device_get(getattr(state, network).batch_stats))
    assert before and all(not np.array_equal(a, b) for a, b in zip(after, before, strict=True)), network
  # Evaluation reads the running averages: other averages, other colours for the same parameters.
  mesh = steps.make_mesh()
  _, (_, eval_fn) = compiled.setup(config, mesh)
  batch = {
    "image": steps.global_batch(mesh, smooth_colour_images(4, 16)),
    "mask": steps.global_batch(mesh, np.ones(4, np.float32)),
  }
  stale = state.replace(generator=state.generator.replace(batch_stats=first.generator.batch_stats))
  assert float(eval_fn(state, batch)["l1"]) != float(eval_fn(stale, batch)["l1"])


@pytest.mark.slow
def test_label_smoothing_sets_the_real_target_inside_the_step():
  config = tiny_config()
  config.loss.label_smoothing = 0.1
  config.model.disc_dropout = 0.0  # D's logits on the real images are then a function of the state alone.
  first, _, history = steps_on_fixed_batch(config, 1)
  _, discriminator = models.create_models(config.model, config.dtype)
  real = steps.color.uint8_rgb_to_normalized_lab(smooth_colour_images(4, 16))
  logits, _ = discriminator.apply(
    first.discriminator.variables(), real[..., :1], real, train=True, mutable=["batch_stats"]
  )
  expected = steps.losses.sigmoid_cross_entropy(logits, 0.9)
  assert float(history[0]["d_loss_real"]) == pytest.approx(float(expected), rel=1e-5)
  assert float(expected) != pytest.approx(float(steps.losses.sigmoid_cross_entropy(logits, 1.0)), rel=1e-3)


@pytest.mark.slow
def test_the_discriminator_trains_on_each_batchs_own_statistics_real_then_fake():
  # Catches a fake pass in eval mode (running averages instead of the fake batch's statistics),
  # running averages that skip the fake batch, and a fake pass that sees the real images' statistics.
  config = tiny_config()
  config.model.disc_dropout = 0.0  # D is then a function of the state and its inputs alone.
  first, state, history = steps_on_fixed_batch(config, 1)
  generator, discriminator = models.create_models(config.model, config.dtype)
  real = steps.color.uint8_rgb_to_normalized_lab(smooth_colour_images(4, 16))
  gray = real[..., :1]
  fake, _ = generator.apply(first.generator.variables(), gray, train=True, mutable=["batch_stats"])
  _, after_real = discriminator.apply(first.discriminator.variables(), gray, real, train=True, mutable=["batch_stats"])
  after_real = {"params": first.discriminator.params, **after_real}
  fake_logits, after_fake = discriminator.apply(after_real, gray, fake, train=True, mutable=["batch_stats"])
  expected = steps.losses.sigmoid_cross_entropy(fake_logits, 0.0)
  assert float(history[0]["d_loss_fake"]) == pytest.approx(float(expected), rel=1e-5)
  jax.tree.map(
    lambda got, want: np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6),
    jax.device_get(state.discriminator.batch_stats),
    jax.device_get(after_fake["batch_stats"]),
  )


@pytest.mark.parametrize(
  "overrides,starts",
  [
    ({}, [0]),
    ({"pretrain_steps": 5}, [0, 5]),
    ({"pretrain_steps": 5, "adversarial": False}, [0]),  # Regression alone: no pretraining phase.
    ({"model.encoder": "efficientnet_lite0", "freeze_encoder_steps": 3, "pretrain_steps": 5}, [0, 3, 5]),
    ({"model.encoder": "efficientnet_lite0", "freeze_encoder_steps": 0}, [0]),
    ({"freeze_encoder_steps": 3}, [0]),  # The paper's encoder is never frozen.
  ],
)
def test_training_phases_start_where_pretraining_and_the_frozen_encoder_end(overrides, starts):
  assert compiled.phase_starts(tiny_config(num_train_steps=100, **overrides)) == starts
  assert compiled.phase_starts(tiny_config(num_train_steps=3, **overrides)) == [s for s in starts if s < 3]


def test_a_held_optimiser_updates_nothing_and_starts_afresh_when_released():
  # A frozen encoder's Adam: while held its count and moments stay at their start, so its first
  # free update is Adam's first (about the rate), not one inflated by zero moments.
  params = {"w": np.ones(3, np.float32)}
  grads = {"w": np.full(3, 0.5, np.float32)}
  adam = optax.adam(0.1)
  held = optim.held_while(np.bool_(True), adam)
  state = held.init(params)
  for _ in range(5):
    updates, state = held.update(grads, state, params)
    assert not np.any(updates["w"])
  jax.tree.map(np.testing.assert_array_equal, state, adam.init(params))
  free_updates, _ = optim.held_while(np.bool_(False), adam).update(grads, state, params)
  np.testing.assert_allclose(free_updates["w"], adam.update(grads, adam.init(params), params)[0]["w"])
  np.testing.assert_allclose(free_updates["w"], -0.1, rtol=1e-4)


def test_a_run_that_is_all_pretraining_still_logs_its_l1_apart_from_the_gans_loss():
  """With pretrain_steps >= num_train_steps the only phase is pretraining: its L1 is not `g_loss`."""
  state = types.SimpleNamespace(step=np.int32(5))

  def step(state, images):
    return state, {"g_loss": 0.5, "g_loss_l1": 0.5}

  (start,) = compiled.phase_starts(tiny_config(num_train_steps=3, pretrain_steps=5))
  only_pretraining = compiled.phased([(start, step, True)])
  assert only_pretraining(state, None)[1] == {"g_loss_l1": 0.5}
  assert compiled.phased([(0, step, False)]) is step  # A run of one plain phase keeps its step as it is.
  assert compiled.phased([(0, step, True), (5, step, False)])(state, None)[1]["g_loss"] == 0.5
