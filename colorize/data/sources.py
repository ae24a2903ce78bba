"""Where training and validation photos come from: the demo's bundled photos, a folder of your photos
(split by file-name hash), or a tfds dataset (read by Grain, downloaded only when asked)."""

import difflib
import hashlib
import os
import socket
import threading

import numpy as np
from absl import logging

from colorize.data import photos
from colorize.runs.run_setup import DatasetUnavailableError
from colorize.runs.run_setup import MissingDataFolder

IMAGE_EXTENSIONS = photos.PHOTO_EXTENSIONS  # Training reads what the colorize mode reads.


# scikit-image's bundled colour photos: chelsea and coffee are held out for validation.
DEMO_TRAIN_PHOTOS = (
  "astronaut.png",
  "motorcycle_left.png",
  "motorcycle_right.png",
  "rocket.jpg",
  "retina.jpg",
  "ihc.png",
)


DEMO_EVAL_PHOTOS = ("chelsea.png", "coffee.png")


def _skimage_data_dir() -> str:
  import skimage.data  # Imported lazily: only the demo needs it.

  return os.path.dirname(skimage.data.__file__)


def _demo_photo(name: str) -> np.ndarray:
  with photos.open_image(os.path.join(_skimage_data_dir(), name)) as image:
    return np.asarray(image.convert("RGB"))


def _demo_eval_tiles() -> list:
  """Non-overlapping square tiles (half the short side) of the held-out photos."""
  tiles = []
  for name in DEMO_EVAL_PHOTOS:
    photo = _demo_photo(name)
    side = min(photo.shape[:2]) // 2
    for top in range(0, photo.shape[0] - side + 1, side):
      for left in range(0, photo.shape[1] - side + 1, side):
        tiles.append(photo[top : top + side, left : left + side])
  return tiles


def list_image_files(root: str) -> list:
  """All image files under `root`, sorted, as paths."""
  if not os.path.isdir(root):
    raise MissingDataFolder(f"config.data_dir={root!r} is not a folder: point --config.data_dir at a folder of photos.")
  paths = []
  for folder, _, names in os.walk(root):
    paths += [os.path.join(folder, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
  return sorted(paths)


def is_validation_photo(path: str, val_fraction: float) -> bool:
  """The fixed, seed-free split of a folder without train/ and val/ subfolders.

  A photo is held out when the first 8 bytes of the SHA-256 of its file name (the name alone,
  without its folders), read as a big-endian integer over 2**64, fall below `val_fraction`. A
  photo's split therefore does not depend on the seed, on where the folder lies, nor on which
  level of it `config.data_dir` names: a run fine-tuned on a subfolder never validates on
  photos its source trained on. Photos of the same name in different subfolders share a split.
  """
  digest = hashlib.sha256(os.path.basename(path).encode()).digest()
  return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def folder_split(root: str, split: str, val_fraction: float) -> list:
  """`train/` and `val/` subfolders when present, else a fixed share of the files (see above)."""
  subfolder = os.path.join(root, "train" if split == "train" else "val")
  if os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "val")):
    paths = list_image_files(subfolder)
  else:
    want_val = split != "train"
    paths = [p for p in list_image_files(root) if is_validation_photo(p, val_fraction) == want_val]
  if not paths:
    raise DatasetUnavailableError(
      f"no {split} photos ({', '.join(IMAGE_EXTENSIONS)}) found under config.data_dir={root!r}."
    )
  return paths


def readable_photos(paths: list) -> tuple:
  """(the paths whose header Pillow can read, how many could not be); the others are named in the log."""
  good, bad = [], []
  for path in paths:
    try:
      with photos.open_image(path) as image:
        image.size  # noqa: B018 (the header is parsed on open; this just names what we checked)
      good.append(path)
    except (OSError, ValueError, SyntaxError) as error:
      bad.append(f"{path} ({type(error).__name__})")
  if bad:
    logging.warning("Skipping %d unreadable photo(s) of %d, e.g. %s", len(bad), len(paths), "; ".join(bad[:3]))
  return good, len(bad)


class PhotoFiles:
  """A user's photo files, decoded on access by the colorize mode's Pillow loader (EXIF, ICC, any mode)."""

  def __init__(self, paths: list, unreadable: int = 0):
    self.paths = paths
    self.unreadable = unreadable  # Files left out: Pillow could not read their header.

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> np.ndarray | None:
    """uint8 RGB, or None for a photo that fails to decode (it is replaced, like a gray one)."""
    try:
      return photos.load_photo(self.paths[index], "").rgb
    except photos.BadPhoto as error:
      logging.warning("Skipping %s: %s", self.paths[index], error)
      return None


