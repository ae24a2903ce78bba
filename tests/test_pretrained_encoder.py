"""The generator with an ImageNet-pretrained encoder (model.encoder='efficientnet_lite0')."""

import jax
import numpy as np
import pytest

from colorize.networks import efficientnet
from colorize.training import compiled
from colorize.training import config_checks
from colorize.training import steps
from tests.conftest import assert_trees_equal
from tests.conftest import tiny_config


def encoder_config(**overrides):
  overrides = {"model.encoder": "efficientnet_lite0", "model.output": "ab", "image_size": 32, **overrides}
  return tiny_config(**overrides)


def batch(mesh, size=32):
  images = np.random.default_rng(0).integers(0, 256, (4, size, size, 3), np.uint8)
  return steps.global_batch(mesh, images)


@pytest.mark.slow  # EfficientNet's training step takes half a minute to compile on 2 cores.
@pytest.mark.parametrize("freeze,adversarial", [(1, True), (0, False)])
def test_the_encoder_starts_from_imagenet_stays_frozen_then_trains(freeze, adversarial):
  # Trained through, the generator alone (its whole backward pass is the slow part to compile).
  config = encoder_config(freeze_encoder_steps=freeze, generator_steps_per_batch=1, adversarial=adversarial)
  mesh = steps.make_mesh()
  state, (train_fn, _) = compiled.setup(config, mesh)
  pretrained = efficientnet.pretrained_variables()
  before = jax.device_get(state.generator.params)
  used = {name: pretrained["params"][name] for name in before["encoder"]}
  assert set(pretrained["params"]) - set(used) == {"conv_head", "bn1", "fc"}  # The classifier's head is not used.
  assert_trees_equal(before["encoder"], used)
  stats = jax.device_get(state.generator.batch_stats["encoder"])
  assert_trees_equal(stats, {name: pretrained["batch_stats"][name] for name in stats})
  state, metrics = train_fn(state, batch(mesh))
  after = jax.device_get(state.generator.params)
  assert np.isfinite(float(metrics["g_loss"]))
  changed = jax.tree.map(lambda a, b: not np.array_equal(a, b), before, after)
  encoder_changed = jax.tree.leaves(changed.pop("encoder"))
  assert all(jax.tree.leaves(changed))  # The decoder learns from the first step.
  assert not any(encoder_changed) if freeze else all(encoder_changed)
  # Its BatchNorm keeps the ImageNet statistics (inference mode), whatever the step.
  assert_trees_equal(jax.device_get(state.generator.batch_stats["encoder"]), stats)


def test_the_encoder_needs_the_paper_generator():
  with pytest.raises(ValueError, match="config.model.encoder='efficientnet_lite0' replaces the paper generator's"):
    config_checks.check_model_config(encoder_config(**{"model.generator": "pix2pix"}))
