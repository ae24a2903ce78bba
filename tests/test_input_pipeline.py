import colorsys
import io
import itertools
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from colorize.data import input_pipeline
from colorize.data import sources
from colorize.data import usable
from colorize.runs import run_setup
from tests.conftest import tiny_config


def take(batches, count):
  return list(itertools.islice(batches, count))


def test_demo_batches_are_uint8_crops_of_the_configured_size(config):
  (batch,) = take(input_pipeline.train_batches(config), 1)
  assert batch["image"].shape == (4, 16, 16, 3) and batch["image"].dtype == np.uint8
  assert input_pipeline.position_after(batch) == input_pipeline.DataPosition(0, 4)


def test_the_seed_fixes_the_stream_and_another_seed_changes_it(config):
  first = take(input_pipeline.train_batches(config), 3)
  again = take(input_pipeline.train_batches(config), 3)
  other = take(input_pipeline.train_batches(tiny_config(seed=1)), 3)
  for a, b in zip(first, again, strict=True):
    np.testing.assert_array_equal(a["image"], b["image"])
  assert not np.array_equal(first[0]["image"], other[0]["image"])


def test_restarting_at_a_saved_position_continues_the_same_stream(config):
  # 30 batches of 4 run through 20 epochs of the six demo photos; batches straddle epochs.
  uninterrupted = take(input_pipeline.train_batches(config), 30)
  for stop in (1, 5, 22):
    position = input_pipeline.position_after(uninterrupted[stop - 1])
    resumed = take(input_pipeline.train_batches(config, position), 5)
    for a, b in zip(uninterrupted[stop : stop + 5], resumed, strict=True):
      np.testing.assert_array_equal(a["image"], b["image"])
  assert input_pipeline.position_after(uninterrupted[-1]) == input_pipeline.DataPosition(20, 0)


def test_worker_processes_give_the_batches_of_threads(config):
  threads = take(input_pipeline.train_batches(config, workers=0), 4)
  processes = take(input_pipeline.train_batches(config, workers=2), 4)
  for a, b in zip(threads, processes, strict=True):
    np.testing.assert_array_equal(a["image"], b["image"])


def test_each_process_reads_its_contiguous_slice_of_the_same_global_batches(config):
  photos = usable.training_photos(config)
  whole = input_pipeline.TrainBatchMaker(photos, config, 0, 8, process_index=0, process_count=1)
  halves = [input_pipeline.TrainBatchMaker(photos, config, 0, 8, process_index=i, process_count=2) for i in (0, 1)]
  for batch in range(3):
    joined = np.concatenate([half(batch)["image"] for half in halves])
    np.testing.assert_array_equal(joined, whole(batch)["image"])


