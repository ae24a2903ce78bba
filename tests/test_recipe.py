"""The quality recipe's switches (configs/photos.py): each does what it says, and only when on."""

import jax
import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from colorize.data import input_pipeline
from colorize.data import usable
from colorize.networks import colour_bins
from colorize.networks import inference
from colorize.networks import models
from colorize.runs import checkpoint
from colorize.training import compiled
from colorize.training import losses
from colorize.training import steps
from colorize.training import train
from tests.conftest import assert_trees_equal
from tests.conftest import tiny_config
from tests.test_steps import smooth_colour_images


def fixed_batch(mesh):
  return steps.global_batch(mesh, smooth_colour_images(4, 16))


def eval_batch(mesh):
  return {"image": fixed_batch(mesh), "mask": steps.global_batch(mesh, np.ones(4, np.float32))}


# ----------------------------------------------------------------------------- pretraining


@pytest.mark.slow
def test_pretraining_trains_the_generator_alone_by_l1_then_the_gan_takes_over():
  config = tiny_config(pretrain_steps=2)
  mesh = steps.make_mesh()
  state, (step_fn, _) = compiled.setup(config, mesh)
  initial = jax.device_get(state)
  history = []
  for _ in range(2):
    state, metrics = step_fn(state, fixed_batch(mesh))
    history.append(jax.device_get(metrics))
  assert_trees_equal(jax.device_get(state.discriminator), initial.discriminator)  # D untouched
  assert not np.array_equal(jax.tree.leaves(state.generator.params)[0], jax.tree.leaves(initial.generator.params)[0])
  for metrics in history:  # G's L1 alone, logged as such: g_loss keeps the GAN objective's meaning.
    assert {"d_loss", "g_loss_adv", "g_loss"}.isdisjoint(metrics) and "g_loss_l1" in metrics
  state, metrics = step_fn(state, fixed_batch(mesh))  # Batch 3: the GAN step.
  assert {"d_loss", "g_loss_adv"} <= metrics.keys()
  assert not np.array_equal(
    jax.tree.leaves(state.discriminator.params)[0], jax.tree.leaves(initial.discriminator.params)[0]
  )


def test_a_logging_window_across_the_end_of_pretraining_averages_each_loss_over_its_steps():
  averaged = train.average_finite_metrics({1: {"g_loss": 1.0}, 2: {"g_loss": 3.0, "d_loss": 5.0}}, None)
  assert averaged == {"g_loss": 2.0, "d_loss": 5.0}


# ----------------------------------------------------------------------------- weight average


@pytest.mark.slow
def test_the_weight_average_follows_its_formula_and_is_what_evaluation_scores():
  config = tiny_config(ema_decay=0.5)
  mesh = steps.make_mesh()
  state, (step_fn, eval_fn) = compiled.setup(config, mesh)
  expected = jax.device_get(state.generator.variables())
  for step in range(3):
    state, _ = step_fn(state, fixed_batch(mesh))
    decay = min(0.5, (1 + step) / (10 + step))  # The warm-up: 0.1, 0.18, 0.25.
    live = jax.device_get(state.generator.variables())
    expected = jax.tree.map(lambda avg, new, d=decay: d * avg + (1 - d) * new, expected, live)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), jax.device_get(state.generator_ema), expected)

  averaged_as_live = state.replace(
    generator=state.generator.replace(
      params=state.generator_ema["params"], batch_stats=state.generator_ema["batch_stats"]
    ),
    generator_ema=None,
  )
  scores = float(eval_fn(state, eval_batch(mesh))["l1"])
  assert scores == float(eval_fn(averaged_as_live, eval_batch(mesh))["l1"])
  assert scores != float(eval_fn(state.replace(generator_ema=None), eval_batch(mesh))["l1"])


@pytest.mark.slow
def test_a_run_with_a_weight_average_resumes_it_and_colorizes_with_it(tmp_path):
  config = tiny_config(ema_decay=0.9, num_train_steps=2)
  final = train.train_and_evaluate(config, str(tmp_path))
  _, variables, step = inference.load_generator(config, str(tmp_path))
  assert step == 2
  assert_trees_equal(jax.device_get(variables), jax.device_get(final.generator_ema))
  fresh, _ = compiled.setup(config, steps.make_mesh())
  manager = checkpoint.create_manager(str(tmp_path))
  restored, _ = checkpoint.restore(manager, fresh)
  manager.close()
  assert_trees_equal(jax.device_get(restored.generator_ema), jax.device_get(final.generator_ema))
  live = jax.device_get(final.generator.params)
  assert not np.array_equal(jax.tree.leaves(variables["params"])[0], jax.tree.leaves(live)[0])


@pytest.mark.slow
def test_a_run_without_an_average_resumes_and_fine_tunes_with_one(tmp_path):
  # Runs saved before the average existed (or with ema_decay=0): the average starts from G.
  old, new = str(tmp_path / "old"), str(tmp_path / "new")
  train.train_and_evaluate(tiny_config(num_train_steps=1), old)
  resumed = train.train_and_evaluate(tiny_config(num_train_steps=2, ema_decay=0.9), old)
  assert int(resumed.step) == 2 and resumed.generator_ema is not None
  tuned = train.train_and_evaluate(tiny_config(num_train_steps=1, ema_decay=0.9, init_from=old), new)
  assert int(tuned.step) == 1 and np.isfinite(jax.tree.leaves(tuned.generator_ema)[0]).all()


