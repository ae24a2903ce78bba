"""sRGB <-> CIE L*a*b* (D65, 2 degree observer) as pure jax.numpy functions.

The constants follow scikit-image (`skimage.color.rgb2lab` / `lab2rgb`), which the tests use as
the reference. Everything is elementwise plus a 3x3 matrix, so it fuses into the train step.
The conversions take `xp=numpy` as well, for full-resolution photos on the host.
"""

import jax.numpy as jnp
import numpy as np

_XYZ_FROM_RGB = np.array(
  [
    [0.412453, 0.357580, 0.180423],
    [0.212671, 0.715160, 0.072169],
    [0.019334, 0.119193, 0.950227],
  ]
)
_RGB_FROM_XYZ = np.linalg.inv(_XYZ_FROM_RGB)
_D65_WHITE = np.array([0.95047, 1.0, 1.08883])

# The paper's normalisation of Lab into [-1, 1]: L/50 - 1, a/110, b/110.
LAB_SCALE = np.array([50.0, 110.0, 110.0])
_LAB_SHIFT = np.array([50.0, 0.0, 0.0])


def _srgb_to_linear(c, xp):
  # Clamping before the power keeps the unused branch (and its gradient) finite.
  return xp.where(c > 0.04045, ((xp.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4, c / 12.92)


def _linear_to_srgb(c, xp):
  safe = xp.maximum(c, 0.0031308)
  return xp.where(c > 0.0031308, 1.055 * safe ** (1 / 2.4) - 0.055, 12.92 * c)


def _lab_f(t, xp):
  return xp.where(t > 0.008856, xp.cbrt(xp.maximum(t, 0.008856)), 7.787 * t + 16.0 / 116.0)


def _lab_f_inverse(t, xp):
  return xp.where(t > 0.2068966, t**3, (t - 16.0 / 116.0) / 7.787)


def rgb_to_lab(rgb, xp=jnp):
  """sRGB in [0, 1], shape [..., 3] -> Lab with L in [0, 100], a and b roughly in [-128, 128]."""
  rgb = xp.asarray(rgb, xp.float32)
  xyz = _srgb_to_linear(rgb, xp) @ xp.asarray(_XYZ_FROM_RGB.T, rgb.dtype)
  fx, fy, fz = xp.moveaxis(_lab_f(xyz / xp.asarray(_D65_WHITE, rgb.dtype), xp), -1, 0)
  return xp.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], axis=-1)


def lab_to_rgb(lab, xp=jnp):
  """Lab -> sRGB in [0, 1] (out-of-gamut colours are clipped, as scikit-image does)."""
  lab = xp.asarray(lab, xp.float32)
  lightness, a, b = xp.moveaxis(lab, -1, 0)
  fy = (lightness + 16.0) / 116.0
  fx = fy + a / 500.0
  fz = xp.maximum(fy - b / 200.0, 0.0)  # scikit-image clips negative z to 0 as well
  xyz = _lab_f_inverse(xp.stack([fx, fy, fz], axis=-1), xp) * xp.asarray(_D65_WHITE, lab.dtype)
  rgb = _linear_to_srgb(xyz @ xp.asarray(_RGB_FROM_XYZ.T, lab.dtype), xp)
  return xp.clip(rgb, 0.0, 1.0)


def lab_to_uint8_rgb(lab, xp=jnp):
  """Lab -> uint8 sRGB, rounded to the nearest level: how every output of the program is made."""
  return xp.round(lab_to_rgb(lab, xp) * 255.0).astype(xp.uint8)


def normalize_lab(lab):
  """Lab -> the network's space: every channel in about [-1, 1]."""
  return (lab - _LAB_SHIFT) / LAB_SCALE


def denormalize_lab(lab_normalized):
  return lab_normalized * LAB_SCALE + _LAB_SHIFT


def normalize_lightness(lightness):
  """L in [0, 100] -> the generator's input in [-1, 1] (the L channel of `normalize_lab`)."""
  return (lightness - _LAB_SHIFT[0]) / LAB_SCALE[0]


def denormalize_lightness(gray):
  """The generator's input in [-1, 1] -> L in [0, 100]."""
  return gray * LAB_SCALE[0] + _LAB_SHIFT[0]


# sRGB -> linear for each 8-bit value, and the luminance row of RGB -> XYZ: L* of uint8 photos
# by a table lookup and a dot product.
_UINT8_TO_LINEAR = np.asarray(_srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0, np), np.float32)
_LUMINANCE = np.asarray(_XYZ_FROM_RGB[1], np.float32)


def lightness(rgb_uint8: np.ndarray) -> np.ndarray:
  """CIE L* in [0, 100] of uint8 sRGB [..., 3] as float32 [...], in NumPy (full-size photos)."""
  return 116.0 * _lab_f(_UINT8_TO_LINEAR[rgb_uint8] @ _LUMINANCE, np) - 16.0


def uint8_rgb_to_normalized_lab(images):
  """uint8 RGB [..., 3] (as the input pipeline delivers it) -> normalised Lab float32."""
  return normalize_lab(rgb_to_lab(images.astype(jnp.float32) / 255.0)).astype(jnp.float32)


def normalized_lab_to_uint8_rgb(lab_normalized):
  return lab_to_uint8_rgb(denormalize_lab(lab_normalized.astype(jnp.float32)))