def write_photo(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def colourful(seed, size=40):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_folder_dataset_skips_gray_photos_and_splits_by_subfolder(tmp_path):
  for i in range(3):
    write_photo(str(tmp_path / "train" / f"colour{i}.png"), colourful(i))
  gray = np.repeat(colourful(9)[..., :1], 3, axis=-1)
  write_photo(str(tmp_path / "train" / "gray_rgb.png"), gray)
  write_photo(str(tmp_path / "train" / "gray_l.jpg"), gray[..., 0])
  write_photo(str(tmp_path / "val" / "held_out.png"), colourful(5))
  config = tiny_config(dataset="folder", data_dir=str(tmp_path))
  batches = take(input_pipeline.train_batches(config), 20)
  for batch in batches:
    spread = batch["image"].max(-1).astype(int) - batch["image"].min(-1)
    assert (spread.reshape(4, -1).max(1) > config.gray_tolerance).all()
  # Two of every five photos are gray: each of their 32 places in 16 epochs takes one stand-in,
  # drawn from the usable photos (never a second draw).
  assert sum(int(batch["gray_skipped"]) for batch in batches) == 32
  (val,) = list(input_pipeline.eval_dataset(config).batches())
  np.testing.assert_array_equal(val["mask"], [1, 0, 0, 0])


def test_fewer_validation_photos_than_asked_for_is_said_once(tmp_path, caplog):
  for i in range(3):
    write_photo(str(tmp_path / "val" / f"v{i}.png"), colourful(i))
  write_photo(str(tmp_path / "val" / "gray.png"), np.zeros((40, 40, 3), np.uint8))
  write_photo(str(tmp_path / "train" / "t.png"), colourful(7))
  data = input_pipeline.eval_dataset(tiny_config(dataset="folder", data_dir=str(tmp_path), num_eval_images=60))
  for _ in range(2):  # Validation runs many times in a run: the count is told at the first.
    assert len(list(data.images())) == 3
  warnings = [r.getMessage() for r in caplog.records if "Validating on" in r.getMessage()]
  assert warnings == [
    "Validating on 3 photos, not the 60 asked for: 3 of the split's 4 photos read (1 gray or unreadable skipped)."
  ]


def test_folder_without_subfolders_splits_by_a_fixed_fraction(tmp_path):
  for i in range(40):
    write_photo(str(tmp_path / f"p{i:02d}.png"), colourful(i, 8))
  train = sources.folder_split(str(tmp_path), "train", 0.25)
  val = sources.folder_split(str(tmp_path), "eval", 0.25)
  assert set(train).isdisjoint(val) and len(train) + len(val) == 40 and 3 <= len(val) <= 18
  assert val == sources.folder_split(str(tmp_path), "eval", 0.25)


def test_the_folder_split_ignores_the_seed_and_holds_out_the_configured_share(tmp_path):
  tiny = colourful(0, 8)
  for i in range(1000):
    write_photo(str(tmp_path / ("a" if i % 2 else "b") / f"photo_{i:04d}.png"), tiny)
  val_sets = [
    sources.photo_source(tiny_config(dataset="folder", data_dir=str(tmp_path), seed=seed), "eval").paths
    for seed in (0, 1, 7)
  ]
  assert val_sets[0] == val_sets[1] == val_sets[2]
  assert abs(len(val_sets[0]) / 1000 - 0.1) <= 0.02, len(val_sets[0])


def hue_photo(folder: int, count: int = 12) -> np.ndarray:
  """A solid, saturated colour per folder, told apart after cropping and resizing."""
  red, green, blue = colorsys.hsv_to_rgb(folder / count, 0.9, 0.9)
  return np.full((8, 8, 3), (round(255 * red), round(255 * green), round(255 * blue)), np.uint8)


def folder_of(image: np.ndarray, count: int = 12) -> int:
  palette = np.stack([hue_photo(f, count)[0, 0] for f in range(count)]).astype(int)
  return int(np.argmin(np.abs(palette - image.reshape(-1, 3).mean(0)).sum(1)))


def test_a_folder_of_class_subfolders_is_mixed_from_the_first_batch(tmp_path):
  # Places365's data_256/ layout in small: 12 class folders of 400 photos.
  for folder in range(12):
    for i in range(400):
      write_photo(str(tmp_path / f"class{folder:02d}" / f"{i:03d}.png"), hue_photo(folder))
  config = tiny_config(dataset="folder", data_dir=str(tmp_path), folder_val_fraction=0.0, batch_size=64)
  photos = usable.training_photos(config)
  epoch_size = len(photos.records)
  first = next(input_pipeline.train_batches(config, photos=photos))
  assert len({folder_of(image) for image in first["image"]}) >= 10
  again = next(input_pipeline.train_batches(config, photos=photos))
  np.testing.assert_array_equal(first["image"], again["image"])
  maker = input_pipeline.TrainBatchMaker(photos, config, 0, 64, process_index=0, process_count=1)
  assert not np.array_equal(maker.permutation(0), maker.permutation(1))  # Every epoch is shuffled anew.
  assert sorted(maker.permutation(1)) == list(range(epoch_size))


def test_missing_folder_names_the_setting(tmp_path):
  config = tiny_config(dataset="folder", data_dir=str(tmp_path / "nope"))
  with pytest.raises(input_pipeline.DatasetUnavailableError, match="config.data_dir") as raised:
    input_pipeline.train_batches(config)
  assert isinstance(raised.value, run_setup.UsageError)  # A mistake on the command line: exit status 2.


class TinyPhotos(tfds.core.GeneratorBasedBuilder):
  """A tfds image dataset small enough to prepare in a test, in ArrayRecord, without TensorFlow."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({"image": tfds.features.Image()}))

  def _split_generators(self, dl_manager):
    return {"train": self._generate_examples(12, 0), "test": self._generate_examples(6, 1)}

  def _generate_examples(self, count, seed):
    for i in range(count):
      png = io.BytesIO()
      Image.fromarray(colourful(100 * seed + i, 24)).save(png, "PNG")
      png.seek(0)
      yield i, {"image": png}


def prepared_tiny_photos(data_dir) -> str:
  """Prepares `tiny_photos` in ArrayRecord under `data_dir`; returns its version folder."""
  builder = TinyPhotos(data_dir=str(data_dir), file_format="array_record")
  builder.download_and_prepare()
  return builder.data_dir


def test_a_prepared_tfds_dataset_trains_and_evaluates_through_its_data_source(tmp_path):
  prepared_tiny_photos(tmp_path)
  config = tiny_config(dataset="tiny_photos", data_dir=str(tmp_path), batch_size=8)
  (batch,) = take(input_pipeline.train_batches(config), 1)
  (val,) = list(input_pipeline.eval_dataset(config, num_images=4).batches())
  assert batch["image"].shape == (8, 16, 16, 3) and val["mask"].sum() == 4
  assert int(batch["gray_skipped"]) == 0


def test_a_tfds_dataset_prepared_as_tfrecord_names_the_rebuild_and_the_conversion(tmp_path):
  version_dir = prepared_tiny_photos(tmp_path)
  info_path = os.path.join(version_dir, "dataset_info.json")
  info = json.load(open(info_path))
  json.dump({**info, "fileFormat": "tfrecord"}, open(info_path, "w"))  # As tfds' old default writes it.
  with pytest.raises(input_pipeline.DatasetUnavailableError) as error:
    input_pipeline.train_batches(tiny_config(dataset="tiny_photos", data_dir=str(tmp_path)))
  message = str(error.value)
  assert "prepared as tfrecord" in message
  assert f"tfds build tiny_photos --file_format=array_record --data_dir={tmp_path}" in message
  assert (
    f"tfds convert_format --dataset_version_dir={version_dir} --out_file_format=array_record "
    "--out_dir=NEW_ROOT/tiny_photos/1.0.0" in message
  )


def test_a_missing_split_is_named_with_the_splits_there_are(tmp_path):
  prepared_tiny_photos(tmp_path)
  config = tiny_config(dataset="tiny_photos", data_dir=str(tmp_path), eval_split="validation")
  with pytest.raises(
    input_pipeline.DatasetUnavailableError, match=r"no split 'validation' \(config.eval_split\); it has test, train"
  ):
    input_pipeline.validation_images(config, 2)


@pytest.mark.parametrize("download", [False, True])
def test_missing_tfds_dataset_fails_fast_offline(tmp_path, monkeypatch, download):
  monkeypatch.setattr(sources, "_network_reachable", lambda: False)
  config = tiny_config(dataset="cifar10", data_dir=str(tmp_path), download=download)
  with pytest.raises(input_pipeline.DatasetUnavailableError) as error:
    input_pipeline.train_batches(config)
  message = str(error.value)
  assert "'cifar10'" in message and str(tmp_path) in message
  assert f"tfds build cifar10 --file_format=array_record --data_dir={tmp_path}" in message


def test_preparing_a_dataset_that_needs_tensorflow_says_so_in_one_line(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, "_network_reachable", lambda: True)

  def needs_tensorflow(self, **kwargs):
    raise ModuleNotFoundError("No module named 'tensorflow'")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", needs_tensorflow)
  config = tiny_config(dataset="cifar10", data_dir=str(tmp_path), download=True)
  with pytest.raises(input_pipeline.DatasetUnavailableError, match="pip install tensorflow-cpu` for the preparation"):
    input_pipeline.train_batches(config)


def test_folder_training_reads_any_format_and_survives_unreadable_and_truncated_photos(tmp_path):
  solid = {"png": (220, 30, 30), "webp": (30, 220, 30), "tiff": (30, 30, 220)}
  for extension, rgb in solid.items():
    write_photo(str(tmp_path / f"colour.{extension}"), np.full((40, 40, 3), rgb, np.uint8))
  (tmp_path / "text.jpg").write_bytes(b"not a photo")
  good = (tmp_path / "colour.png").read_bytes()
  (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
  config = tiny_config(dataset="folder", data_dir=str(tmp_path), folder_val_fraction=0.0)
  batches = take(input_pipeline.train_batches(config), 10)
  assert all(batch["image"].shape == (4, 16, 16, 3) for batch in batches)
  seen = {int(np.argmax(image.reshape(-1, 3).mean(0))) for batch in batches for image in batch["image"]}
  assert seen == {0, 1, 2}  # PNG, WebP and TIFF all decoded; the broken files never arrive


def gray_and_colour_folder(folder, gray: int, colour: int):
  """`gray` gray and `colour` colour photos of 8x8 pixels (the colour ones first by name)."""
  names = [f"p{i:03d}.png" for i in range(gray + colour)]
  for i, name in enumerate(names):
    image = colourful(i, 8) if i % (gray + colour) < colour else np.full((8, 8, 3), 17 * (i % 15), np.uint8)
    write_photo(str(folder / name), image)


def test_a_mostly_gray_folder_trains_on_its_colour_photos_and_counts_them_once(tmp_path, monkeypatch):
  # 196 gray photos and 4 colour ones: stand-ins drawn from the whole folder (the old way) meet
  # 64 gray photos in a row within the first epoch, almost surely.
  gray_and_colour_folder(tmp_path / "photos", gray=196, colour=4)
  config = tiny_config(dataset="folder", data_dir=str(tmp_path / "photos"), folder_val_fraction=0.0)
  photos = usable.training_photos(config, cache_dir=str(tmp_path))
  assert len(photos.usable) == 4 and len(photos.records) == 200
  batches = take(input_pipeline.train_batches(config, photos=photos), 60)  # 240 places: more than an epoch.
  for batch in batches:
    assert all(not usable.is_gray(image, config.gray_tolerance) for image in batch["image"])
  assert sum(int(batch["gray_skipped"]) for batch in batches) > 200

  # The count is cached with the run: a second start decodes nothing...
  def no_decoding(self, index):
    raise AssertionError("decoded again")

  with monkeypatch.context() as patch:
    patch.setattr(sources.PhotoFiles, "__getitem__", no_decoding)
    again = usable.training_photos(config, cache_dir=str(tmp_path))
  np.testing.assert_array_equal(again.usable, photos.usable)
  # ...but a photo that changed is counted anew.
  write_photo(str(tmp_path / "photos" / "p100.png"), colourful(100, 8))
  os.utime(tmp_path / "photos" / "p100.png", ns=(0, 0))
  assert len(usable.training_photos(config, cache_dir=str(tmp_path)).usable) == 5


def test_a_folder_of_black_and_white_photos_is_refused_with_the_counts(tmp_path):
  gray_and_colour_folder(tmp_path, gray=298, colour=2)
  (tmp_path / "broken.png").write_bytes(b"not a photo")
  config = tiny_config(dataset="folder", data_dir=str(tmp_path), folder_val_fraction=0.0)
  with pytest.raises(input_pipeline.DatasetUnavailableError) as error:
    input_pipeline.train_batches(config)
  assert "2 of 301 training photos are usable (298 gray or nearly so, 1 unreadable)" in str(error.value)
  assert "\n" not in str(error.value)


def test_a_photos_split_does_not_depend_on_which_level_of_the_folder_is_named(tmp_path):
  tiny = colourful(0, 8)
  for i in range(200):
    write_photo(str(tmp_path / "all" / "summer" / f"photo_{i:03d}.png"), tiny)
  held_out = {
    root: {os.path.basename(p) for p in sources.folder_split(str(root), "eval", 0.2)}
    for root in (tmp_path / "all", tmp_path / "all" / "summer")
  }
  assert held_out[tmp_path / "all"] == held_out[tmp_path / "all" / "summer"]
  assert 20 <= len(held_out[tmp_path / "all"]) <= 60


def test_every_random_stream_of_the_training_data_is_its_own(monkeypatch, tmp_path):
  # NumPy pads seed lists with zeros: [seed, epoch] and [seed, epoch, 0] are one stream.
  gray_and_colour_folder(tmp_path, gray=3, colour=3)
  config = tiny_config(dataset="folder", data_dir=str(tmp_path), folder_val_fraction=0.0)
  seeds = set()
  default_rng = np.random.default_rng
  monkeypatch.setattr(np.random, "default_rng", lambda seed=None: seeds.add(tuple(seed)) or default_rng(seed))
  take(input_pipeline.train_batches(config, workers=0), 4)  # Three epochs: permutations, crops, stand-ins.
  streams = {}
  for seed in seeds:
    streams.setdefault(tuple(np.trim_zeros(np.array(seed), "b")), set()).add(seed)
  assert len(seeds) > 20 and all(len(same) == 1 for same in streams.values()), streams


def test_the_network_probe_gives_up_on_time_whatever_dns_does(monkeypatch):
  import socket
  import time

  def hanging_lookup(*args, **kwargs):  # What a broken resolver did: 30 s before an answer.
    time.sleep(30)
    raise socket.gaierror("timed out")

  monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
  start = time.perf_counter()
  assert not sources._network_reachable()
  assert time.perf_counter() - start < 5  # The 30 s hang, cut short (the probe allows 1.5 s).


def test_the_network_probe_sees_a_server_that_answers():
  import socket

  with socket.create_server(("127.0.0.1", 0)) as server:
    assert sources._network_reachable("127.0.0.1", server.getsockname()[1])


# ----------------------------------------------------------------------------- the stream's pieces


def test_batch_places_run_through_epochs():
  assert input_pipeline.batch_places(4, 4, 6) == [(0, 4), (0, 5), (1, 0), (1, 1)]


def test_the_epoch_order_is_a_fresh_permutation_of_every_record_per_epoch():
  order = input_pipeline.EpochOrder(seed=3, size=50)
  first, second = order(0), order(1)
  assert sorted(first) == sorted(second) == list(range(50)) and not np.array_equal(first, second)
  np.testing.assert_array_equal(order(0), first)  # The same after another epoch was cached.
  np.testing.assert_array_equal(input_pipeline.EpochOrder(seed=3, size=50)(1), second)


def test_a_gray_record_gives_way_to_one_usable_stand_in_and_a_colour_one_to_none():
  gray, colour = np.full((8, 8, 3), 90, np.uint8), colourful(0, 8)
  records = [gray, colour, gray, None]
  config = tiny_config()
  known = input_pipeline.ColourPhotos(usable.TrainingPhotos(records, np.array([1])), config)
  photo, used = known(1, epoch=0, index=0)
  assert photo is colour and used == 0
  for place in range(5):
    for gray_or_broken in (0, 3):
      photo, used = known(gray_or_broken, epoch=2, index=place)
      assert photo is colour and used == 1
  unknown = input_pipeline.ColourPhotos(usable.TrainingPhotos(records, None), config)
  photo, used = unknown(0, epoch=0, index=0)
  assert photo is colour and used >= 1  # Drawn from all records until a colour one comes.


def test_an_examples_crop_depends_on_its_place_alone():
  photo, config = colourful(0, 40), tiny_config()
  crop = input_pipeline.training_crop(photo, config, epoch=1, index=2)
  assert crop.shape == (16, 16, 3)
  np.testing.assert_array_equal(crop, input_pipeline.training_crop(photo, config, epoch=1, index=2))
  others = [input_pipeline.training_crop(photo, config, epoch=e, index=i) for e, i in ((1, 3), (2, 2))]
  assert not any(np.array_equal(crop, other) for other in others)


def test_a_misspelt_tfds_dataset_is_one_line_with_the_closest_name(tmp_path):
  with pytest.raises(input_pipeline.DatasetUnavailableError, match="dataset=.cifar1. is not a tensorflow") as e:
    input_pipeline.train_batches(tiny_config(dataset="cifar1", data_dir=str(tmp_path)))
  assert "did you mean 'cifar10'?" in str(e.value) and "\n" not in str(e.value)


def test_a_failed_download_is_one_line(tmp_path, monkeypatch):
  monkeypatch.setattr(sources, "_network_reachable", lambda: True)

  def cut_off(self, **kwargs):
    raise OSError("Connection reset by peer\nmore lines of a traceback")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", cut_off)
  with pytest.raises(input_pipeline.DatasetUnavailableError, match=r"preparing dataset 'cifar10' in .* failed \(Conn"):
    input_pipeline.train_batches(tiny_config(dataset="cifar10", data_dir=str(tmp_path), download=True))
