"""Validation during training and in evaluate: the eval step's per-image sums over a dataset, averaged."""

import jax
import jax.numpy as jnp
import optax

from colorize import color
from colorize import metrics as metrics_lib
from colorize.training import steps


def evaluate_subset(eval_fn, state, mesh, eval_batches, per_image: list | None = None) -> dict:
  """Averages of the eval step's per-image sums over `eval_batches`, with the derived keys.

  `per_image`, when given, receives each batch's per-image scores (`eval_step`)."""
  totals = None
  for batch in eval_batches:
    sums = eval_fn(state, {k: steps.global_batch(mesh, v) for k, v in batch.items()})
    images = sums.pop("per_image")
    if per_image is not None:
      per_image.append(jax.device_get(images))
    totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
  totals = jax.device_get(totals)
  count = float(totals.pop("count"))
  results = metrics_lib.with_derived_metrics({name: float(value) / max(count, 1.0) for name, value in totals.items()})
  results["num_images"] = count
  return results


def _per_image_cross_entropy(logits, label: float):
  """Mean over an image's logits: one (paper) or one per patch (PatchGAN)."""
  entropy = optax.sigmoid_binary_cross_entropy(logits, jnp.full_like(logits, label))
  return entropy.reshape(entropy.shape[0], -1).mean(axis=1)


def eval_step(state: steps.TrainState, batch, *, config, generator, discriminator):
  """Validation sums over real (mask=1) images, which the caller divides by `count`, and under
  "per_image" every image's scores and mask (padding: 0), in the global batch's order."""
  real = color.uint8_rgb_to_normalized_lab(batch["image"])
  gray, mask = real[..., :1], batch["mask"]
  fake = generator.apply(state.inference_variables(), gray, train=False)
  channels = steps.predicted_channels(config)
  gray_baseline = jnp.concatenate([gray, jnp.zeros_like(real[..., 1:])], axis=-1)  # a = b = 0
  per_image = {
    "l1": jnp.abs(fake[..., channels] - real[..., channels]).mean(axis=(1, 2, 3)),
    **metrics_lib.image_metrics(fake, batch["image"]),
    **{f"gray/{k}": v for k, v in metrics_lib.image_metrics(gray_baseline, batch["image"]).items()},
  }
  if config.model.output == "lab":  # The paper scores G's own L; colorize keeps the input's: score both.
    kept_l = jnp.concatenate([gray, fake[..., 1:]], axis=-1)
    per_image |= {f"kept_l/{k}": v for k, v in metrics_lib.image_metrics(kept_l, batch["image"]).items()}
  if config.adversarial:
    real_logits = discriminator.apply(state.discriminator.variables(), gray, real, train=False)
    fake_logits = discriminator.apply(state.discriminator.variables(), gray, fake, train=False)
    per_image["d_loss_real"] = _per_image_cross_entropy(real_logits, 1.0)
    per_image["d_loss_fake"] = _per_image_cross_entropy(fake_logits, 0.0)
    per_image["g_loss_adv"] = _per_image_cross_entropy(fake_logits, 1.0)
  sums = {name: jnp.sum(value * mask) for name, value in per_image.items()}
  sums["count"] = jnp.sum(mask)
  # Every image's own scores too (a few numbers each), for the intervals of the means.
  images = jax.tree.map(_gathered, {**per_image, "mask": mask})
  return jax.lax.psum(sums, steps.AXIS) | {"per_image": images}


def _gathered(values):
  """Every device's rows [b, ...] as one replicated array [devices * b, ...], in device order: each
  device's rows placed in zeros and summed (a psum is replicated by type, unlike all_gather's)."""
  rows = values.shape[0]
  placed = jnp.zeros((jax.lax.axis_size(steps.AXIS) * rows, *values.shape[1:]), values.dtype)
  placed = jax.lax.dynamic_update_slice_in_dim(placed, values, jax.lax.axis_index(steps.AXIS) * rows, 0)
  return jax.lax.psum(placed, steps.AXIS)
