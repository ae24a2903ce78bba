"""tf.data input pipelines: encoded photos -> uint8 RGB batches for this process.

Sources (`config.dataset`): a tensorflow-datasets name (`cifar10`, `places365_small`, ...),
`folder` (the user's own photos under `config.data_dir`) or `demo` (the colour photos bundled in
scikit-image's wheel; works offline). Each source yields this process's shard of encoded images
in a fixed order; everything random after that is a pure function of (seed, epoch, index), so
the stream of training batches is fixed by the seed and a run can resume at any data position.
"""

import dataclasses
import hashlib
import math
import os
import socket

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from absl import logging

from colorize import predict

IMAGE_EXTENSIONS = predict.PHOTO_EXTENSIONS  # Training reads what the colorize mode reads.
# Sources smaller than this are repeated inside one epoch, so tiny datasets (the demo) do not
# rebuild the pipeline every few steps.
_MIN_EPOCH_EXAMPLES = 1024

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


# ----------------------------------------------------------------------------- sources


def _skimage_data_dir() -> str:
  import skimage.data  # Imported lazily: only the demo needs it.

  return os.path.dirname(skimage.data.__file__)


def _encode_png(array: np.ndarray) -> bytes:
  return tf.io.encode_png(array).numpy()


def _demo_eval_tiles() -> list:
  """Non-overlapping square tiles (half the short side) of the held-out photos."""
  from PIL import Image

  tiles = []
  for name in DEMO_EVAL_PHOTOS:
    photo = np.asarray(Image.open(os.path.join(_skimage_data_dir(), name)).convert("RGB"))
    side = min(photo.shape[:2]) // 2
    for top in range(0, photo.shape[0] - side + 1, side):
      for left in range(0, photo.shape[1] - side + 1, side):
        tiles.append(_encode_png(photo[top : top + side, left : left + side]))
  return tiles


def _demo_source(split: str) -> list:
  if split == "train":
    return [tf.io.read_file(os.path.join(_skimage_data_dir(), n)).numpy() for n in DEMO_TRAIN_PHOTOS]
  return _demo_eval_tiles()


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
  from PIL import Image

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


def _network_reachable(host: str = "storage.googleapis.com", port: int = 443) -> bool:
  try:
    socket.create_connection((host, port), timeout=3).close()
    return True
  except OSError:
    return False


