import jax
import numpy as np
import pytest

from colorize import steps
from tests.conftest import tiny_config


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
  state, (step_fn, _) = steps.setup(config, mesh)
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
  schedule = steps.learning_rate_schedule(2e-4, config.optim)
  assert float(schedule(10)) == pytest.approx(2e-5)
  assert float(schedule(1_000)) == pytest.approx(1e-6)  # Reference code: max(1e-6, decayed rate).
  config.optim.decay_rate = 1.0
  assert float(steps.learning_rate_schedule(2e-4, config.optim)(10**9)) == pytest.approx(2e-4)


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
    steps.create_optimizers(config)
