"""Photo files: finding them, decoding any format to upright sRGB, naming and saving outputs.

Shared by the colorize mode and folder training, so both read every photo the same way: EXIF
orientation, ICC profiles, alpha, palette and 16-bit modes, the first frame of an animation.
"""

import collections
import dataclasses
import glob
import io
import os
import re

import numpy as np
from PIL import Image
from PIL import ImageCms
from PIL import ImageOps

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif")
# The only decoders a file may reach, whatever its name says: raster photo formats read by Pillow
# itself. Never EPS/PS/PDF (Pillow renders those by running Ghostscript) nor other exotic plugins.
# JPEG's opener also reads phones' multi-picture JPEGs (MPO); PPM: the netpbm formats (.ppm, .pgm).
PHOTO_FORMATS = ("JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "PPM")
MAX_PIXELS = 200_000_000  # The default cap on a photo's pixels (--max_pixels): larger ones are refused.
APP_MAX_PIXELS = MAX_PIXELS // 4  # The app's default: it holds each open photo in memory (150 MB decoded).
FORMATS = {"png": ".png", "jpeg": ".jpg"}
MIN_SIDE = 8  # Smaller photos hold no colour worth predicting.


def check_max_pixels(max_pixels: int) -> None:
  """Refuses a --max_pixels that no photo could meet."""
  if max_pixels < MIN_SIDE * MIN_SIDE:
    raise ValueError(f"--max_pixels={max_pixels} is too small: photos have at least {MIN_SIDE}x{MIN_SIDE} pixels.")


class BadPhoto(Exception):
  """A photo that cannot be colorized; the message says why, in a few words."""


@dataclasses.dataclass
class Photo:
  source: str  # Input path.
  target: str  # Output path.
  rgb: np.ndarray  # uint8 [H, W, 3], sRGB, upright.
  alpha: np.ndarray | None  # uint8 [H, W] or None.
  bits: int = 8  # Bits per channel of the file (16 and 32 are reduced to 8 in `rgb`).
  hints: np.ndarray | None = None  # The user's colour points, float32 [N, 5] (`hint_points.user_points`).


# ----------------------------------------------------------------------------- inputs


def find_photos(pattern: str, recursive: bool = False, extensions: tuple = PHOTO_EXTENSIONS) -> list:
  """(path, name relative to the input root) for a file, or the files with `extensions` in a
  folder or a glob, sorted."""
  if os.path.isfile(pattern):
    return [(pattern, os.path.basename(pattern))]
  if os.path.isdir(pattern):
    root = pattern
    paths = glob.glob(
      os.path.join(glob.escape(root), "**", "*") if recursive else os.path.join(glob.escape(root), "*"),
      recursive=recursive,
    )
  else:
    root = os.path.dirname(pattern.split("*")[0].split("?")[0].split("[")[0]) or "."
    paths = glob.glob(pattern, recursive=recursive)
  photos = [p for p in paths if os.path.isfile(p) and p.lower().endswith(extensions)]
  return sorted((p, os.path.relpath(p, root)) for p in photos)


def output_paths(names: list, output_dir: str, image_format: str) -> list:
  """The output path of each input name: the name with the format's extension, under `output_dir`.

  Inputs that would share an output (photo.jpg and photo.png) keep their own extension in it
  (photo.jpg.png, photo.png.png), so no output of a run replaces another.
  """
  stems = [os.path.splitext(name)[0] for name in names]
  counts = collections.Counter(stems)
  return [
    os.path.join(output_dir, (name if counts[stem] > 1 else stem) + FORMATS[image_format])
    for name, stem in zip(names, stems, strict=True)
  ]


# ----------------------------------------------------------------------------- decoding


def _to_srgb(image: Image.Image) -> Image.Image:
  """Applies an embedded ICC profile, so the pixels are sRGB like the training data."""
  profile = image.info.get("icc_profile")
  if not profile or image.mode not in ("RGB", "RGBA", "CMYK", "L"):
    return image
  try:
    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    mode = "RGBA" if image.mode == "RGBA" else "RGB"
    return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"), outputMode=mode)
  except (ImageCms.PyCMSError, OSError, ValueError):
    return image  # A broken profile: the pixels as they are are the best guess.


def file_samples(image: Image.Image) -> tuple:
  """(bits per channel, signed) of an opened, not yet loaded image, from its decoder's raw mode
  ('RGB;16B', 'I;16B', 'I;32S'): the file's depth, whatever Pillow's mode reduces it to."""
  args = image.tile[0].args if image.tile else None
  rawmode = (args[0] if isinstance(args, tuple) else args) or image.mode
  # Channel depths: 'I;16', 'I;16B', 'I;16BS', 'I;32S', 'RGB;16B', 'RGBA;16L'. Not the pixel sizes
  # of packed modes such as 'BGR;15' or 'BGR;16' (16-bit BMP), whose channels hold 5 or 6 bits.
  if match := re.fullmatch(r"(?:I|L|LA|RGB|RGBA|RGBX|CMYK);(\d+)[BLN]?(S?)", str(rawmode)):
    return int(match.group(1)), match.group(2) == "S"
  return (32, True) if image.mode == "I" else (8, False)  # Mode 'I' without a raw depth: native int32.


def integer_range(bits: int, signed: bool) -> int:
  """The largest value of an integer sample: integer photos are scaled by their file's depth,
  never by their pixels, so a dark 32-bit photo stays dark instead of being read as 8-bit."""
  return 2 ** (bits - 1) - 1 if signed else 2**bits - 1


def _split_alpha(image: Image.Image, top: int):
  """(RGB image, alpha array or None) for any Pillow mode, integer and palette ones included;
  integer pixels are scaled from [0, `top`] to 8 bits."""
  if image.mode == "P":
    image = image.convert("RGBA" if "transparency" in image.info else "RGB")
  if image.mode in ("I;16", "I;16B", "I;16L", "I"):
    wide = np.clip(np.asarray(image).astype(np.int64), 0, top)
    image = Image.fromarray(np.round(wide.astype(np.float64) * (255.0 / top)).astype(np.uint8), "L")
  alpha = None
  if image.mode in ("RGBA", "LA", "PA"):
    alpha = np.asarray(image.getchannel("A"))
  return image.convert("RGB"), alpha


def open_image(path: str) -> Image.Image:
  """Pillow's lazy image of a file in one of `PHOTO_FORMATS` (its header read, no pixels yet);
  any other file raises `Image.UnidentifiedImageError`."""
  Image.init()  # Registers every plugin (a no-op after the first call): Pillow opens only the ones registered.
  return Image.open(path, formats=PHOTO_FORMATS)


def load_photo(path: str, target: str, max_pixels: int = MAX_PIXELS) -> Photo:
  """Decodes the first frame, upright (EXIF), in sRGB; raises BadPhoto with the reason.

  The size is checked from the header, before any pixel is decoded."""
  try:
    if os.path.getsize(path) == 0:
      raise BadPhoto("empty file")
    with open_image(path) as image:
      width, height = image.size
      if width * height > max_pixels:
        raise BadPhoto(f"image too large: {width}x{height} = {width * height:,} pixels > --max_pixels={max_pixels:,}")
      if min(width, height) < MIN_SIDE:
        raise BadPhoto(f"image too small: {width}x{height} pixels, at least {MIN_SIDE}x{MIN_SIDE} needed")
      image.seek(0)
      bits, signed = file_samples(image)  # Before load(), which drops the decoder's raw mode.
      image.load()
      image = ImageOps.exif_transpose(image)
      rgb, alpha = _split_alpha(_to_srgb(image), integer_range(bits, signed))
      return Photo(path, target, np.asarray(rgb), alpha, bits)
  except BadPhoto:
    raise
  except PermissionError:
    raise BadPhoto("cannot read the file: permission denied") from None
  except Image.DecompressionBombError:
    raise BadPhoto(f"image too large for Pillow's decompression-bomb limit (--max_pixels={max_pixels:,})") from None
  except Image.UnidentifiedImageError:
    formats = ", ".join(PHOTO_FORMATS)
    raise BadPhoto(f"not an image in a photo format ({formats}): a wrong extension or another kind of file") from None
  except (OSError, SyntaxError, ValueError) as error:
    raise BadPhoto(f"truncated or corrupt image ({error})") from None


COLOUR_SPREAD = 12  # uint8 levels between a pixel's channels: more is colour (sepia too), not JPEG noise.


def has_colour(rgb: np.ndarray) -> bool:
  """Whether more than 1% of the pixels (every 4th row and column) are visibly coloured."""
  sample = rgb[::4, ::4].astype(np.int16)
  spread = sample.max(axis=-1) - sample.min(axis=-1)
  return float(np.mean(spread > COLOUR_SPREAD)) > 0.01


def input_notes(photo: Photo) -> list:
  """What the colorize mode does to this photo that its owner may not expect."""
  notes = []
  if photo.bits > 8:
    notes.append(f"{photo.bits}-bit input, written with 8 bits per channel")
  if has_colour(photo.rgb):
    notes.append("already in colour: its colours are replaced (only its lightness is kept)")
  return notes


def save_image(array: np.ndarray, path: str, image_format: str) -> None:
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  image = Image.fromarray(array)
  if image_format == "jpeg":
    image.convert("RGB").save(path, "JPEG", quality=95)  # JPEG holds no alpha.
  else:
    image.save(path, "PNG", compress_level=1)  # Level 6 (Pillow's default) took 5x as long for 11% smaller files.
