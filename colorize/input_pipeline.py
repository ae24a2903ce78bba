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
the same global batches. A pure-gray photo (or, in a folder, one that fails to decode) is
replaced by a seeded stand-in record and counted, which keeps the positions topology-free too.
The data position saved with a checkpoint is the (epoch, index) after the last batch trained on.

Grain turns the batch numbers into batches: decoding, cropping and flipping run on worker
processes (`config.data_workers`) or threads, ahead of the train step.
"""

import concurrent.futures
import dataclasses
import hashlib
import itertools
import os
import socket
from collections.abc import Iterator

import grain
import jax
import numpy as np
from absl import logging
from PIL import Image

from colorize import photos

IMAGE_EXTENSIONS = photos.PHOTO_EXTENSIONS  # Training reads what the colorize mode reads.
_MAX_STAND_INS = 64  # Tries to find a colour photo in place of a gray or broken one.
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


class DatasetUnavailableError(RuntimeError):
  """The dataset is not on disk and cannot be fetched."""


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
  return np.asarray(Image.open(os.path.join(_skimage_data_dir(), name)).convert("RGB"))


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
    raise DatasetUnavailableError(
      f"config.data_dir={root!r} is not a folder: point --config.data_dir at a folder of photos."
    )
  paths = []
  for folder, _, names in os.walk(root):
    paths += [os.path.join(folder, n) for n in names if n.lower().endswith(IMAGE_EXTENSIONS)]
  return sorted(paths)


def is_validation_photo(relative_path: str, val_fraction: float) -> bool:
  """The fixed, seed-free split of a folder without train/ and val/ subfolders.

  A photo is held out when the first 8 bytes of the SHA-256 of its path relative to
  `config.data_dir` (with '/' separators), read as a big-endian integer over 2**64, fall below
  `val_fraction`. Runs with any seed therefore share one validation set, and a fine-tuned run
  never validates on photos its source trained on.
  """
  digest = hashlib.sha256(relative_path.replace(os.sep, "/").encode()).digest()
  return int.from_bytes(digest[:8], "big") / 2**64 < val_fraction


def folder_split(root: str, split: str, val_fraction: float) -> list:
  """`train/` and `val/` subfolders when present, else a fixed share of the files (see above)."""
  subfolder = os.path.join(root, "train" if split == "train" else "val")
  if os.path.isdir(os.path.join(root, "train")) and os.path.isdir(os.path.join(root, "val")):
    paths = list_image_files(subfolder)
  else:
    want_val = split != "train"
    paths = [
      p for p in list_image_files(root) if is_validation_photo(os.path.relpath(p, root), val_fraction) == want_val
    ]
  if not paths:
    raise DatasetUnavailableError(
      f"no {split} photos ({', '.join(IMAGE_EXTENSIONS)}) found under config.data_dir={root!r}."
    )
  return paths


def readable_photos(paths: list) -> list:
  """The paths whose header Pillow can read; the others are counted and named in the log."""
  good, bad = [], []
  for path in paths:
    try:
      with Image.open(path) as image:
        image.size  # noqa: B018 (the header is parsed on open; this just names what we checked)
      good.append(path)
    except (OSError, ValueError, SyntaxError) as error:
      bad.append(f"{path} ({type(error).__name__})")
  if bad:
    logging.warning("Skipping %d unreadable photo(s) of %d, e.g. %s", len(bad), len(paths), "; ".join(bad[:3]))
  return good


class PhotoFiles:
  """A user's photo files, decoded on access by the colorize mode's Pillow loader (EXIF, ICC, any mode)."""

  def __init__(self, paths: list):
    self.paths = paths

  def __len__(self) -> int:
    return len(self.paths)

  def __getitem__(self, index: int) -> np.ndarray | None:
    """uint8 RGB, or None for a photo that fails to decode (it is replaced, like a gray one)."""
    try:
      return photos.load_photo(self.paths[index], "", max_pixels=200_000_000).rgb
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


def _network_reachable(host: str = "storage.googleapis.com", port: int = 443) -> bool:
  try:
    socket.create_connection((host, port), timeout=3).close()
    return True
  except OSError:
    return False


def _format_name(file_format) -> str:
  return str(getattr(file_format, "value", file_format))


def _tfds_source(config, field: str) -> TfdsImages:
  """The tfds split named by `config.<field>`, prepared in ArrayRecord, or within seconds one
  line saying how to get it."""
  import tensorflow_datasets as tfds  # Imported lazily: folders and the demo do not need it.

  name, split = config.dataset, config[field]
  builder = tfds.builder(name, data_dir=config.data_dir or None)
  root = os.path.dirname(os.path.dirname(builder.data_dir))
  build = f"`tfds build {name} --file_format=array_record --data_dir={root}`"
  if not builder.is_prepared():
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


def photo_source(config, split: str):
  """Every photo of `split` ('train' or 'eval') as a random-access sequence of uint8 RGB arrays
  (a list for the demo's photos, held in memory)."""
  if config.dataset == "demo":
    return [_demo_photo(n) for n in DEMO_TRAIN_PHOTOS] if split == "train" else _demo_eval_tiles()
  if config.dataset == "folder":
    return PhotoFiles(readable_photos(folder_split(config.data_dir, split, config.folder_val_fraction)))
  if config.dataset == "tfds":
    raise ValueError("config.dataset must name the tfds dataset itself, e.g. 'cifar10'.")
  return _tfds_source(config, "train_split" if split == "train" else "eval_split")


# ----------------------------------------------------------------------------- preprocessing


def is_gray(image: np.ndarray, tolerance: int) -> bool:
  """True when no pixel's channels differ by more than `tolerance` (uint8 units)."""
  red, green, blue = image[..., 0], image[..., 1], image[..., 2]  # Elementwise: 30x faster than max(axis=-1).
  spread = np.maximum(np.maximum(red, green), blue) - np.minimum(np.minimum(red, green), blue)
  return not (spread > tolerance).any()


def colorfulness(image: np.ndarray) -> float:
  """Hasler & Suesstrunk's colourfulness of a uint8 RGB photo, on every 4th pixel (fast, close)."""
  rgb = image[::4, ::4].astype(np.float32)
  rg, yb = rgb[..., 0] - rgb[..., 1], 0.5 * (rgb[..., 0] + rgb[..., 1]) - rgb[..., 2]
  return float(np.sqrt(rg.var() + yb.var()) + 0.3 * np.sqrt(rg.mean() ** 2 + yb.mean() ** 2))


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


# ----------------------------------------------------------------------------- training stream


class TrainBatchMaker:
  """Batch number j (counted from `start`) -> this process's slice of global batch j.

  Picklable, so Grain can run it on worker processes; every call is a pure function of its
  arguments, so any worker may make any batch.
  """

  def __init__(self, source, config, start: int, global_batch: int, process_index: int, process_count: int):
    self.source, self.start, self.global_batch = source, start, global_batch
    self.local_batch = global_batch // process_count
    self.offset = process_index * self.local_batch
    self.seed, self.size = config.seed, config.image_size
    self.min_crop_fraction, self.gray_tolerance = config.min_crop_fraction, config.gray_tolerance
    self.min_colorfulness = config.min_colorfulness
    self._permutation = (None, None)  # (epoch, permutation): the last epoch's, cached

  def permutation(self, epoch: int) -> np.ndarray:
    """The order of epoch `epoch`: a seeded permutation of every record (decoding threads share it)."""
    cached_epoch, order = self._permutation  # Read once: another thread may replace it meanwhile.
    if cached_epoch != epoch:
      order = np.random.default_rng([self.seed, epoch]).permutation(len(self.source))
      self._permutation = (epoch, order)
    return order

  def colour_photo(self, epoch: int, index: int):
    """(photo, stand-ins used): example `index` of `epoch`, or a seeded stand-in if (near) gray or broken."""
    record = int(self.permutation(epoch)[index])
    for attempt in range(_MAX_STAND_INS):
      photo = self.source[record]
      if photo is not None and not too_gray_to_learn_from(photo, self.gray_tolerance, self.min_colorfulness):
        return photo, attempt
      record = int(np.random.default_rng([self.seed, epoch, index, attempt + 1]).integers(len(self.source)))
    raise DatasetUnavailableError(
      f"{_MAX_STAND_INS} photos in a row were gray or unreadable: the training data holds (almost) no colour photos."
    )

  def __call__(self, batch_number: int) -> dict:
    first = self.start + batch_number * self.global_batch + self.offset
    images, stand_ins = [], 0
    for position in range(first, first + self.local_batch):
      epoch, index = divmod(position, len(self.source))
      photo, used = self.colour_photo(epoch, index)
      stand_ins += used
      rng = np.random.default_rng([self.seed, epoch, index])
      images.append(random_square_crop(photo, self.size, self.min_crop_fraction, rng))
    epoch_after, index_after = divmod(self.start + (batch_number + 1) * self.global_batch, len(self.source))
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


def train_batches(config, start: DataPosition = DataPosition(), workers: int | None = None) -> Iterator[dict]:
  """Endless batches {'image': uint8 [b, S, S, 3], 'gray_skipped', 'epoch', 'index'} from `start` on.

  `b` is this process's share of `config.batch_size`; (`epoch`, `index`) is the data position
  after the batch, to checkpoint; `gray_skipped` counts the gray (or broken) photos replaced.
  """
  source = photo_source(config, "train")
  workers = config.data_workers if workers is None else workers
  workers = default_workers() if workers < 0 else workers
  maker = TrainBatchMaker(
    source,
    config,
    start.global_position(len(source)),
    config.batch_size,
    jax.process_index(),
    jax.process_count(),
  )
  batches = grain.MapDataset.range(0, 2**62).map(maker)
  if workers == 0:  # Threads: Pillow decodes and resizes without holding the GIL.
    return iter(batches.to_iter_dataset(grain.ReadOptions(num_threads=4, prefetch_buffer_size=8)))
  read = grain.ReadOptions(num_threads=2, prefetch_buffer_size=2)
  return iter(batches.to_iter_dataset(read).mp_prefetch(grain.MultiprocessingOptions(num_workers=workers)))


def first_training_images(config, count: int) -> np.ndarray:
  """This process's rows of the first global batches holding at least `count` training images, uint8.

  The seeded order's first batches, whatever a run's resume point: for statistics of the
  training data (class-rebalancing weights, the classic colorizers' tables).
  """
  # Larger batches read the same first images of the stream, in fewer calls.
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.batch_size *= max(1, 64 // config.batch_size)
  batches = train_batches(config, DataPosition(), workers=0)
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

  def images(self) -> Iterator[np.ndarray]:
    """The photos, in order, as uint8 [S, S, 3]; decoded a chunk at a time on threads."""
    source = photo_source(self.config, "eval")
    wanted = len(source) if self.num_images < 0 else self.num_images
    found = 0
    if wanted == 0:
      return
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
      for chunk in _in_chunks(len(source), _EVAL_DECODE_CHUNK):
        for photo in pool.map(source.__getitem__, chunk):
          if photo is None or is_gray(photo, self.config.gray_tolerance):
            continue
          yield center_square_crop(photo, self.config.image_size)
          found += 1
          if found == wanted:
            return

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
