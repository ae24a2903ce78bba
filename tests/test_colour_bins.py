"""The vividness knob: colour as a distribution over a,b bins, decoded at a temperature."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from colorize import color
from colorize.colouring import predict
from colorize.measuring import evaluate
from colorize.networks import colour_bins
from colorize.networks import models
from colorize.runs import run_setup
from colorize.training import config_checks
from colorize.training import steps
from colorize.training import train
from tests.conftest import tiny_config
from tests.test_steps import smooth_colour_images
from tests.test_steps import steps_on_fixed_batch


def normalized_ab(a, b):
  return np.array([a, b], np.float32) / color.LAB_SCALE[1]


def test_the_bins_are_the_grid_cells_that_hold_srgb_colours():
  centres = colour_bins.gamut_bin_centres()
  assert centres.shape == (261, 2)  # Of the 23 x 23 grid.
  assert [0.0, 0.0] in centres.tolist()  # Gray.
  # Every 8-bit colour (a 32-level sample) falls into one of them; pure red's a,b = (80, 67) -> (80, 70).
  levels = np.linspace(0, 255, 32).astype(np.uint8)
  rgb = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), -1).reshape(-1, 3)
  lab = color.normalize_lab(color.rgb_to_lab(rgb / 255.0, np))
  cells = {tuple(c) for c in centres.tolist()}
  found = np.round(lab[:, 1:] * color.LAB_SCALE[1] / 10) * 10
  assert {tuple(c) for c in found.tolist()} <= cells
  assert (80.0, 70.0) in cells and (100.0, -100.0) not in cells  # Out of sRGB: no class.


def test_a_soft_target_spreads_a_colour_over_its_neighbours_by_a_gaussian_of_5():
  centres = colour_bins.gamut_bin_centres()
  target = np.asarray(colour_bins.soft_targets(jnp.asarray(normalized_ab(20.0, -30.0))))
  assert target.sum() == pytest.approx(1.0, abs=1e-6)
  on = target[np.flatnonzero((centres == [20, -30]).all(1))[0]]
  beside = target[np.flatnonzero((centres == [30, -30]).all(1))[0]]
  diagonal = target[np.flatnonzero((centres == [30, -20]).all(1))[0]]
  assert beside / on == pytest.approx(np.exp(-100 / 50), rel=1e-4)  # 10 units apart, sigma 5.
  assert diagonal / on == pytest.approx(np.exp(-200 / 50), rel=1e-4)
  # Far outside the gamut a colour still gets a target: its nearest bins'.
  far = np.asarray(colour_bins.soft_targets(jnp.asarray(normalized_ab(-200.0, 200.0))))
  assert np.isfinite(far).all() and far.sum() == pytest.approx(1.0, abs=1e-6)


def test_the_annealed_mean_is_the_mean_at_one_and_the_mode_near_zero():
  centres = colour_bins.gamut_bin_centres()
  logits = np.random.default_rng(0).normal(size=(5, len(centres))).astype(np.float32) * 2
  probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  mean = colour_bins.annealed_mean(jnp.asarray(logits), 1.0) * color.LAB_SCALE[1]
  np.testing.assert_allclose(mean, probabilities @ centres, atol=1e-3)
  logits[np.arange(5), logits.argmax(1)] += 1.0  # A clear mode: 100 nats ahead at T = 0.01.
  mode = colour_bins.annealed_mean(jnp.asarray(logits), 0.01) * color.LAB_SCALE[1]
  np.testing.assert_allclose(mode, centres[logits.argmax(1)], atol=1e-3)
  # In between: further from gray than the mean (more vivid) for a distribution split between two colours.
  split = np.full((1, len(centres)), -10.0, np.float32)
  split[0, np.flatnonzero((centres == [0, 0]).all(1))] = 0.0
  split[0, np.flatnonzero((centres == [60, 60]).all(1))] = 0.5
  chroma = [np.linalg.norm(colour_bins.annealed_mean(jnp.asarray(split), t)) for t in (1.0, 0.38)]
  assert chroma[1] > chroma[0]
  with pytest.raises(ValueError, match="temperature=0.0 must be > 0"):
    colour_bins.annealed_mean(jnp.asarray(logits), 0.0)


@pytest.mark.slow  # 7 s or more on 2 cores.
def test_a_new_bins_head_starts_at_gray_as_a_regression_head_does():
  prior = colour_bins.gray_prior_logits(None, (colour_bins.num_bins(),))
  for temperature in (1.0, 0.38):
    np.testing.assert_allclose(colour_bins.annealed_mean(prior, temperature), [0.0, 0.0], atol=1e-4)
  generator, _ = models.create_models(bins_config().model)
  variables = generator.init(jax.random.key(0), jnp.zeros((1, 16, 16, 1)), train=False)
  np.testing.assert_array_equal(variables["params"]["BinsHead_0"]["Conv_0"]["bias"], prior)


def test_the_cross_entropy_is_lowest_at_the_soft_target_and_weighted_per_pixel():
  ab = jnp.asarray(np.stack([normalized_ab(20.0, -30.0), normalized_ab(-5.0, 52.0)]))
  targets = colour_bins.soft_targets(ab)
  best = colour_bins.cross_entropy(jnp.log(jnp.maximum(targets, 1e-30)), ab)
  entropy = jnp.sum(jax.scipy.special.entr(targets), axis=-1).mean()
  assert float(best) == pytest.approx(float(entropy), rel=1e-4)
  assert float(colour_bins.cross_entropy(jnp.zeros_like(targets), ab)) > float(best)
  weighted = colour_bins.cross_entropy(jnp.zeros_like(targets), ab, jnp.asarray([2.0, 0.0]))
  per_pixel = -jnp.sum(targets * jax.nn.log_softmax(jnp.zeros_like(targets)), axis=-1)
  assert float(weighted) == pytest.approx(float(per_pixel[0]), rel=1e-5)  # (2 * first + 0 * second) / 2


def bins_config(**overrides):
  return tiny_config(**{"model.output": "ab", "model.colour_head": "bins", **overrides})


def test_a_bins_generator_keeps_l_and_colours_by_the_annealed_mean_at_its_temperature():
  config = bins_config()
  generator, _ = models.create_models(config.model)
  gray = jnp.linspace(-1, 1, 16 * 16).reshape(1, 16, 16, 1)
  variables = generator.init(jax.random.key(0), gray, train=False)
  lab, logits = generator.apply(variables, gray, train=False, with_logits=True)
  assert lab.shape == (1, 16, 16, 3) and logits.shape == (1, 16, 16, colour_bins.num_bins())
  np.testing.assert_array_equal(lab[..., 0], gray[..., 0])
  np.testing.assert_allclose(lab[..., 1:], colour_bins.annealed_mean(logits, 1.0), atol=1e-6)
  vivid = generator.clone(temperature=0.38).apply(variables, gray, train=False)
  np.testing.assert_array_equal(vivid[..., 0], gray[..., 0])
  np.testing.assert_allclose(vivid[..., 1:], colour_bins.annealed_mean(logits, 0.38), atol=1e-6)
  assert not np.allclose(vivid, lab, atol=1e-3)


def losses_on_fixed_batch(config, num_steps: int, learning_rate: float = 0.1) -> list:
  """Each step's metrics on the smooth-colour batch. A width-4 head starting sure of gray (its
  prior) needs a high rate to reach these colours in a few steps."""
  config.optim.g_learning_rate = learning_rate
  _, _, history = steps_on_fixed_batch(config, num_steps)
  return [{name: float(value) for name, value in metrics.items()} for metrics in history]


@pytest.mark.slow
def test_training_reads_the_mean_whatever_temperature_inference_uses():
  # The step's L1 and cross-entropy are the same at model.temperature 0.38 and 1: training reads T = 1.
  vivid = losses_on_fixed_batch(bins_config(adversarial=False, **{"model.temperature": 0.38}), 1)[0]
  mean = losses_on_fixed_batch(bins_config(adversarial=False), 1)[0]
  assert vivid["g_loss_l1"] == mean["g_loss_l1"] and vivid["g_loss_bins"] == mean["g_loss_bins"]
  assert "d_learning_rate" not in mean and "g_learning_rate" in mean  # No discriminator: no rate of its logged.


def test_the_half_resolution_cross_entropy_reads_each_blocks_colour_and_its_weight():
  rng = np.random.default_rng(0)
  blocks = rng.uniform(-0.5, 0.5, (2, 3, 4, 3)).astype(np.float32)  # One colour per 2x2 block.
  real = jnp.asarray(np.repeat(np.repeat(blocks, 2, axis=1), 2, axis=2))
  logits = jnp.asarray(rng.normal(size=(2, 3, 4, colour_bins.num_bins())).astype(np.float32))
  full_resolution = colour_bins.cross_entropy(jnp.repeat(jnp.repeat(logits, 2, 1), 2, 2), real[..., 1:])
  assert float(steps._bins_loss(logits, real, None)) == pytest.approx(float(full_resolution), rel=1e-5)
  doubled = steps._bins_loss(logits, real, jnp.full(colour_bins.AB_BINS**2, 2.0))  # Rebalancing weights.
  assert float(doubled) == pytest.approx(2 * float(full_resolution), rel=1e-5)


@pytest.mark.slow
def test_the_bins_head_learns_and_can_replace_the_regression():
  history = losses_on_fixed_batch(bins_config(adversarial=False, generator_steps_per_batch=1), 20)
  assert history[-1]["g_loss_bins"] < history[0]["g_loss_bins"] - 0.5, history
  assert history[-1]["g_loss_l1"] < 0.85 * history[0]["g_loss_l1"], history
  instead = bins_config(adversarial=False, **{"loss.bins_regression": False, "loss.bins_weight": 2.0})
  metrics = losses_on_fixed_batch(instead, 1)[-1]
  assert metrics["g_loss"] == pytest.approx(2.0 * metrics["g_loss_bins"], rel=1e-6)
  gan = bins_config()
  metrics = losses_on_fixed_batch(gan, 1)[-1]
  expected = metrics["g_loss_adv"] + gan.loss.l1_weight * metrics["g_loss_l1"] + metrics["g_loss_bins"]
  assert metrics["g_loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.slow
def test_a_bins_head_trains_in_bfloat16_with_float32_logits():
  config = bins_config(dtype="bfloat16", adversarial=False, generator_steps_per_batch=1)
  history = losses_on_fixed_batch(config, 2)
  assert all(np.isfinite(m["g_loss_bins"]) and np.isfinite(m["g_loss"]) for m in history), history
  generator, _ = models.create_models(config.model, config.dtype)
  gray = jnp.zeros((1, 16, 16, 1))
  variables = generator.init(jax.random.key(0), gray, train=False)
  lab, logits = generator.apply(variables, gray, train=False, with_logits=True)
  assert lab.dtype == logits.dtype == jnp.float32


@pytest.mark.parametrize(
  "overrides,message",
  [
    ({"model.output": "lab"}, "colour_head='bins' predicts a,b and keeps the input's L"),
    ({"model.generator": "pix2pix"}, "colour_head='bins' predicts a,b and keeps the input's L"),
    ({"model.temperature": 0.0}, "config.model.temperature=0.0 must be > 0"),
    ({"model.colour_head": "bin"}, "config.model.colour_head='bin' is unknown"),
    ({"loss.bins_weight": 0.0, "loss.bins_regression": False}, "gives the bins head no colour loss"),
    ({"loss.bins_weight": -1.0}, r"config.loss.bins_weight=-1.0 must be 0 or more"),
    ({"model.colour_head": "regression", "model.temperature": 0.5}, "is for model.colour_head='bins'"),
  ],
)
def test_bins_settings_that_cannot_work_are_refused(overrides, message):
  with pytest.raises(ValueError, match=message):
    config_checks.check_model_config(bins_config(**overrides))


def test_the_pretrained_encoder_predicts_bins_at_half_resolution_without_the_full_resolution_level():
  def shapes(**overrides):
    config = tiny_config(**{"model.encoder": "efficientnet_lite0", "model.output": "ab", "image_size": 32, **overrides})
    generator, _ = models.create_models(config.model)
    gray = jax.ShapeDtypeStruct((1, 32, 32, 1), jnp.float32)
    variables = jax.eval_shape(lambda x: generator.init(jax.random.key(0), x, train=False), gray)
    outputs = jax.eval_shape(lambda v, x: generator.apply(v, x, train=False, with_logits=True), variables, gray)
    return variables["params"], outputs

  params, (lab, logits) = shapes(**{"model.colour_head": "bins"})
  assert lab.shape == (1, 32, 32, 3) and logits.shape == (1, 16, 16, colour_bins.num_bins())
  regression_params, (_, no_logits) = shapes()
  assert no_logits is None
  units = sorted(name for name in params if name.startswith("DecoderUnit"))
  assert len(units) == len([name for name in regression_params if name.startswith("DecoderUnit")]) - 1


@pytest.mark.slow
def test_a_bins_run_colours_and_scores_at_the_temperature_asked_for(tmp_path):
  config = bins_config(num_train_steps=2)
  train.train_and_evaluate(config, str(tmp_path / "run"))
  photo = tmp_path / "in" / "photo.png"
  photo.parent.mkdir()
  Image.fromarray(smooth_colour_images(1, 32)[0]).save(photo)
  written = {}
  for temperature in (1.0, 0.2):
    run_setup.set_temperature(config, temperature)
    out = tmp_path / f"out-{temperature}"
    assert predict.run(config, str(tmp_path / "run"), input_pattern=str(photo), output_dir=str(out)) == 0
    written[temperature] = np.asarray(Image.open(out / "photo.png"))
    metrics = evaluate.evaluate_run(config, str(tmp_path / "run"), output_dir=str(tmp_path / f"eval-{temperature}"))
    assert metrics["temperature"] == temperature
  assert not np.array_equal(written[1.0], written[0.2])
  regression = tiny_config()
  with pytest.raises(run_setup.UsageError, match="needs a generator trained with a bins head"):
    run_setup.set_temperature(regression, 0.5)
  with pytest.raises(ValueError, match="--colorize_temperature=-1.0 must be > 0"):
    colour_bins.check_temperature(-1.0, "--colorize_temperature")