class TfdsImages:
  """The `image` feature of a prepared tfds split, via `tfds.data_source` (ArrayRecord, NumPy)."""

  def __init__(self, source):
    self.source = source

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> np.ndarray:
    image = np.asarray(self.source[index]["image"])
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def _network_reachable(host: str = "storage.googleapis.com", port: int = 443, seconds: float = 1.5) -> bool:
  """Whether `host` answers within `seconds`, name resolution included: socket timeouts do not
  cover DNS, which can hang for half a minute, so the probe runs on a daemon thread that is
  abandoned when late (and does not hold up the program's exit)."""
  answered = []
  probe = threading.Thread(target=_connect, args=(host, port, seconds, answered), daemon=True)
  probe.start()
  probe.join(seconds)
  return bool(answered)


def _connect(host: str, port: int, seconds: float, answered: list) -> None:
  try:
    socket.create_connection((host, port), timeout=seconds).close()
    answered.append(True)
  except OSError:
    pass  # Unknown host, no route, refused or timed out: unreachable.


def _format_name(file_format) -> str:
  return str(getattr(file_format, "value", file_format))


def _tfds_source(config, field: str) -> TfdsImages:
  """The tfds split named by `config.<field>`, prepared in ArrayRecord, or within seconds one
  line saying how to get it."""
  import tensorflow_datasets as tfds  # Imported lazily: folders and the demo do not need it.

  name, split = config.dataset, config[field]
  try:
    builder = _quietly(tfds.builder, name, data_dir=config.data_dir or None)  # Not "variant folder ... has no info".
  except tfds.core.registered.DatasetNotFoundError:
    close = difflib.get_close_matches(name, tfds.list_builders(with_community_datasets=False), n=1)
    hint = f"did you mean {close[0]!r}?" if close else "use a tfds image dataset, 'folder' or 'demo'."
    raise DatasetUnavailableError(f"config.dataset={name!r} is not a tensorflow-datasets dataset: {hint}") from None
  root = os.path.dirname(os.path.dirname(builder.data_dir))
  build = f"`tfds build {name} --file_format=array_record --data_dir={root}`"
  if not _quietly(builder.is_prepared):
    _prepare(builder, config, build)
  formats = {_format_name(f) for f in builder.info.available_file_formats()}
  if "array_record" not in formats:
    # tfds reads a copy converted in place as its original format still: convert into a new folder.
    version = os.path.relpath(builder.data_dir, root)
    raise DatasetUnavailableError(
      f"dataset {name!r} in {builder.data_dir} is prepared as {', '.join(sorted(formats))}, which has no random "
      f"access: rebuild it with {build}, or convert a copy with `tfds convert_format "
      f"--dataset_version_dir={builder.data_dir} --out_file_format=array_record --out_dir=NEW_ROOT/{version}` "
      "and point --config.data_dir at NEW_ROOT."
    )
  if split not in builder.info.splits:
    raise DatasetUnavailableError(
      f"dataset {name!r} has no split {split!r} (config.{field}); it has {', '.join(sorted(builder.info.splits))}."
    )
  return TfdsImages(builder.as_data_source(split=split, file_format="array_record"))


def _quietly(function, *args, **kwargs):
  """`function(*args, **kwargs)` without the log's warnings (tfds warns of what the errors say)."""
  verbosity = logging.get_verbosity()
  logging.set_verbosity(logging.ERROR)
  try:
    return function(*args, **kwargs)
  finally:
    logging.set_verbosity(verbosity)


def _prepare(builder, config, build: str) -> None:
  """Downloads and prepares a missing dataset when allowed and possible, never retrying for minutes."""
  name, where = config.dataset, builder.data_dir
  how = f"run {build} on a machine with internet"
  if not config.download:
    raise DatasetUnavailableError(f"dataset {name!r} is not prepared in {where}; {how}, or set --config.download=True.")
  if not _network_reachable():
    raise DatasetUnavailableError(
      f"dataset {name!r} is not prepared in {where} and the network is unreachable; {how} "
      "and point --config.data_dir at it."
    )
  try:
    builder.download_and_prepare(file_format="array_record")
  except ImportError as error:  # tfds' own preparation code of some datasets encodes images with TensorFlow.
    raise DatasetUnavailableError(
      f"preparing dataset {name!r} needs a package that is not installed ({error}): `pip install tensorflow-cpu` "
      f"for the preparation only, or {how}."
    ) from None
  except (OSError, RuntimeError, ValueError) as error:  # A download cut off, a full disk, a server's refusal.
    first_line = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
    raise DatasetUnavailableError(
      f"preparing dataset {name!r} in {where} failed ({first_line}); rerun to resume it, or {how}."
    ) from None


def photo_source(config, split: str):
  """Every photo of `split` ('train' or 'eval') as a random-access sequence of uint8 RGB arrays
  (a list for the demo's photos, held in memory)."""
  if config.dataset == "demo":
    return [_demo_photo(n) for n in DEMO_TRAIN_PHOTOS] if split == "train" else _demo_eval_tiles()
  if config.dataset == "folder":
    return PhotoFiles(*readable_photos(folder_split(config.data_dir, split, config.folder_val_fraction)))
  if config.dataset == "tfds":
    raise DatasetUnavailableError("config.dataset must name the tfds dataset itself, e.g. 'cifar10'.")
  return _tfds_source(config, "train_split" if split == "train" else "eval_split")
