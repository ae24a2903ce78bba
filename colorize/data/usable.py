"""Which training photos are usable: colour (not gray, colourful enough) and readable, counted once
per folder and remembered in the run folder."""

import collections
import concurrent.futures
import dataclasses
import functools
import json
import os
import time
from collections.abc import Sequence

import jax
import numpy as np
from absl import logging

from colorize import metrics
from colorize.data import sources
from colorize.runs.run_setup import DatasetUnavailableError

MIN_USABLE_SHARE = 0.01  # A folder with fewer usable (colour, readable) photos is refused at the start.


USABLE_CACHE = "usable_photos.json"  # In the run folder: which training photos are usable, by file.


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


def count_photo_files(files: sources.PhotoFiles, config, cache_path: str | None = None) -> list:
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
  records = sources.photo_source(config, "train")
  if isinstance(records, sources.PhotoFiles):
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
