"""Input pipelines with Grain, no TensorFlow: photos -> uint8 RGB batches for this process.

Sources (`config.dataset`), each a random-access sequence of photos: a tensorflow-datasets name
(`cifar10`, `places365_small`, any tfds image dataset with an `image` feature) read through
`tfds.data_source` (ArrayRecord files, decoded to NumPy), `folder` (the user's photos under
`config.data_dir`, decoded by the colorize mode's Pillow loader) or `demo` (the colour photos
bundled in scikit-image's wheel; works offline).

The training stream is a pure function of (seed, position). Position p of the global stream is
example `p % n` of epoch `p // n`, i.e. record `permutation_e[p % n]` of a seeded permutation
drawn anew for every epoch (a global shuffle: a folder of class subfolders is mixed from the
first batch). Global batch b holds the next `batch_size` positions and each process reads its
own contiguous slice of them, so every topology (1 process x 4 devices, 2 x 2, ...) trains on
the same global batches. A gray photo (or, in a folder, one that fails to decode) is replaced
by a seeded stand-in record and counted, which keeps the positions topology-free too: a folder's
(and the demo's) usable photos are counted once at the start (cached in the run folder) and the
stand-ins are drawn from them, so a mostly-gray folder trains; a tfds dataset's are drawn from
the whole split until one is usable. The data position saved with a checkpoint is the (epoch,
index) after the last batch trained on.

Grain turns the batch numbers into batches: decoding, cropping and flipping run on worker
processes (`config.data_workers`) or threads, ahead of the train step.
"""

import collections
import concurrent.futures
import dataclasses
import difflib
import functools
import hashlib
import itertools
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from collections.abc import Sequence

import grain
import jax
import numpy as np
from absl import logging
from PIL import Image

from colorize import metrics
from colorize import photos
from colorize.run_setup import DatasetUnavailableError
from colorize.run_setup import MissingDataFolder

IMAGE_EXTENSIONS = photos.PHOTO_EXTENSIONS  # Training reads what the colorize mode reads.
_MAX_STAND_INS = 64  # Tries to find a colour photo in place of a gray or broken one.
MIN_USABLE_SHARE = 0.01  # A folder with fewer usable (colour, readable) photos is refused at the start.
USABLE_CACHE = "usable_photos.json"  # In the run folder: which training photos are usable, by file.

# Every random stream of the training data has a tag of its own: NumPy pads seed lists with
# zeros, so [seed, epoch] and [seed, epoch, 0] would be one and the same stream.
PERMUTATION_STREAM, CROP_STREAM, STAND_IN_STREAM = 1, 2, 3


def data_rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
  """The generator of one random stream of the training data, e.g. (seed, CROP_STREAM, epoch, index)."""
  return np.random.default_rng([seed, stream, *keys])


_EVAL_DECODE_CHUNK = 64  # Eval photos decoded at a time, on threads.

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


@dataclasses.dataclass(frozen=True)
class DataPosition:
  """Where the training stream stands: `index` examples of epoch `epoch` are consumed."""

  epoch: int = 0
  index: int = 0

  def global_position(self, epoch_size: int) -> int:
    return self.epoch * epoch_size + self.index


# ----------------------------------------------------------------------------- sources


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


# ----------------------------------------------------------------------------- preprocessing


def is_gray(image: np.ndarray, tolerance: int) -> bool:
  """True when no pixel's channels differ by more than `tolerance` (uint8 units)."""
  red, green, blue = image[..., 0], image[..., 1], image[..., 2]  # Elementwise: 30x faster than max(axis=-1).
  spread = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
  return not (spread > tolerance).any()


def colorfulness(image: np.ndarray) -> float:
  """`metrics.colorfulness` of a uint8 RGB photo, on every 4th pixel (fast, close)."""
  return float(metrics.colorfulness(image[::4, ::4].astype(np.float32), np))


def too_gray_to_learn_from(image: np.ndarray, tolerance: int, min_colorfulness: float) -> bool:
  """Pure gray (no channel spread over `tolerance`), or less colourful than `min_colorfulness`."""
  return is_gray(image, tolerance) or (min_colorfulness > 0 and colorfulness(image) < min_colorfulness)