# ----------------------------------------------------------------------------- spectral norm


@pytest.mark.parametrize("norm", ["batch", "spectral"])
def test_spectral_norm_makes_the_discriminator_blind_to_the_scale_of_its_weights(norm):
  # With BatchNorm, scaling every kernel by 10 scales the logits (the dense layer has no norm);
  # spectral norm divides each kernel by its largest singular value, so nothing changes.
  config = tiny_config()
  config.model.disc_norm, config.model.disc_dropout = norm, 0.0
  _, discriminator = models.create_models(config.model)
  real = np.asarray(steps.color.uint8_rgb_to_normalized_lab(smooth_colour_images(4, 16)))
  variables = discriminator.init(jax.random.key(0), real[..., :1], real, train=False)

  def logits(params):
    out, _ = discriminator.apply(
      {**variables, "params": params}, real[..., :1], real, train=True, mutable=["batch_stats"]
    )
    return np.asarray(out)

  scaled = jax.tree_util.tree_map_with_path(
    lambda path, x: x * 10 if path[-1].key == "kernel" else x, variables["params"]
  )
  if norm == "spectral":
    assert "BatchNorm" not in str(jax.tree_util.tree_structure(variables["params"]))
    np.testing.assert_allclose(logits(scaled), logits(variables["params"]), rtol=1e-4, atol=1e-5)
  else:
    assert not np.allclose(logits(scaled), logits(variables["params"]), rtol=1e-2)


@pytest.mark.slow
def test_spectral_norm_trains_and_keeps_its_vectors_in_the_checkpointed_statistics():
  config = tiny_config()
  config.model.disc_norm = "spectral"
  mesh = steps.make_mesh()
  state, (step_fn, _) = compiled.setup(config, mesh)
  before = jax.device_get(state.discriminator.batch_stats)
  state, metrics = step_fn(state, fixed_batch(mesh))
  after = jax.device_get(state.discriminator.batch_stats)
  assert np.isfinite(float(metrics["d_loss"]))
  names = [str(path) for path, _ in jax.tree_util.tree_leaves_with_path(after)]
  assert names and all("/u" in name or "/sigma" in name for name in names), names
  # Every layer's power iteration ran: its vector moved (sigma, about 1, may keep its last bit).
  leaves = zip(names, jax.tree.leaves(after), jax.tree.leaves(before), strict=True)
  vectors = [(name, a, b) for name, a, b in leaves if "/u" in name]
  assert len(vectors) == 3 and all(not np.array_equal(a, b) for _, a, b in vectors), vectors


def power_iteration(u, kernel):
  """Flax SpectralNorm's one iteration: u <- normalize(normalize(u W^T) W), W the kernel as a matrix."""
  matrix = np.asarray(kernel).reshape(-1, kernel.shape[-1])
  v = u @ matrix.T
  v = v / np.linalg.norm(v)
  u = v @ matrix
  return u / np.linalg.norm(u)


@pytest.mark.slow
def test_one_discriminator_update_runs_one_power_iteration_shared_by_its_real_and_fake_halves():
  # A second iteration in the fake half (or a third in G's pass, kept) stores another vector.
  config = tiny_config(generator_steps_per_batch=1)
  config.model.disc_norm = "spectral"
  mesh = steps.make_mesh()
  state, (step_fn, _) = compiled.setup(config, mesh)
  before = jax.device_get((state.discriminator.params, state.discriminator.batch_stats))
  state, _ = step_fn(state, fixed_batch(mesh))
  after = jax.device_get(state.discriminator.batch_stats)
  params, stats = before
  for norm, vectors in stats.items():
    (u_name,) = [name for name in vectors if name.endswith("/u")]
    layer = u_name.split("/")[0]
    expected = power_iteration(np.asarray(vectors[u_name], np.float64), params[layer]["kernel"])
    np.testing.assert_allclose(after[norm][u_name], expected, rtol=1e-4, atol=1e-6, err_msg=layer)
    twice = power_iteration(expected, params[layer]["kernel"])
    assert not np.allclose(twice, expected, rtol=1e-4, atol=1e-6) or layer == "Dense_0"  # The test can tell.


# ----------------------------------------------------------------------------- class rebalancing


