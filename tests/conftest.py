"""Shared test settings: quiet TensorFlow, tiny configs that train in seconds on a CPU."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tempfile  # noqa: E402

import jax  # noqa: E402
import pytest  # noqa: E402

from configs import demo  # noqa: E402

# Tests compile the same tiny programs many times over: a persistent compilation cache for the
# session turns each repeat into a lookup.
# Subprocesses that import this module inherit the folder through the environment.
os.environ.setdefault("COLORIZE_TEST_JAX_CACHE", tempfile.mkdtemp(prefix="colorize-jax-cache-"))
jax.config.update("jax_compilation_cache_dir", os.environ["COLORIZE_TEST_JAX_CACHE"])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def tiny_config(**overrides):
  """The demo config shrunk to 16 px, width 4, batch 4: a full run compiles and trains in seconds."""
  config = demo.get_config()
  config.image_size = 16
  config.batch_size = 4
  config.num_eval_images = 4
  config.num_sample_images = 2
  config.shuffle_buffer_size = 16
  config.num_train_steps = 4
  config.log_every_steps = 1
  config.eval_every_steps = 2
  config.sample_every_steps = 2
  config.checkpoint_every_steps = 2
  config.model.base_width = 4
  config.model.depth = 2
  config.model.disc_base_width = 4
  config.model.disc_units = 2
  config.update_from_flattened_dict(overrides)
  return config


@pytest.fixture
def config():
  return tiny_config()


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
  """One tiny GAN run (2 steps at 16 px) shared by the tests that only read a trained run."""
  from colorize import train

  workdir = str(tmp_path_factory.mktemp("trained_run"))
  train.train_and_evaluate(tiny_config(num_train_steps=2), workdir)
  return workdir