def resize_square(crop: np.ndarray, size: int) -> np.ndarray:
  if crop.shape[0] == size:
    return crop
  return np.asarray(Image.fromarray(crop).resize((size, size), Image.BILINEAR))  # Antialiased when shrinking.


def random_square_crop(image: np.ndarray, size: int, min_fraction: float, rng: np.random.Generator) -> np.ndarray:
  """A random square covering [min_fraction, 1] of the short side, resized to size, maybe flipped."""
  height, width = image.shape[:2]
  short = min(height, width)
  fraction, top_draw, left_draw, flip = rng.random(4)
  side = int(np.clip(round((min_fraction + (1 - min_fraction) * fraction) * short), 1, short))
  top, left = int(top_draw * (height - side + 1)), int(left_draw * (width - side + 1))
  crop = resize_square(image[top : top + side, left : left + side], size)
  return crop[:, ::-1] if flip < 0.5 else crop


def center_square_crop(image: np.ndarray, size: int) -> np.ndarray:
  height, width = image.shape[:2]
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  return resize_square(image[top : top + side, left : left + side], size)


# ----------------------------------------------------------------------------- usable photos


@dataclasses.dataclass(frozen=True)
class TrainingPhotos:
  """The training split: every record, and the indices of those training can learn from."""

  records: Sequence  # Random-access photos: uint8 RGB, or None for a file that fails to decode.
  usable: np.ndarray | None  # Sorted indices of the readable, colourful records; None: unknown (tfds).


def learnable(photo: np.ndarray | None, gray_tolerance: int, min_colorfulness: float) -> bool:
  """Whether training can learn colour from `photo`: it decoded and is not (near) gray."""
  return photo is not None and not too_gray_to_learn_from(photo, gray_tolerance, min_colorfulness)


def _file_key(path: str) -> list:
  stat = os.stat(path)
  return [stat.st_size, stat.st_mtime_ns]


def _read_cache(path: str | None, rule: dict) -> dict:
  """{photo path: [size, mtime, kind]} of an earlier count under the same gray rule, else {}."""
  try:
    with open(path) as f:
      cached = json.load(f)
    entries = cached["photos"] if cached.get("rule") == rule else {}
    kinds = ("usable", "gray", "unreadable")
    return {p: e for p, e in entries.items() if isinstance(e, list) and len(e) == 3 and e[2] in kinds}
  except (TypeError, OSError, ValueError, KeyError, AttributeError):
    return {}  # No run folder, no cache yet, or a damaged one: count afresh.


def _write_cache(path: str | None, rule: dict, entries: dict) -> None:
  if path is None or jax.process_index() != 0:
    return
  os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
  temporary = f"{path}.tmp"
  with open(temporary, "w") as f:
    json.dump({"rule": rule, "photos": entries}, f)
  os.replace(temporary, path)  # Never a half-written cache.


def photo_kind(photo: np.ndarray | None, gray_tolerance: int, min_colorfulness: float) -> str:
  """'usable', 'gray' (or nearly so) or 'unreadable' (it failed to decode)."""
  if photo is None:
    return "unreadable"
  return "usable" if learnable(photo, gray_tolerance, min_colorfulness) else "gray"


def count_photo_files(files: "PhotoFiles", config, cache_path: str | None = None) -> list:
  """The kind (`photo_kind`) of every file, each photo decoded once per change: the answers are
  kept in `cache_path` by path, size and modification time."""
  rule = {"gray_tolerance": config.gray_tolerance, "min_colorfulness": config.min_colorfulness}
  cached = _read_cache(cache_path, rule)
  keys = [_file_key(path) for path in files.paths]
  known = [cached.get(path, [None, None, None])[:2] == key for path, key in zip(files.paths, keys, strict=True)]
  todo = [i for i, hit in enumerate(known) if not hit]
  kind_of = functools.partial(photo_kind, **rule)
  counted, logged = {}, time.monotonic()
  with concurrent.futures.ThreadPoolExecutor(4) as pool:  # Pillow decodes without holding the GIL.
    for done, (i, kind) in enumerate(zip(todo, pool.map(lambda i: kind_of(files[i]), todo), strict=True), 1):
      counted[i] = kind
      if time.monotonic() - logged > 30:  # A large folder takes minutes, once (about 1.3 ms per 256 px JPEG).
        logging.info("Counted %d of %d training photos for colour (once: the answers are kept).", done, len(todo))
        logged = time.monotonic()
  kinds = [counted[i] if i in counted else cached[path][2] for i, path in enumerate(files.paths)]
  if todo:
    entries = {path: [*key, kind] for path, key, kind in zip(files.paths, keys, kinds, strict=True)}
    _write_cache(cache_path, rule, entries)
  return kinds