def test_rebalancing_weights_favour_rare_colours_and_mix_one_is_uniform():
  counts = np.zeros(colour_bins.AB_BINS**2)
  common, rare = 11 * 23 + 11, 19 * 23 + 18  # gray; red (a 80, b 67)
  counts[::4], counts[common], counts[rare] = 10, 10_000, 10  # 121 colours seen, one of them most
  weights = losses.rebalancing_weights(counts, 0.5)
  assert weights[rare] > 10 * weights[common]
  np.testing.assert_allclose(losses.rebalancing_weights(counts, 1.0), 1.0, rtol=1e-6)
  # Zhang et al.'s definition, written out: w = 1 / (0.5 p~ + 0.5 / Q), scaled so E_p~[w] = 1.
  smoothed = ndimage.gaussian_filter(counts.reshape(23, 23) / counts.sum(), 0.5, mode="constant").ravel()
  smoothed /= smoothed.sum()
  expected = 1.0 / (0.5 * smoothed + 0.5 / np.count_nonzero(counts))
  np.testing.assert_allclose(weights, expected / np.sum(smoothed * expected), rtol=1e-5)
  assert weights.dtype == np.float32
  # One colour seen (Q = 1): w = 1 / (0.5 p~ + 0.5), still scaled so that E_p~[w] = 1.
  single = np.zeros(colour_bins.AB_BINS**2)
  single[common] = 7
  smoothed = ndimage.gaussian_filter(single.reshape(23, 23) / 7, 0.5, mode="constant").ravel()
  smoothed /= smoothed.sum()
  expected = 1.0 / (0.5 * smoothed + 0.5)
  np.testing.assert_allclose(losses.rebalancing_weights(single, 0.5), expected / np.sum(smoothed * expected), rtol=1e-5)


def test_pixel_weights_are_the_weights_of_each_pixels_true_colour_bin():
  images = np.array([[[[128, 128, 128], [255, 0, 0]]]], np.uint8)  # gray; red (a 80, b 67)
  lab = steps.color.uint8_rgb_to_normalized_lab(images)
  weights = np.arange(colour_bins.AB_BINS**2, dtype=np.float32)
  np.testing.assert_array_equal(losses.pixel_weights(weights, lab), [[[11 * 23 + 11, 19 * 23 + 18]]])
  np.testing.assert_array_equal(losses.ab_histogram(images)[[11 * 23 + 11, 19 * 23 + 18]], [1, 1])


def test_the_rebalanced_regression_is_the_weighted_mean_and_uniform_weights_change_nothing():
  rng = np.random.default_rng(0)
  prediction, target = rng.normal(size=(2, 3, 3, 2)), rng.normal(size=(2, 3, 3, 2))
  weights = rng.uniform(size=(2, 3, 3))
  expected = np.mean(weights[..., None] * np.abs(prediction - target))
  assert float(losses.regression_loss(prediction, target, "l1", weights)) == pytest.approx(expected, rel=1e-6)
  ones = np.ones((2, 3, 3))
  assert float(losses.regression_loss(prediction, target, "l2", ones)) == pytest.approx(
    float(losses.l2_loss(prediction, target)), rel=1e-6
  )


@pytest.mark.parametrize("adversarial", [False, True])
def test_the_generator_loss_scales_with_the_colour_weights_and_logs_the_plain_l1(adversarial):
  config = tiny_config(adversarial=adversarial)
  generator, discriminator = models.create_models(config.model)
  state, _ = compiled.setup(config, steps.make_mesh())
  real = steps.color.uint8_rgb_to_normalized_lab(smooth_colour_images(4, 16))
  fake = generator.apply(state.generator.variables(), real[..., :1], train=False)

  def loss(weights):
    return steps.generator_loss(
      config, discriminator, state.discriminator, real[..., :1], real, (fake, None), jax.random.key(0), weights
    )

  plain, plain_metrics = loss(None)
  doubled, doubled_metrics = loss(np.full(colour_bins.AB_BINS**2, 2.0, np.float32))
  regression = plain_metrics["g_loss_l1"] * (config.loss.l1_weight if adversarial else 1.0)
  assert float(doubled - plain) == pytest.approx(float(regression), rel=1e-5)
  assert float(doubled_metrics["g_loss_l1"]) == float(plain_metrics["g_loss_l1"])


def test_the_colour_weights_come_from_the_training_images_only_when_asked():
  assert train.colour_weights(tiny_config()) is None
  weights = train.colour_weights(tiny_config(**{"loss.rebalance": 0.5, "loss.rebalance_images": 8}))
  assert weights.shape == (colour_bins.AB_BINS**2,) and np.isfinite(weights).all() and (weights > 0).all()
  assert weights.max() > 2 * weights.min()


# ----------------------------------------------------------------------------- near-gray photos


def test_near_gray_photos_are_skipped_and_counted_only_when_asked(tmp_path):
  rng = np.random.default_rng(0)
  for i in range(2):
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / f"colour{i}.png")
    gray = rng.integers(20, 230, (32, 32, 1))
    sepia = np.clip(gray + np.array([8, 0, -8]), 0, 255).astype(np.uint8)  # colourfulness about 4
    Image.fromarray(sepia).save(tmp_path / f"sepia{i}.png")
  for threshold, skipped in ((0.0, lambda n: n == 0), (10.0, lambda n: n > 0)):
    config = tiny_config(dataset="folder", data_dir=str(tmp_path), folder_val_fraction=0.0, min_colorfulness=threshold)
    batches = [next(b) for b in [input_pipeline.train_batches(config)] for _ in range(6)]
    assert skipped(sum(int(batch["gray_skipped"]) for batch in batches)), threshold
    if threshold:
      for image in np.concatenate([batch["image"] for batch in batches]):
        assert usable.colorfulness(image) >= threshold
