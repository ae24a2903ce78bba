"""colorize: conditional-GAN image colorization in JAX/Flax (after Nazeri et al., 2018)."""

import os

# TensorFlow serves only tf.data here: keep its start-up lines off the console. Its oneDNN
# notice is printed whatever TF_CPP_MIN_LOG_LEVEL says, so those custom ops (which speed up
# TensorFlow's own matmuls and convolutions, none of which this program runs) are switched off.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import jax  # noqa: E402

# The classic (non-partitionable) threefry: the same seeds give the same numbers, and XLA:CPU
# compiles each random draw in ~0.4 s instead of ~2.5 s (about 40 s saved per run start).
# Random draws happen per device inside shard_map, so nothing relies on partitionable keys.
jax.config.update("jax_threefry_partitionable", False)