def training_photos(config, cache_dir: str | None = None) -> TrainingPhotos:
  """The training split and its usable records; refuses a folder with too few usable photos.

  A folder's photos (and the demo's) are decoded once to be counted, and the answers kept in
  `cache_dir/usable_photos.json` (the run folder) for the next start. A tfds split is checked
  as photos are drawn: counting a million records would take longer than training on them.
  """
  records = photo_source(config, "train")
  if isinstance(records, PhotoFiles):
    cache_path = os.path.join(cache_dir, USABLE_CACHE) if cache_dir else None
    kinds = count_photo_files(records, config, cache_path) + ["unreadable"] * records.unreadable
  elif isinstance(records, list):
    kinds = [photo_kind(photo, config.gray_tolerance, config.min_colorfulness) for photo in records]
  else:
    return TrainingPhotos(records, None)
  usable = np.flatnonzero([kind == "usable" for kind in kinds[: len(records)]])
  if len(usable) < max(1, MIN_USABLE_SHARE * len(kinds)):
    raise DatasetUnavailableError(
      f"config.data_dir={config.data_dir!r}: {_usable_counts(kinds)}; at least {MIN_USABLE_SHARE:.0%} must be "
      "colour photos to learn from: point --config.data_dir at colour photos (black-and-white ones are for "
      "--mode=colorize)."
    )
  logging.info("Training photos: %s.", _usable_counts(kinds))  # Also when all are usable: the count is news.
  return TrainingPhotos(records, usable)


def _usable_counts(kinds: list) -> str:
  """E.g. '63 of 630 training photos are usable (560 gray or nearly so, 7 unreadable)'."""
  count = collections.Counter(kinds)
  return (
    f"{count['usable']:,} of {len(kinds):,} training photos are usable ({count['gray']:,} gray or nearly so, "
    f"{count['unreadable']:,} unreadable)"
  )


# ----------------------------------------------------------------------------- training stream


class EpochOrder:
  """The order of every epoch: a seeded permutation of all records, drawn anew for each epoch."""

  def __init__(self, seed: int, size: int):
    self.seed, self.size = seed, size
    self._cached = (None, None)  # (epoch, permutation): the last epoch's

  def __call__(self, epoch: int) -> np.ndarray:
    cached_epoch, order = self._cached  # Read once: another decoding thread may replace it meanwhile.
    if cached_epoch != epoch:
      order = data_rng(self.seed, PERMUTATION_STREAM, epoch).permutation(self.size)
      self._cached = (epoch, order)
    return order


class ColourPhotos:
  """Records -> photos to learn from: a gray (or broken) record gives way to a seeded stand-in."""

  def __init__(self, photos: TrainingPhotos, config):
    self.records, self.usable, self.seed = photos.records, photos.usable, config.seed
    self.gray_tolerance, self.min_colorfulness = config.gray_tolerance, config.min_colorfulness
    self.is_usable = None
    if self.usable is not None:
      self.is_usable = np.zeros(len(self.records), bool)
      self.is_usable[self.usable] = True

  def __call__(self, record: int, epoch: int, index: int) -> tuple:
    """(photo, stand-ins used) for `record`, at place `index` of `epoch` (which seeds a stand-in).

    Stand-ins are drawn from the usable records when they are known (then the first draw
    serves), else from all of them.
    """
    if self.is_usable is None or self.is_usable[record]:  # Records known to be unusable are not decoded.
      photo = self.records[record]
      if learnable(photo, self.gray_tolerance, self.min_colorfulness):
        return photo, 0
    draws = data_rng(self.seed, STAND_IN_STREAM, epoch, index)
    candidates = self.usable if self.usable is not None else np.arange(len(self.records))
    for attempt in range(1, _MAX_STAND_INS + 1):
      photo = self.records[int(candidates[draws.integers(len(candidates))])]
      if learnable(photo, self.gray_tolerance, self.min_colorfulness):
        return photo, attempt
    raise DatasetUnavailableError(
      f"{_MAX_STAND_INS} photos drawn in a row as stand-ins for a gray one were gray or unreadable: too few "
      "training photos are in colour (config.gray_tolerance and config.min_colorfulness decide what is gray)."
    )


