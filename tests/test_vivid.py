"""The vividness knob: a vivid head beside the regression head, trained alone from a bundle, whose
distribution tilted towards rare colours moves the regression's colour; vividness 0 is the
regression bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from colorize.exporting import export
from colorize.networks import colour_bins
from colorize.networks import heads
from colorize.networks import inference
from colorize.networks import models
from colorize.runs import bundle
from colorize.training import config_checks
from colorize.training import steps
from colorize.training import train
from tests.conftest import assert_trees_equal
from tests.conftest import tiny_config

VIVID = {"model.vivid_head": True}


def bin_index(a: float, b: float) -> int:
  return int(np.argmin(np.sum(np.square(colour_bins.gamut_bin_centres() - [a, b]), axis=-1)))


def two_colour_logits(gray_share: float) -> np.ndarray:
  """Logits [1, 1, 1, Q] of a distribution with `gray_share` on gray and the rest on a strong red."""
  logits = np.full(colour_bins.num_bins(), -1e4, np.float32)
  logits[bin_index(0, 0)], logits[bin_index(60, 40)] = np.log(gray_share), np.log(1.0 - gray_share)
  return logits.reshape(1, 1, 1, -1)


def rare_red_weights() -> np.ndarray:
  """log rebalancing weights: red five times as rare as gray."""
  weights = np.zeros(colour_bins.num_bins(), np.float32)
  weights[bin_index(60, 40)] = np.log(5.0)
  return weights


def chroma(lab) -> float:
  return float(np.hypot(*np.asarray(lab)[..., 1:].reshape(-1, 2).T).mean())


def test_vividness_moves_colour_towards_a_bold_mode_and_hardly_where_the_distribution_is_sure():
  lab = jnp.zeros((1, 1, 1, 3))  # The regression's colour: gray.
  unsure, sure = two_colour_logits(0.7), two_colour_logits(0.999)
  moved = [chroma(heads.vivid_lab(lab, unsure, rare_red_weights(), v)) for v in (0.0, 0.5, 1.0)]
  assert moved[0] == 0.0 and moved[0] < moved[1] < moved[2]
  bold = heads.vivid_lab(lab, unsure, rare_red_weights(), 1.0)[0, 0, 0, 1:]
  assert float(bold[0]) > 0 and float(bold[1]) > 0  # Towards the red mode (a, b > 0), not any colour.
  assert chroma(heads.vivid_lab(lab, sure, rare_red_weights(), 1.0)) < moved[2] / 20


def vivid_generator(config):
  """(generator, variables with a random head and a realistic prior, gray input)."""
  generator, _ = models.create_models(config.model)
  gray = jnp.linspace(-1.0, 1.0, 2 * 16 * 16).reshape(2, 16, 16, 1)
  variables = generator.init(jax.random.key(0), gray, train=False)
  head = jax.tree.map(lambda x: jax.random.normal(jax.random.key(1), x.shape), variables["params"]["VividHead_0"])
  chroma_of_bins = np.hypot(*colour_bins.gamut_bin_centres().T)
  head["log_weights"] = jnp.asarray(chroma_of_bins / 30.0)  # Rarer the more saturated, as in photos.
  variables = {**variables, "params": {**variables["params"], "VividHead_0": head}}
  return generator, variables, gray


def test_vividness_zero_is_the_regression_bit_for_bit_and_one_is_bolder():
  generator, variables, gray = vivid_generator(tiny_config(**VIVID))
  plain, _ = models.create_models(tiny_config().model)
  plain_variables = {**variables, "params": {k: v for k, v in variables["params"].items() if k != "VividHead_0"}}
  faithful = generator.apply(variables, gray, train=False)
  np.testing.assert_array_equal(faithful, plain.apply(plain_variables, gray, train=False))
  bold = generator.clone(vividness=1.0).apply(variables, gray, train=False)
  np.testing.assert_array_equal(bold[..., 0], faithful[..., 0])  # Lightness kept.
  assert chroma(bold) > chroma(faithful) + 1e-3


@pytest.mark.parametrize("kind", ["paper", "pix2pix"])
def test_a_generator_without_a_distribution_is_saturated_by_vividness(kind):
  plain, _ = models.create_models(tiny_config(**{"model.generator": kind, "model.depth": 4}).model)
  gray = jnp.linspace(-1.0, 1.0, 16 * 16).reshape(1, 16, 16, 1)
  variables = plain.init(jax.random.key(0), gray, train=False)
  faithful = plain.apply(variables, gray, train=False)
  doubled = plain.clone(vividness=1.0).apply(variables, gray, train=False)
  np.testing.assert_allclose(doubled[..., 1:], np.clip(2 * faithful[..., 1:], -1, 1), rtol=1e-6)


@pytest.mark.parametrize(
  "overrides, message",
  [
    ({"model.vividness": 1.5}, "config.model.vividness=1.5 must lie in [0, 1]"),
    ({"model.vivid_head": True, "model.colour_head": "bins"}, "vivid_head=True sits beside a regression head"),
  ],
)
def test_vivid_settings_that_cannot_work_are_refused(overrides, message):
  with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
    models.create_models(tiny_config(**overrides).model)


@pytest.mark.slow  # Two tiny runs and an export (about 20 s).
def test_the_vivid_head_trains_alone_from_a_bundle_and_the_rest_stays_bit_for_bit(trained_run, tmp_path):
  weights = str(tmp_path / "weights")
  export.export_bundle(trained_run, weights, None)
  config = tiny_config(**VIVID, vivid_head_only=True, init_from=weights, num_train_steps=3, adversarial=False)
  config.ema_decay = 0.999  # A weight average kept: it must not round the untouched weights.
  workdir = str(tmp_path / "vivid")
  train.train_and_evaluate(config, workdir)

  _, shipped, _ = inference.load_generator(bundle.bundle_config(weights), weights)
  _, trained, step = inference.load_generator(config, workdir)  # The weight average, as inference reads it.
  assert step == 3
  head = trained["params"].pop("VividHead_0")
  assert_trees_equal(trained, shipped)  # Trunk, regression head and BatchNorm statistics: untouched.
  fresh, _, _ = vivid_generator(config)
  initial = fresh.init(jax.random.key(config.seed), jnp.zeros((1, 16, 16, 1)), train=False)["params"]["VividHead_0"]
  assert not np.array_equal(head["Conv_1"]["kernel"], initial["Conv_1"]["kernel"])  # The head learnt.
  log_weights = np.asarray(head["log_weights"])  # From the training photos' colours, then kept.
  saturated = np.hypot(*colour_bins.gamut_bin_centres().T) > 60
  assert np.all(np.isfinite(log_weights)) and log_weights[saturated].mean() > log_weights[bin_index(0, 0)] + 1.0


def test_a_bins_head_sharpens_from_its_own_temperature_by_the_same_factor_at_full_vividness():
  assert heads.bins_temperature(1.0, 0.0) == 1.0 and heads.bins_temperature(1.0, 1.0) == pytest.approx(0.38)
  assert heads.bins_temperature(0.38, 1.0) == pytest.approx(0.38 * 0.38)  # A cold model still gets bolder.
  assert heads.bins_temperature(0.5, 0.5) == pytest.approx(0.5 * 0.38**0.5)


def test_training_reads_the_faithful_colour_whatever_the_vividness():
  config = tiny_config()
  generator, _ = models.create_models(config.model)
  gray = jnp.linspace(-1.0, 1.0, 2 * 16 * 16).reshape(2, 16, 16, 1)
  variables = generator.init(jax.random.key(0), gray, train=False)
  network = steps.NetworkState(variables["params"], variables["batch_stats"], None)

  mesh = steps.make_mesh(jax.devices()[:1])
  data = jax.sharding.PartitionSpec(steps.AXIS)

  def trained_on(vividness):
    forward = jax.shard_map(
      lambda g: steps.generator_forward(generator.clone(vividness=vividness), network, g, jax.random.key(1))[0][0],
      mesh=mesh,
      in_specs=data,
      out_specs=data,
    )
    return jax.jit(forward)(jax.device_put(gray, jax.sharding.NamedSharding(mesh, data)))

  np.testing.assert_array_equal(trained_on(1.0), trained_on(0.0))


def test_training_the_vivid_head_alone_needs_a_trained_generator_to_start_from():
  with pytest.raises(ValueError, match="config.vivid_head_only=True trains the vivid head alone beside a trained"):
    config_checks.check_model_config(tiny_config(**VIVID, vivid_head_only=True))
