"""A trained generator at work: loading it from a run, colorizing a batch, the comparison grid.

Used by training (sample grids), evaluate, compare, turing and the colorize mode, so they all
restore, apply and show the generator the same way: BatchNorm's running averages, no dropout.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from colorize import color
from colorize.networks import models
from colorize.runs import bundle
from colorize.runs import checkpoint


def generator_module(config):
  """The generator as a plain flax module (no device axis): for inference."""
  generator, _ = models.create_models(config.model, config.dtype)
  return generator


def load_generator(config, source: str):
  """(generator module, its variables, step) of a run or of an exported bundle (`bundle.py`).

  `source` is a run folder (its newest checkpoint: G's parameters and batch statistics alone,
  or their moving average when the run keeps one) or a bundle folder such as the shipped
  `weights/` (its checksum checked). Placed on the first local device.
  """
  generator = generator_module(config)
  gray = jax.ShapeDtypeStruct((1, config.image_size, config.image_size, 1), jnp.float32)
  shapes = jax.eval_shape(lambda x: generator.init(jax.random.key(0), x, train=False), gray)
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device), dict(shapes))
  if bundle.is_bundle(source):
    variables, step = bundle.load_variables(source, abstract)
    return generator, jax.device_put(variables, device), step
  variables, step = checkpoint.restore_generator_variables(source, abstract)
  return generator, variables, step


@functools.partial(jax.jit, static_argnums=0)
def colorize_images(generator, generator_variables, images):
  """uint8 RGB -> uint8 RGB coloured by the generator from their lightness alone (eval mode)."""
  gray = color.uint8_rgb_to_normalized_lab(images)[..., :1]
  return color.normalized_lab_to_uint8_rgb(generator.apply(generator_variables, gray, train=False))


def gray_version(images: np.ndarray) -> np.ndarray:
  """What the generator sees, shown as RGB: the CIE lightness of `images`."""
  lab = color.rgb_to_lab(images / 255.0, np)
  lab[..., 1:] = 0.0
  return color.lab_to_uint8_rgb(lab, np)


def image_grid(columns: list, groups_per_row: int = 4) -> np.ndarray:
  """Columns of equally sized uint8 images [N, H, W, 3] -> one picture.

  Image i of every column forms a group (e.g. gray | real | generated), and the groups are
  laid out `groups_per_row` to a row, separated by a white gap.
  """
  count, height = len(columns[0]), columns[0].shape[1]
  gap = max(2, height // 16)
  groups = [np.concatenate([column[i] for column in columns], axis=1) for i in range(count)]
  groups += [np.zeros_like(groups[0])] * (-count % groups_per_row)
  padded = [np.pad(g, ((0, gap), (0, gap), (0, 0)), constant_values=255) for g in groups]
  rows = [np.concatenate(padded[i : i + groups_per_row], axis=1) for i in range(0, len(padded), groups_per_row)]
  return np.concatenate(rows, axis=0)


def comparison_grid(real: np.ndarray, *generated: np.ndarray, groups_per_row: int = 4) -> np.ndarray:
  """gray input | real | each generated column, image by image."""
  return image_grid([gray_version(real), real, *generated], groups_per_row)
