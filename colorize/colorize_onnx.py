"""Colours photos with an exported generator.onnx, at full resolution: NumPy, Pillow and onnxruntime only.

    pip install numpy pillow onnxruntime
    python colorize_onnx.py photo.jpg coloured.png [--model=generator.onnx]

The steps are those of `python main.py --mode=colorize` (which `python main.py --mode=export
--format=onnx` copies this script beside): the photo's CIE lightness L* is resized so its short
side is the model's size (the long side a multiple of its stride), the model predicts a*,b* there,
they are resized back to the photo's size and joined with its own L*. Left out: colour hints (a
model trained with hints gets none: its automatic colours), alpha, ICC profiles and 16-bit depth.
"""

import argparse
import json
import os

import numpy as np
import onnxruntime
from PIL import Image
from PIL import ImageOps

# sRGB <-> CIE L*a*b*, D65 (scikit-image's constants).
XYZ_FROM_RGB = np.array(
  [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
D65_WHITE = np.array([0.95047, 1.0, 1.08883])


def lab_f(t):
  return np.where(t > 0.008856, np.cbrt(np.maximum(t, 0.008856)), 7.787 * t + 16.0 / 116.0)


def lightness(rgb: np.ndarray) -> np.ndarray:
  """uint8 sRGB [H, W, 3] -> L* in [0, 100], float32 [H, W]."""
  c = np.arange(256, dtype=np.float32) / 255.0
  linear = np.where(c > 0.04045, ((np.maximum(c, 0.04045) + 0.055) / 1.055) ** 2.4, c / 12.92).astype(np.float32)
  return (116.0 * lab_f(linear[rgb] @ XYZ_FROM_RGB[1].astype(np.float32)) - 16.0).astype(np.float32)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
  """L*a*b* [H, W, 3] -> uint8 sRGB (out-of-gamut colours clipped)."""
  fy = (lab[..., 0] + 16.0) / 116.0
  f = np.stack([fy + lab[..., 1] / 500.0, fy, np.maximum(fy - lab[..., 2] / 200.0, 0.0)], axis=-1)
  xyz = np.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / 7.787) * D65_WHITE.astype(np.float32)
  linear = xyz @ np.linalg.inv(XYZ_FROM_RGB).T.astype(np.float32)
  safe = np.maximum(linear, 0.0031308)
  rgb = np.where(linear > 0.0031308, 1.055 * safe ** (1 / 2.4) - 0.055, 12.92 * linear)
  return np.round(np.clip(rgb, 0.0, 1.0) * 255.0).astype(np.uint8)


def resize(plane: np.ndarray, height: int, width: int) -> np.ndarray:
  return np.asarray(Image.fromarray(plane, "F").resize((width, height), Image.BILINEAR))


def network_shape(height: int, width: int, size: int, multiple: int, max_aspect: float = 4.0):
  """Short side `size`, aspect kept (at most `max_aspect`), sides multiples of `multiple`."""
  scale = size / min(height, width)
  return tuple(
    int(max(multiple, round(min(side * scale, size * max_aspect) / multiple) * multiple)) for side in (height, width)
  )


def colorize(session: onnxruntime.InferenceSession, rgb: np.ndarray, size: int, multiple: int) -> np.ndarray:
  """uint8 RGB [H, W, 3] -> the coloured photo, uint8 RGB [H, W, 3]."""
  plane = lightness(rgb)
  height, width = network_shape(*plane.shape, size, multiple)
  feeds = {"lightness": resize(plane, height, width)[None, :, :, None]}
  if "hints" in [i.name for i in session.get_inputs()]:
    feeds["hints"] = np.zeros((1, height, width, 3), np.float32)
  ab = session.run(["ab"], feeds)[0][0]
  ab_full = np.stack([resize(ab[..., i], *plane.shape) for i in range(2)], axis=-1)
  return lab_to_rgb(np.concatenate([plane[..., None], ab_full], axis=-1))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("photo")
  parser.add_argument("output")
  parser.add_argument("--model", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "generator.onnx"))
  args = parser.parse_args()
  if os.path.exists(args.output):
    parser.error(f"{args.output} exists: name a new file (nothing is replaced).")
  with open(os.path.join(os.path.dirname(os.path.abspath(args.model)), "export.json")) as f:
    facts = json.load(f)
  session = onnxruntime.InferenceSession(args.model, providers=["CPUExecutionProvider"])
  with Image.open(args.photo) as image:
    rgb = np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
  Image.fromarray(colorize(session, rgb, facts["short_side"], facts["multiple"])).save(args.output)


if __name__ == "__main__":
  main()
