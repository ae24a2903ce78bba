"""colorize: conditional-GAN image colorization in JAX/Flax (after Nazeri et al., 2018)."""

import jax

# The classic (non-partitionable) threefry: the same seeds give the same numbers, and XLA:CPU
# compiles each random draw in ~0.4 s instead of ~2.5 s (about 40 s saved per run start).
# Random draws happen per device inside shard_map, so nothing relies on partitionable keys.
jax.config.update("jax_threefry_partitionable", False)