def training_crop(photo: np.ndarray, config, epoch: int, index: int) -> np.ndarray:
  """The random square crop (and flip) of the example at place `index` of `epoch`."""
  rng = data_rng(config.seed, CROP_STREAM, epoch, index)
  return random_square_crop(photo, config.image_size, config.min_crop_fraction, rng)


def batch_places(first: int, count: int, epoch_size: int) -> list:
  """The (epoch, index) of global stream positions first, first + 1, ..., first + count - 1."""
  return [divmod(position, epoch_size) for position in range(first, first + count)]


class TrainBatchMaker:
  """Batch number j (counted from `start`) -> this process's slice of global batch j.

  Picklable, so Grain can run it on worker processes; every call is a pure function of its
  arguments, so any worker may make any batch.
  """

  def __init__(
    self, photos: TrainingPhotos, config, start: int, global_batch: int, process_index: int, process_count: int
  ):
    self.config, self.start, self.global_batch = config, start, global_batch
    self.local_batch = global_batch // process_count
    self.offset = process_index * self.local_batch
    self.epoch_size = len(photos.records)
    self.permutation = EpochOrder(config.seed, self.epoch_size)
    self.colour_photo = ColourPhotos(photos, config)

  def __call__(self, batch_number: int) -> dict:
    first = self.start + batch_number * self.global_batch
    images, stand_ins = [], 0
    for epoch, index in batch_places(first + self.offset, self.local_batch, self.epoch_size):
      photo, used = self.colour_photo(int(self.permutation(epoch)[index]), epoch, index)
      stand_ins += used
      images.append(training_crop(photo, self.config, epoch, index))
    epoch_after, index_after = divmod(first + self.global_batch, self.epoch_size)  # For the checkpoint.
    return {
      "image": np.stack(images),
      "gray_skipped": np.int64(stand_ins),
      "epoch": np.int64(epoch_after),
      "index": np.int64(index_after),
    }


def default_workers() -> int:
  """Worker processes for decoding: all but two cores, at least two (measured on 2 cores:
  2 processes make 1.65x the images/s of threads at 64 px), none on a single core."""
  cores = os.cpu_count() or 1
  return 0 if cores < 2 else min(max(2, cores - 2), 16)


def train_batches(
  config, start: DataPosition = DataPosition(), workers: int | None = None, photos: TrainingPhotos | None = None
) -> Iterator[dict]:
  """Endless batches {'image': uint8 [b, S, S, 3], 'gray_skipped', 'epoch', 'index'} from `start` on.

  `b` is this process's share of `config.batch_size`; (`epoch`, `index`) is the data position
  after the batch, to checkpoint; `gray_skipped` counts the gray (or broken) photos replaced.
  `photos` is the training split (`training_photos`), opened here when not given.
  """
  photos = training_photos(config) if photos is None else photos
  workers = config.data_workers if workers is None else workers
  workers = default_workers() if workers < 0 else workers
  maker = TrainBatchMaker(
    photos,
    config,
    start.global_position(len(photos.records)),
    config.batch_size,
    jax.process_index(),
    jax.process_count(),
  )
  batches = grain.MapDataset.range(0, 2**62).map(maker)
  if workers == 0:  # Threads: Pillow decodes and resizes without holding the GIL.
    return iter(batches.to_iter_dataset(grain.ReadOptions(num_threads=4, prefetch_buffer_size=8)))
  read = grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)
  return iter(batches.to_iter_dataset(read).mp_prefetch(grain.MultiprocessingOptions(num_workers=workers)))


