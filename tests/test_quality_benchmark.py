"""benchmarks/quality.py's own pieces: the photos it scores, the rows it keeps, the credits it shows."""

import json

import numpy as np
import pytest
import skimage.data
from PIL import Image
from skimage import color as skcolor

from benchmarks import quality
from colorize.data import input_pipeline


def test_photos_of_any_shape_are_resized_by_the_short_side_and_centre_cropped(tmp_path):
  rng = np.random.default_rng(0)
  shapes = {"landscape.png": (32, 48), "portrait.png": (60, 40), "square.png": (64, 64)}
  originals = {}
  for name, shape in shapes.items():
    originals[name] = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    Image.fromarray(originals[name]).save(tmp_path / name)
  names, images = quality.read_photos(str(tmp_path), 32)
  assert names == sorted(shapes) and images.shape == (3, 32, 32, 3)
  for name, image in zip(names, images, strict=True):
    np.testing.assert_array_equal(image, input_pipeline.center_square_crop(originals[name], 32))
  np.testing.assert_array_equal(images[0], originals["landscape.png"][:, 8:40])  # No squashing.


def row(name, data, size, psnr):
  return {"row": name, "data": data, "eval_size": size, "psnr": psnr}


def test_rows_are_kept_one_per_name_photo_set_and_size_and_tables_never_mix_sets(tmp_path):
  path = str(tmp_path / "rows.jsonl")
  quality.store_rows(path, [row("lab_mean", "/photos", 256, 21.0), row("lab_mean", quality.QUICK_DATA, 64, 15.0)])
  rows = quality.store_rows(path, [row("lab_mean", quality.QUICK_DATA, 64, 16.0)])  # A rerun of --quick.
  assert len(rows) == len(open(path).readlines()) == 2
  assert [r["psnr"] for r in quality.rows_of(rows, "/photos", 256)] == [21.0]
  assert [r["psnr"] for r in quality.rows_of(rows, quality.QUICK_DATA, 64)] == [16.0]
  old = {"row": "bundled", "data_dir": "/photos", "eval_size": 256, "psnr": 21.5}  # Written before rows had `data`.
  with open(path, "a") as f:
    f.write(json.dumps(old) + "\n")
  assert [r["row"] for r in quality.rows_of(quality.store_rows(path, []), "/photos", 256)] == ["lab_mean", "bundled"]


def test_the_quick_photo_set_credits_every_photo_it_shows(tmp_path):
  folder = quality.quick_photo_set(str(tmp_path / "set"))
  names, _ = quality.read_photos(str(tmp_path / "set" / "val"), 64)
  credits = quality.photo_credits(folder)
  assert len(names) == 4 and all(name in credits and "?" not in credits[name] for name in names)
  assert quality.showable(names, credits) == [0, 1, 2, 3]  # Public domain and CC0.


def test_a_photo_set_is_one_key_however_its_folder_was_written(tmp_path, monkeypatch):
  (tmp_path / "repo").mkdir()
  monkeypatch.chdir(tmp_path / "repo")
  path = str(tmp_path / "rows.jsonl")
  legacy = {"row": "recipe", "data_dir": "../photos", "eval_size": 256, "psnr": 21.0}  # Rows of earlier versions.
  rows = quality.store_rows(path, [legacy, row("recipe", str(tmp_path / "photos"), 256, 21.5)])
  assert [r["psnr"] for r in rows] == [21.5]
  folder = quality.outputs_folder("out", "recipe", "../photos", 256)
  assert folder == quality.outputs_folder("out", "recipe", str(tmp_path / "photos"), 256)
  assert folder != quality.outputs_folder("out", "recipe", "../photos", 64)


def test_a_run_trained_on_other_photos_is_not_scored_as_this_set(tmp_path):
  from tests.conftest import tiny_config

  (tmp_path / "run").mkdir()
  (tmp_path / "run" / "config.json").write_text(json.dumps({"config": {"data_dir": "/a", "image_size": 16}}))
  quality.check_run_data(str(tmp_path / "run"), tiny_config(data_dir="/a"))
  with pytest.raises(SystemExit, match="trained on /a at 16 px, not on /b at 16 px"):
    quality.check_run_data(str(tmp_path / "run"), tiny_config(data_dir="/b"))


def test_val_hints_are_nested_seeded_by_the_photo_and_read_off_the_real_photo():
  real = np.stack([np.asarray(Image.fromarray(skimage.data.astronaut()).resize((64, 64)))] * 2)
  drawn = quality.val_hint_points(real, [0, 1, 5])
  assert [len(p) for p in drawn[0]] == [0, 0] and [len(p) for p in drawn[5]] == [5, 5]
  np.testing.assert_array_equal(drawn[1][0], drawn[5][0][:1])  # 1 point is the first of the 5.
  assert not np.array_equal(drawn[5][0], drawn[5][1])  # Each photo its own stream, even for the same pixels.
  np.testing.assert_array_equal(drawn[5][1], quality.val_hint_points(real, [5])[5][1])  # The same for every model.
  lab = skcolor.rgb2lab(real[0])
  for x, y, size, a, b in drawn[5][0]:
    top, left, size = int(y) - int(size) // 2, int(x) - int(size) // 2, int(size)
    assert 1 <= size <= 9 and 0 <= top and top + size <= 64 and 0 <= left and left + size <= 64
    patch = lab[top : top + size, left : left + size, 1:].reshape(-1, 2).mean(0)
    np.testing.assert_allclose([a, b], patch, atol=0.05)
