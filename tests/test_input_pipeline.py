import os
import time

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from colorize import input_pipeline
from tests.conftest import tiny_config


def take(dataset, count):
  iterator = dataset.as_numpy_iterator()
  return [next(iterator) for _ in range(count)]


def test_demo_batches_are_uint8_crops_of_the_configured_size(config):
  (batch,) = take(input_pipeline.train_dataset(config, batch_size=4), 1)
  assert batch["image"].shape == (4, 16, 16, 3) and batch["image"].dtype == np.uint8
  assert batch["epoch"].shape == batch["index"].shape == (4,)


def test_the_seed_fixes_the_stream_and_another_seed_changes_it(config):
  first = take(input_pipeline.train_dataset(config, 4), 3)
  again = take(input_pipeline.train_dataset(config, 4), 3)
  other = take(input_pipeline.train_dataset(tiny_config(seed=1), 4), 3)
  for a, b in zip(first, again, strict=True):
    np.testing.assert_array_equal(a["image"], b["image"])
  assert not np.array_equal(first[0]["image"], other[0]["image"])


def test_restarting_at_a_saved_position_continues_the_same_stream(config):
  # 270 batches of 4 run past the first epoch of 1,026 examples (six photos repeated).
  uninterrupted = take(input_pipeline.train_dataset(config, 4), 270)
  for stop in (5, 255):
    position = input_pipeline.position_after(uninterrupted[stop - 1])
    resumed = take(input_pipeline.train_dataset(config, 4, position), 15)
    for a, b in zip(uninterrupted[stop : stop + 15], resumed, strict=True):
      np.testing.assert_array_equal(a["image"], b["image"])
  assert uninterrupted[-1]["epoch"][-1] == 1  # the second epoch was reached and resumed into


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
  config = tiny_config(dataset="folder", data_dir=str(tmp_path), shuffle_buffer_size=4)
  gray_skipped = tf.Variable(0, dtype=tf.int64)
  for batch in take(input_pipeline.train_dataset(config, 4, gray_skipped=gray_skipped), 20):
    spread = batch["image"].max(-1).astype(int) - batch["image"].min(-1)
    assert (spread.reshape(4, -1).max(1) > config.gray_tolerance).all()
  assert int(gray_skipped.numpy()) >= 2 * 20 * 4 // 3  # Two of every five photos are gray.
  (val,) = list(input_pipeline.eval_dataset(config, 4).as_numpy_iterator())
  np.testing.assert_array_equal(val["mask"], [1, 0, 0, 0])


def test_folder_without_subfolders_splits_by_a_fixed_fraction(tmp_path):
  for i in range(40):
    write_photo(str(tmp_path / f"p{i:02d}.png"), colourful(i, 8))
  train = input_pipeline.folder_split(str(tmp_path), "train", 0.25)
  val = input_pipeline.folder_split(str(tmp_path), "eval", 0.25)
  assert set(train).isdisjoint(val) and len(train) + len(val) == 40 and 3 <= len(val) <= 18
  assert val == input_pipeline.folder_split(str(tmp_path), "eval", 0.25)


def test_the_folder_split_ignores_the_seed_and_holds_out_the_configured_share(tmp_path):
  for name in ("a", "b"):
    (tmp_path / name).mkdir()
  tiny = colourful(0, 8)
  for i in range(1000):
    write_photo(str(tmp_path / ("a" if i % 2 else "b") / f"photo_{i:04d}.png"), tiny)
  val_sets = [
    input_pipeline.encoded_images(tiny_config(dataset="folder", data_dir=str(tmp_path), seed=seed), "eval")
    for seed in (0, 1, 7)
  ]
  names = [sorted(path.decode() for path in val.as_numpy_iterator()) for val in val_sets]
  assert names[0] == names[1] == names[2]
  share = len(input_pipeline.folder_split(str(tmp_path), "eval", 0.1)) / 1000
  assert abs(share - 0.1) <= 0.02, share


def test_missing_folder_names_the_setting(tmp_path):
  config = tiny_config(dataset="folder", data_dir=str(tmp_path / "nope"))
  with pytest.raises(input_pipeline.DatasetUnavailableError, match="config.data_dir"):
    input_pipeline.train_dataset(config, 4)


def test_tfds_dataset_through_mock_data():
  config = tiny_config(dataset="cifar10", image_size=32)
  with tfds.testing.mock_data(num_examples=16):
    (batch,) = take(input_pipeline.train_dataset(config, 8), 1)
    (val,) = list(input_pipeline.eval_dataset(config, 4, num_images=4).as_numpy_iterator())
  assert batch["image"].shape == (8, 32, 32, 3) and val["mask"].sum() == 4


@pytest.mark.parametrize("download", [False, True])
def test_missing_tfds_dataset_fails_fast_offline(tmp_path, monkeypatch, download):
  monkeypatch.setattr(input_pipeline, "_network_reachable", lambda: False)
  config = tiny_config(dataset="cifar10", data_dir=str(tmp_path), download=download)
  start = time.perf_counter()
  with pytest.raises(input_pipeline.DatasetUnavailableError) as error:
    input_pipeline.train_dataset(config, 4)
  assert time.perf_counter() - start < 20
  message = str(error.value)
  assert "'cifar10'" in message and str(tmp_path) in message and "tfds build cifar10" in message


def test_folder_training_reads_any_format_and_survives_unreadable_and_truncated_photos(tmp_path):
  solid = {"png": (220, 30, 30), "webp": (30, 220, 30), "tiff": (30, 30, 220)}
  for extension, rgb in solid.items():
    write_photo(str(tmp_path / f"colour.{extension}"), np.full((40, 40, 3), rgb, np.uint8))
  (tmp_path / "text.jpg").write_bytes(b"not a photo")
  good = (tmp_path / "colour.png").read_bytes()
  (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
  config = tiny_config(dataset="folder", data_dir=str(tmp_path), folder_val_fraction=0.0, shuffle_buffer_size=4)
  batches = take(input_pipeline.train_dataset(config, 4), 10)
  assert all(batch["image"].shape == (4, 16, 16, 3) for batch in batches)
  seen = {int(np.argmax(image.reshape(-1, 3).mean(0))) for batch in batches for image in batch["image"]}
  assert seen == {0, 1, 2}  # PNG, WebP and TIFF all decoded; the broken files never arrive
