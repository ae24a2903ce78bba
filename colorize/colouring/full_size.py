"""Full-resolution colour: a photo's lightness, the generator's input size and planes, its small a,b
resized to the photo and joined with the photo's own lightness (in row chunks: bounded memory)."""

import numpy as np
from PIL import Image

from colorize import color

_ROWS_PER_CHUNK = 256  # Full-resolution colour maths runs in row chunks: bounded memory.


def lightness(rgb: np.ndarray) -> np.ndarray:
  """CIE L* in [0, 100] of uint8 sRGB [H, W, 3], as float32 [H, W]; row chunks bound the memory."""
  out = np.empty(rgb.shape[:2], np.float32)
  for top in range(0, rgb.shape[0], _ROWS_PER_CHUNK):
    out[top : top + _ROWS_PER_CHUNK] = color.lightness(rgb[top : top + _ROWS_PER_CHUNK])
  return out


def lab_to_uint8(lightness_plane: np.ndarray, ab: np.ndarray) -> np.ndarray:
  """Full-resolution L [H, W] and a,b [H, W, 2] -> uint8 sRGB [H, W, 3], in row chunks."""
  out = np.empty((*lightness_plane.shape, 3), np.uint8)
  for top in range(0, lightness_plane.shape[0], _ROWS_PER_CHUNK):
    rows = slice(top, top + _ROWS_PER_CHUNK)
    lab = np.concatenate([lightness_plane[rows, :, None], ab[rows]], axis=-1)
    out[rows] = color.lab_to_uint8_rgb(lab, np)
  return out


def resize_plane(plane: np.ndarray, height: int, width: int) -> np.ndarray:
  """Bilinear resize of a float32 plane (antialiased when shrinking)."""
  return np.asarray(Image.fromarray(plane, "F").resize((width, height), Image.BILINEAR))


def network_shape(height: int, width: int, size: int, multiple: int, max_aspect: float = 4.0):
  """The generator's input: short side `size`, aspect kept (at most `max_aspect`), multiples of `multiple`."""
  scale = size / min(height, width)

  def side(length):
    return int(max(multiple, round(min(length * scale, size * max_aspect) / multiple) * multiple))

  return side(height), side(width)


def network_planes(planes: list, size: int, multiple: int) -> np.ndarray:
  """Full-size L planes of one shape -> the generator's input batch [B, h, w] (`network_shape`)."""
  height, width = network_shape(*planes[0].shape, size, multiple)
  return np.stack([resize_plane(plane, height, width) for plane in planes])


def full_size_colour(plane: np.ndarray, ab_small: np.ndarray) -> np.ndarray:
  """The photo's own L [H, W] with the network's a,b [h, w, 2] resized to it -> uint8 RGB [H, W, 3]."""
  full_h, full_w = plane.shape
  ab_full = np.stack([resize_plane(ab_small[..., i], full_h, full_w) for i in range(2)], axis=-1)
  return lab_to_uint8(plane, ab_full)
