"""Input pipelines with Grain, no TensorFlow: photos -> uint8 RGB batches for this process.

The photos come from a source of `sources.py` (a tfds dataset, a folder, the demo), as a
random-access sequence; which of a folder's are usable is `usable.py`'s.

The training stream is a pure function of (seed, position). Position p of the global stream is
example `p % n` of epoch `p // n`, i.e. record `permutation_e[p % n]` of a seeded permutation
drawn anew for every epoch (a global shuffle: a folder of class subfolders is mixed from the
first batch). Global batch b holds the next `batch_size` positions and each process reads its
own contiguous slice of them, so every topology (1 process x 4 devices, 2 x 2, ...) trains on
the same global batches. A gray photo (or, in a folder, one that fails to decode) is replaced
by a seeded stand-in record and counted, which keeps the positions topology-free too: a folder's
(and the demo's) usable photos are counted once at the start (`usable.py`) and the
stand-ins are drawn from them, so a mostly-gray folder trains; a tfds dataset's are drawn from
the whole split until one is usable. The data position saved with a checkpoint is the (epoch,
index) after the last batch trained on.

Grain turns the batch numbers into batches: decoding, cropping and flipping run on worker
processes (`config.data_workers`) or threads, ahead of the train step.
"""

import concurrent.futures
import dataclasses
import itertools
import os
from collections.abc import Iterator

import grain
import jax
import numpy as np
from absl import logging
from PIL import Image

from colorize.data import sources
from colorize.data import usable
from colorize.runs.run_setup import DatasetUnavailableError

_MAX_STAND_INS = 64  # Tries to find a colour photo in place of a gray or broken one.

# Every random stream of the training data has a tag of its own: NumPy pads seed lists with
# zeros, so [seed, epoch] and [seed, epoch, 0] would be one and the same stream.
PERMUTATION_STREAM, CROP_STREAM, STAND_IN_STREAM = 1, 2, 3


def data_rng(seed: int, stream: int, *keys: int) -> np.random.Generator:
  """The generator of one random stream of the training data, e.g. (seed, CROP_STREAM, epoch, index)."""
  return np.random.default_rng([seed, stream, *keys])


_EVAL_DECODE_CHUNK = 64  # Eval photos decoded at a time, on threads.


@dataclasses.dataclass(frozen=True)
class DataPosition:
  """Where the training stream stands: `index` examples of epoch `epoch` are consumed."""

  epoch: int = 0
  index: int = 0

  def global_position(self, epoch_size: int) -> int:
    return self.epoch * epoch_size + self.index


# ----------------------------------------------------------------------------- sources


# ----------------------------------------------------------------------------- preprocessing


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

  def __init__(self, photos: usable.TrainingPhotos, config):
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
      if usable.learnable(photo, self.gray_tolerance, self.min_colorfulness):
        return photo, 0
    draws = data_rng(self.seed, STAND_IN_STREAM, epoch, index)
    candidates = self.usable if self.usable is not None else np.arange(len(self.records))
    for attempt in range(1, _MAX_STAND_INS + 1):
      photo = self.records[int(candidates[draws.integers(len(candidates))])]
      if usable.learnable(photo, self.gray_tolerance, self.min_colorfulness):
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
    self, photos: usable.TrainingPhotos, config, start: int, global_batch: int, process_index: int, process_count: int
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
  config, start: DataPosition = DataPosition(), workers: int | None = None, photos: usable.TrainingPhotos | None = None
) -> Iterator[dict]:
  """Endless batches {'image': uint8 [b, S, S, 3], 'gray_skipped', 'epoch', 'index'} from `start` on.

  `b` is this process's share of `config.batch_size`; (`epoch`, `index`) is the data position
  after the batch, to checkpoint; `gray_skipped` counts the gray (or broken) photos replaced.
  `photos` is the training split (`usable.training_photos`), opened here when not given.
  """
  photos = usable.training_photos(config) if photos is None else photos
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


def first_training_images(config, count: int, photos: usable.TrainingPhotos | None = None) -> np.ndarray:
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
    source = sources.photo_source(self.config, "eval")
    wanted = len(source) if self.num_images < 0 else self.num_images
    found = skipped = 0
    if wanted == 0:
      return
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
      for chunk in _in_chunks(len(source), _EVAL_DECODE_CHUNK):
        for photo in pool.map(source.__getitem__, chunk):
          if photo is None or usable.is_gray(photo, self.config.gray_tolerance):
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