def first_training_images(config, count: int, photos: TrainingPhotos | None = None) -> np.ndarray:
  """This process's rows of the first global batches holding at least `count` training images, uint8.

  The seeded order's first batches, whatever a run's resume point: for statistics of the
  training data (class-rebalancing weights, the classic colorizers' tables).
  """
  # Larger batches read the same first images of the stream, in fewer calls.
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.batch_size *= max(1, 64 // config.batch_size)
  batches = train_batches(config, DataPosition(), workers=0, photos=photos)
  return np.concatenate([next(batches)["image"] for _ in range(-(-count // config.batch_size))])


def position_after(batch) -> DataPosition:
  """The data position right after `batch` (a batch from `train_batches`)."""
  return DataPosition(int(batch["epoch"]), int(batch["index"]))


# ----------------------------------------------------------------------------- evaluation


def _in_chunks(count: int, size: int) -> Iterator[range]:
  for start in range(0, count, size):
    yield range(start, min(start + size, count))


@dataclasses.dataclass
class EvalData:
  """The fixed validation subset: the first non-gray photos of the eval split, centre-cropped.

  `num_images` -1 takes the whole split. Every process sees the same photos; `batches` gives
  each process its contiguous rows of every global batch, padded, with `mask` 1 for real
  photos and 0 for padding.
  """

  config: object
  num_images: int
  counted: bool = False  # Whether the first full pass has told how many photos it found.

  def images(self) -> Iterator[np.ndarray]:
    """The photos, in order, as uint8 [S, S, 3]; decoded a chunk at a time on threads."""
    source = photo_source(self.config, "eval")
    wanted = len(source) if self.num_images < 0 else self.num_images
    found = skipped = 0
    if wanted == 0:
      return
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
      for chunk in _in_chunks(len(source), _EVAL_DECODE_CHUNK):
        for photo in pool.map(source.__getitem__, chunk):
          if photo is None or is_gray(photo, self.config.gray_tolerance):
            skipped += 1
            continue
          yield center_square_crop(photo, self.config.image_size)
          found += 1
          if found == wanted:
            self.tell_count(found, skipped, len(source))
            return
    self.tell_count(found, skipped, len(source))

  def tell_count(self, found: int, skipped: int, total: int) -> None:
    """Logs, once, how many validation photos there are; warns when fewer than asked for."""
    if self.counted:
      return
    self.counted = True
    read = f"{found} of the split's {total} photos read ({skipped} gray or unreadable skipped)"
    if 0 <= self.num_images and found < self.num_images:
      logging.warning("Validating on %d photos, not the %d asked for: %s.", found, self.num_images, read)
    else:
      logging.info("Validating on %d photos: %s.", found, read)

  def batches(self) -> Iterator[dict]:
    global_batch = self.config.batch_size
    local = global_batch // jax.process_count()
    rows = slice(jax.process_index() * local, (jax.process_index() + 1) * local)
    pending = []
    for image in self.images():
      pending.append(image)
      if len(pending) == global_batch:
        yield _padded(pending, global_batch, rows)
        pending = []
    if pending:
      yield _padded(pending, global_batch, rows)


def _padded(images: list, global_batch: int, rows: slice) -> dict:
  images = np.stack(images)
  missing = global_batch - len(images)
  mask = np.concatenate([np.ones(len(images), np.float32), np.zeros(missing, np.float32)])
  images = np.concatenate([images, np.zeros((missing, *images.shape[1:]), np.uint8)])
  return {"image": images[rows], "mask": mask[rows]}


def eval_dataset(config, num_images: int | None = None) -> EvalData:
  """The validation subset: `config.num_eval_images` photos unless `num_images` says otherwise."""
  return EvalData(config, config.num_eval_images if num_images is None else num_images)


def first_images(eval_data: EvalData, count: int) -> np.ndarray:
  """The first `count` photos of an `EvalData`, as uint8 [N, S, S, 3]."""
  return np.stack(list(itertools.islice(eval_data.images(), count)))


def validation_images(config, count: int) -> np.ndarray:
  """The first `count` photos of the fixed validation subset, as uint8 [N, S, S, 3]."""
  return first_images(eval_dataset(config, num_images=count), count)
