"""Colours photos with an exported generator.onnx, at full resolution: NumPy, Pillow and onnxruntime only.

    pip install numpy pillow onnxruntime
    python colorize_onnx.py photo.jpg coloured.png [--model=generator.onnx]
    python colorize_onnx.py photos/ coloured/ [--model=generator.onnx]   # every photo of a folder, as PNGs

The steps are those of `python main.py --mode=colorize` (which `python main.py --mode=export
--format=onnx` copies this script beside): the photo's CIE lightness L* is resized so its short
side is the model's size (the long side a multiple of its stride), the model predicts a*,b* there,
they are resized back to the photo's size and joined with its own L*. Left out: colour hints (a
model trained with hints gets none: its automatic colours), alpha, ICC profiles and 16-bit depth.

No file is replaced. A photo that cannot be read is one `FAILED path: reason` line on stderr and
the others go on (exit status 1); a wrong argument, model or export.json is one error line (2).
"""

import argparse
import json
import os
import sys

import numpy as np
import onnxruntime
from PIL import Image
from PIL import ImageOps

# The only decoders a file may reach, whatever its name: raster photo formats Pillow reads itself,
# never EPS/PS/PDF (Pillow renders those by running Ghostscript).
PHOTO_FORMATS = ["JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF"]
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")
OUTPUT_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


class BadInput(Exception):
  """A photo, model or export.json that cannot be used; the message says why in a few words."""


def fail(message: str):
  print(f"colorize_onnx.py: error: {message}", file=sys.stderr)
  sys.exit(2)


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
  try:
    ab = session.run(["ab"], feeds)[0][0]
  except Exception as error:  # onnxruntime's own classes: a model that does not fit its export.json.
    raise BadInput(f"the model cannot run on it ({str(error).splitlines()[0]})") from None
  ab_full = np.stack([resize(ab[..., i], *plane.shape) for i in range(2)], axis=-1)
  return lab_to_rgb(np.concatenate([plane[..., None], ab_full], axis=-1))


def read_photo(path: str) -> np.ndarray:
  """The first frame of a photo, upright (EXIF), as uint8 RGB [H, W, 3]; BadInput says why not."""
  try:
    with Image.open(path, formats=PHOTO_FORMATS) as image:
      return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
  except Image.UnidentifiedImageError:
    raise BadInput(f"not a photo in a format read here ({', '.join(PHOTO_FORMATS)})") from None
  except Image.DecompressionBombError as error:
    raise BadInput(f"too large ({error})") from None
  except FileNotFoundError:
    raise BadInput("does not exist") from None
  except PermissionError:
    raise BadInput("cannot be read: permission denied") from None
  except (OSError, SyntaxError, ValueError) as error:  # Pillow's ways of saying truncated or corrupt.
    raise BadInput(f"truncated or corrupt image ({error})") from None


def load_model(model: str) -> tuple:
  """(onnxruntime session, short side, multiple) of `model` and the export.json beside it; BadInput
  names the file and the fix."""
  facts_path = os.path.join(os.path.dirname(os.path.abspath(model)), "export.json")
  if not os.path.isfile(model):
    raise BadInput(f"--model={model} is not a file: pass the generator.onnx that --mode=export --format=onnx wrote")
  if not os.path.isfile(facts_path):
    raise BadInput(f"{facts_path} is missing: keep the export.json written beside {model}")
  try:
    with open(facts_path) as f:
      facts = json.load(f)
    short_side, multiple = int(facts["short_side"]), int(facts["multiple"])
  except (OSError, ValueError, TypeError, KeyError) as error:
    reason = f"missing {error}" if isinstance(error, KeyError) else str(error).splitlines()[0]
    raise BadInput(f"{facts_path} cannot be read ({reason}): keep the export.json written beside {model}") from None
  try:
    session = onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])
  except Exception as error:  # onnxruntime's own exception classes, for any unreadable file.
    reason = str(error).splitlines()[0]
    raise BadInput(f"--model={model} cannot be loaded by onnxruntime ({reason}): export the generator again") from None
  return session, short_side, multiple


def save_new(rgb: np.ndarray, path: str) -> None:
  """Writes a new file, in the format its extension names: never replaces one."""
  image_format = Image.registered_extensions()[os.path.splitext(path)[1].lower()]
  try:
    f = open(path, "xb")  # "x": fails if the file appeared since it was checked.
  except FileExistsError:
    raise BadInput(f"{path} exists: nothing is replaced") from None
  try:
    with f:
      Image.fromarray(rgb).save(f, format=image_format)
  except BaseException:
    os.remove(path)  # No half-written output left behind.
    raise


def jobs_of(photo: str, output: str) -> list:
  """(photo, output path) pairs: the photo itself, or each photo of a folder as a PNG in `output`."""
  if not os.path.exists(photo):
    fail(f"{photo} does not exist: pass a photo or a folder of photos.")
  if not os.path.isdir(photo):
    if os.path.exists(output):
      fail(f"{output} exists: name a new file (nothing is replaced).")
    if not output.lower().endswith(OUTPUT_EXTENSIONS):
      fail(f"{output} is not a photo file name: end it with one of {', '.join(OUTPUT_EXTENSIONS)}.")
    if not os.path.isdir(os.path.dirname(os.path.abspath(output))):
      fail(f"the folder of {output} does not exist: make it first, or name a file in another folder.")
    return [(photo, output)]
  names = sorted(n for n in os.listdir(photo) if n.lower().endswith(PHOTO_EXTENSIONS))
  names = [n for n in names if os.path.isfile(os.path.join(photo, n))]
  if not names:
    fail(f"{photo} holds no photos ({', '.join(PHOTO_EXTENSIONS)}): pass a folder of photos.")
  if os.path.exists(output) and not os.path.isdir(output):
    fail(f"{output} is a file: for a folder of photos name a folder (new, or one to add to).")
  stems = [os.path.splitext(n)[0] for n in names]
  # photo.jpg and photo.png keep their extension in their outputs, so neither replaces the other.
  return [
    (os.path.join(photo, n), os.path.join(output, (n if stems.count(stem) > 1 else stem) + ".png"))
    for n, stem in zip(names, stems, strict=True)
  ]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("photo", help="a photo, or a folder of photos")
  parser.add_argument("output", help="a new photo file (a folder, for a folder of photos)")
  parser.add_argument("--model", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "generator.onnx"))
  args = parser.parse_args()
  jobs = jobs_of(args.photo, args.output)
  try:
    session, short_side, multiple = load_model(args.model)
  except BadInput as error:
    fail(str(error))
  if os.path.isdir(args.photo):
    try:
      os.makedirs(args.output, exist_ok=True)
    except OSError as error:
      fail(f"cannot make the folder {args.output} ({error.strerror}): name a folder that can be written.")
  failed = 0
  for photo, output in jobs:
    try:
      if os.path.exists(output):  # Checked before the work; save_new checks again.
        raise BadInput(f"{output} exists: nothing is replaced")
      save_new(colorize(session, read_photo(photo), short_side, multiple), output)
    except (BadInput, OSError) as error:
      failed += 1
      print(f"FAILED {photo}: {error}", file=sys.stderr)
  if os.path.isdir(args.photo):
    print(f"Done: {len(jobs) - failed} coloured, {failed} failed -> {args.output}", file=sys.stderr)
  sys.exit(1 if failed else 0)


if __name__ == "__main__":
  main()
