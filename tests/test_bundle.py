"""Exported generators (colorize/runs/bundle.py): the same colours as their run, checked before use."""

import os
import shutil

import jax
import numpy as np
import pytest
import skimage.data

from colorize import color
from colorize.colouring import predict
from colorize.data import photos
from colorize.exporting import export
from colorize.measuring import evaluate
from colorize.networks import inference
from colorize.runs import bundle
from colorize.runs import run_setup
from colorize.runs.run_setup import UsageError
from tests.conftest import run_main
from tests.conftest import tiny_config
from tests.test_main import HINT


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
  """The shared tiny run, exported."""
  folder = tmp_path_factory.mktemp("bundle")
  (folder / "facts.json").write_text('{"trained_on": "the demo photos"}')
  export.export_bundle(trained_run, str(folder / "weights"), str(folder / "facts.json"))
  return str(folder / "weights")


def coffee_photo(size=(70, 90)):
  """A photo bundled with scikit-image, as the colorize mode reads it."""
  from PIL import Image

  rgb = np.asarray(Image.fromarray(skimage.data.coffee()).resize(size[::-1]))
  return photos.Photo("coffee", "", rgb, None)


def colorize_with(source, config, photo):
  generator, variables, _ = inference.load_generator(config, source)
  return predict.colorize_group(generator, variables, [photo], config.image_size, 2**config.model.depth)[0]


def test_a_bundle_colours_exactly_as_its_run_and_keeps_the_lightness(trained_run, exported):
  config = bundle.bundle_config(exported)
  assert bundle.read_manifest(exported)["trained_on"] == "the demo photos"
  _, run_variables, run_step = inference.load_generator(run_setup.saved_config(trained_run), trained_run)
  _, bundle_variables, bundle_step = inference.load_generator(config, exported)
  assert bundle_step == run_step == 2
  jax.tree.map(np.testing.assert_array_equal, jax.device_get(bundle_variables), jax.device_get(run_variables))
  photo = coffee_photo()
  first, again = colorize_with(exported, config, photo), colorize_with(exported, config, photo)
  np.testing.assert_array_equal(first, again)
  np.testing.assert_array_equal(first, colorize_with(trained_run, run_setup.saved_config(trained_run), photo))
  gap = np.abs(color.lightness(first) - color.lightness(photo.rgb))
  assert gap.mean() < 0.5 and np.percentile(gap, 95) < 1.0  # The rest: colours clipped to the sRGB gamut.


def test_a_damaged_or_missing_bundle_is_a_clear_error(exported, tmp_path):
  damaged = str(tmp_path / "damaged")
  shutil.copytree(exported, damaged)
  with open(os.path.join(damaged, bundle.WEIGHTS_FILE), "r+b") as f:
    f.seek(100)
    f.write(b"\x00\x01\x02")
  config = bundle.bundle_config(damaged)
  with pytest.raises(UsageError, match=r"generator.msgpack is damaged \(SHA-256 .*restore it"):
    inference.load_generator(config, damaged)
  os.remove(os.path.join(damaged, bundle.WEIGHTS_FILE))
  with pytest.raises(UsageError, match="generator.msgpack is missing"):
    inference.load_generator(config, damaged)
  with pytest.raises(UsageError, match="no trained generator at"):
    bundle.bundle_config(str(tmp_path / "nowhere"))
  with pytest.raises(UsageError, match="already holds a bundle"):
    bundle.export(config, {}, 0, exported)


@pytest.mark.slow
def test_the_command_line_colours_with_exported_weights_and_names_a_damaged_file(exported, tmp_path):
  inputs = tmp_path / "in"
  inputs.mkdir()
  from PIL import Image

  Image.fromarray(coffee_photo().rgb).save(inputs / "coffee.jpg")
  done = run_main("--mode=colorize", f"--weights={exported}", f"--input={inputs}", f"--output={tmp_path / 'out'}")
  assert done.returncode == 0, done.stderr
  assert os.path.exists(tmp_path / "out" / "coffee.png")
  damaged = str(tmp_path / "damaged")
  shutil.copytree(exported, damaged)
  with open(os.path.join(damaged, bundle.WEIGHTS_FILE), "ab") as f:
    f.write(b"!")
  failed = run_main("--mode=colorize", f"--weights={damaged}", f"--input={inputs}", f"--output={tmp_path / 'o2'}")
  assert failed.returncode == 2
  lines = failed.stderr.strip().splitlines()
  assert lines[-1] == HINT and "is damaged" in lines[-2], failed.stderr


@pytest.mark.slow  # 7 s or more on 2 cores.
def test_evaluating_a_bundle_scores_its_run_whatever_the_data_config_says(trained_run, exported, tmp_path):
  run_metrics = evaluate.evaluate_run(run_setup.saved_config(trained_run), trained_run, output_dir=str(tmp_path / "a"))
  data_config = tiny_config(ema_decay=0.9)  # A recipe config: its average must not replace the bundle's weights.
  bundle_metrics = evaluate.evaluate_run(
    bundle.bundle_config(exported, data_config), exported, output_dir=str(tmp_path / "b")
  )
  for key in ("accuracy", "mae_rgb", "psnr", "ssim", "colorfulness", "num_images", "step"):
    assert bundle_metrics[key] == pytest.approx(run_metrics[key], rel=1e-6), key
  assert os.path.exists(tmp_path / "b" / "report.md")
  with pytest.raises(UsageError, match="needs --output"):
    evaluate.evaluate_run(bundle.bundle_config(exported), exported)


def test_the_shipped_model_is_checked_loads_and_colours_a_photo_alike_every_time():
  manifest = bundle.read_manifest(bundle.BUNDLED)
  assert manifest["bytes"] <= 25 * 2**20 and manifest["step"] > 0 and "train/" in manifest["trained_on"]
  assert bundle.sha256_of(os.path.join(bundle.BUNDLED, manifest["file"])) == manifest["sha256"]
  config = bundle.bundle_config(bundle.BUNDLED)
  photo = coffee_photo((300, 400))
  first = colorize_with(bundle.BUNDLED, config, photo)
  np.testing.assert_array_equal(first, colorize_with(bundle.BUNDLED, config, photo))
  gap = np.abs(color.lightness(first) - color.lightness(photo.rgb))
  assert gap.mean() < 0.5 and np.percentile(gap, 95) < 1.0
  assert color.rgb_to_lab(first / 255.0, np)[..., 1:].std() > 2.0  # It colours: not the gray input back.