def _tfds_source(config, split: str) -> tf.data.Dataset:
  """This process's shard of a tfds split, images left encoded (decoded after shuffling)."""
  name, data_dir = config.dataset, config.data_dir or None
  builder = tfds.builder(name, data_dir=data_dir)
  process_split = tfds.split_for_jax_process(split)
  read = dict(split=process_split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
  try:
    return builder.as_dataset(**read).map(lambda example: example["image"])
  except (AssertionError, FileNotFoundError, ValueError):
    pass  # Not prepared: explained below, without tfds' minutes of download retries.
  where = builder.data_dir
  how = f"run `tfds build {name} --data_dir={os.path.dirname(os.path.dirname(where))}` on a machine with internet"
  if not config.download:
    raise DatasetUnavailableError(f"dataset {name!r} is not prepared in {where}; {how}, or set --config.download=True.")
  if not _network_reachable():
    raise DatasetUnavailableError(
      f"dataset {name!r} is not prepared in {where} and the network is unreachable; {how} "
      "and point --config.data_dir at it."
    )
  builder.download_and_prepare()
  return builder.as_dataset(**read).map(lambda example: example["image"])


def encoded_images(config, split: str) -> tf.data.Dataset:
  """This process's shard of `split` ('train' or 'eval') as scalar strings in a fixed order: encoded
  images, or file paths for `folder` (see `decoder`)."""
  if config.dataset == "tfds":
    raise ValueError("config.dataset must name the tfds dataset itself, e.g. 'cifar10'.")
  if config.dataset in ("demo", "folder"):
    if config.dataset == "demo":
      items = _demo_source(split)
      dataset = tf.data.Dataset.from_tensor_slices(tf.constant(items, tf.string))
    else:
      paths = readable_photos(folder_split(config.data_dir, split, config.folder_val_fraction))
      dataset = tf.data.Dataset.from_tensor_slices(paths)  # Decoded from the path, by Pillow.
    return dataset.shard(jax.process_count(), jax.process_index())
  tfds_split = config.train_split if split == "train" else config.eval_split
  return _tfds_source(config, tfds_split)


# ----------------------------------------------------------------------------- preprocessing


def _pillow_rgb(path) -> np.ndarray:
  # The colorize mode's decoder: EXIF, ICC, every mode and format.
  return predict.load_photo(path.decode(), "", max_pixels=200_000_000).rgb


def decode_path_with_pillow(path):
  """A user's photo of any format Pillow reads -> uint8 RGB (errors drop it, see _skip_broken)."""
  image = tf.numpy_function(_pillow_rgb, [path], tf.uint8, stateful=False)
  image.set_shape([None, None, 3])
  return image


def decoder(config):
  """What turns a source element into uint8 RGB: Pillow for a user's folder, tf.io otherwise."""
  return decode_path_with_pillow if config.dataset == "folder" else decode_rgb


def decode_rgb(encoded):
  return tf.io.decode_image(encoded, channels=3, expand_animations=False)


def is_gray(image, tolerance: int):
  """True when no pixel's channels differ by more than `tolerance` (uint8 units)."""
  image = tf.cast(image, tf.int32)
  spread = tf.reduce_max(image, axis=-1) - tf.reduce_min(image, axis=-1)
  return tf.reduce_max(spread) <= tolerance


def _resize_square(crop, size: int):
  resized = tf.image.resize(crop, (size, size), method="bilinear", antialias=True)
  return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def random_square_crop(image, size: int, min_fraction: float, seed):
  """A random square covering [min_fraction, 1] of the short side, resized to size, maybe flipped."""
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  short = tf.minimum(height, width)
  seeds = tf.random.experimental.stateless_split(seed, 3)
  fraction = tf.random.stateless_uniform([], seeds[0], minval=min_fraction, maxval=1.0)
  side = tf.clip_by_value(tf.cast(tf.round(fraction * tf.cast(short, tf.float32)), tf.int32), 1, short)
  corner = tf.random.stateless_uniform([2], seeds[1], 0.0, 1.0)
  top = tf.cast(corner[0] * tf.cast(height - side + 1, tf.float32), tf.int32)
  left = tf.cast(corner[1] * tf.cast(width - side + 1, tf.float32), tf.int32)
  crop = image[top : top + side, left : left + side]
  crop = tf.cond(side == size, lambda: crop, lambda: _resize_square(crop, size))
  return tf.image.stateless_random_flip_left_right(crop, seeds[2])


def center_square_crop(image, size: int):
  height, width = tf.shape(image)[0], tf.shape(image)[1]
  side = tf.minimum(height, width)
  crop = image[(height - side) // 2 :, (width - side) // 2 :][:side, :side]
  return tf.cond(side == size, lambda: crop, lambda: _resize_square(crop, size))


# ----------------------------------------------------------------------------- datasets


def _epoch_seed(seed: int, epoch):
  return tf.cast(seed, tf.int64) * 1_000_003 + tf.cast(epoch, tf.int64)


def _examples_per_epoch(source: tf.data.Dataset) -> int:
  count = int(source.cardinality())
  return count if count > 0 else 0


def _skip_broken(dataset: tf.data.Dataset, config) -> tf.data.Dataset:
  """A user's folder may hold photos that pass the header check but fail to decode: drop them
  (deterministically, so resuming still works) rather than crash mid-epoch."""
  return dataset.ignore_errors(log_warning=True) if config.dataset == "folder" else dataset


def train_dataset(
  config, batch_size: int, start: DataPosition = DataPosition(), gray_skipped: tf.Variable | None = None
) -> tf.data.Dataset:
  """Endless batches {'image': uint8 [b, S, S, 3], 'epoch', 'index': int64 [b]} from `start` on.

  Epoch e is the source shuffled with a seed made of (config.seed, e); example i of it is
  cropped and flipped with the seed (config.seed, e, i). `epoch` and `index` say where each
  example came from, so the loop can checkpoint the data position after any batch. Pure-gray
  photos are dropped and counted in `gray_skipped` (an int64 tf.Variable), when given.
  """
  source = encoded_images(config, "train")
  size = _examples_per_epoch(source)
  decoded_early = 0 < size < _MIN_EPOCH_EXAMPLES
  if decoded_early:  # A few photos: decode once, keep them in memory, repeat them.
    source = _skip_broken(source.map(decoder(config)), config).cache().repeat(math.ceil(_MIN_EPOCH_EXAMPLES / size))

  def one_epoch(epoch):
    seed = _epoch_seed(config.seed, epoch)
    examples = source.shuffle(config.shuffle_buffer_size, seed=seed, reshuffle_each_iteration=False).enumerate()
    skip = tf.where(epoch == start.epoch, tf.constant(start.index, tf.int64), tf.constant(0, tf.int64))
    return examples.skip(skip).map(lambda index, encoded: (epoch, index, encoded))

  def preprocess(epoch, index, item):
    image = item if decoded_early else decoder(config)(item)
    seed = tf.stack([_epoch_seed(config.seed, epoch), index])
    crop = random_square_crop(image, config.image_size, config.min_crop_fraction, seed)
    return {"image": crop, "epoch": epoch, "index": index, "gray": is_gray(image, config.gray_tolerance)}

  dataset = tf.data.Dataset.range(start.epoch, np.iinfo(np.int64).max).flat_map(one_epoch)
  dataset = _skip_broken(dataset.map(preprocess, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True), config)

  def is_colour(example):
    if gray_skipped is None:
      return tf.logical_not(example["gray"])
    with tf.control_dependencies([gray_skipped.assign_add(tf.cast(example["gray"], tf.int64))]):
      return tf.logical_not(example["gray"])

  dataset = dataset.filter(is_colour)
  dataset = dataset.map(lambda example: {k: v for k, v in example.items() if k != "gray"})
  return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def position_after(batch) -> DataPosition:
  """The data position right after `batch` (a numpy batch from `train_dataset`)."""
  return DataPosition(int(batch["epoch"][-1]), int(batch["index"][-1]) + 1)


def eval_dataset(config, batch_size: int, num_images: int | None = None) -> tf.data.Dataset:
  """The fixed validation subset: the first non-gray images of the eval split, centre-cropped
  (`num_images=-1`: all of them).

  Batches are padded to `batch_size`; `mask` is 1 for real images and 0 for padding.
  """
  num_images = config.num_eval_images if num_images is None else num_images
  per_process = -1 if num_images < 0 else max(1, num_images // jax.process_count())  # -1: the whole split

  def preprocess(encoded):
    image = decoder(config)(encoded)
    return {"image": center_square_crop(image, config.image_size), "gray": is_gray(image, config.gray_tolerance)}

  dataset = encoded_images(config, "eval").map(preprocess, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.filter(lambda example: tf.logical_not(example["gray"])).take(per_process)
  dataset = dataset.map(lambda example: {"image": example["image"], "mask": tf.constant(1.0)})
  return dataset.batch(batch_size).map(lambda batch: _pad_batch(batch, batch_size)).prefetch(2)


def _pad_batch(batch, batch_size: int):
  missing = batch_size - tf.shape(batch["mask"])[0]
  return {
    "image": tf.pad(batch["image"], [[0, missing], [0, 0], [0, 0], [0, 0]]),
    "mask": tf.pad(batch["mask"], [[0, missing]]),
  }
