import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from colorize import color
from colorize import metrics as metrics_lib
from colorize.data import input_pipeline
from colorize.measuring import baselines
from colorize.measuring import evaluate
from colorize.networks import inference
from colorize.runs.run_setup import UsageError
from colorize.training import train
from tests.conftest import tiny_config

KEYS = {"accuracy", "mae_rgb", "psnr", "ssim", "colorfulness", "delta_colorfulness", "num_images", "step"}


def test_evaluate_writes_metrics_with_the_gray_baseline_a_report_and_a_grid(trained_run):
  workdir, config = trained_run, tiny_config(num_train_steps=2)
  returned = evaluate.evaluate_run(config, workdir)
  with open(os.path.join(workdir, "eval", "metrics.json")) as f:
    metrics = json.load(f)
  assert metrics == returned
  assert KEYS <= metrics.keys() and KEYS <= metrics["baselines"]["gray"].keys()
  assert KEYS <= metrics["kept_l"].keys()
  assert metrics["step"] == 2 and metrics["num_images"] == 12  # every held-out demo tile
  gray = metrics["baselines"]["gray"]
  assert gray["colorfulness"] == pytest.approx(0.0, abs=1.0)  # a = b = 0: (almost) no colour
  assert gray["delta_colorfulness"] == pytest.approx(metrics["real_colorfulness"], abs=1.0)
  assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["mae_rgb"] > 0
  report = open(os.path.join(workdir, "eval", "report.md")).read()
  assert "| MAE, RGB 0..255 (lower is better) |" in report and "grid.png" in report
  assert "at 16x16 px: the largest centred square of each photo, resized" in report
  low, high = metrics["intervals"]["psnr"]
  assert low <= metrics["psnr"] <= high and f"{metrics['psnr']:.4f} [{low:.4f}, {high:.4f}]" in report
  assert "PSNR gain over the gray input, paired image by image" in report
  assert workdir not in report  # The run's name, not its path.
  page = open(os.path.join(workdir, "eval", "report.html")).read()  # The same report for a browser.
  assert "<table>" in page and '<img alt="gray | real | generated" src="grid.png"' in page
  assert os.path.getsize(os.path.join(workdir, "eval", "grid.png")) > 0


def test_evaluate_without_a_checkpoint_is_a_clear_error_and_creates_nothing(tmp_path):
  with pytest.raises(UsageError, match="no checkpoint in .*: train the run first"):
    evaluate.evaluate_run(tiny_config(), str(tmp_path))
  assert os.listdir(tmp_path) == []


@pytest.mark.slow
def test_a_model_that_predicts_lightness_is_also_scored_as_colorize_writes_it(tmp_path):
  config = tiny_config(num_train_steps=1, **{"model.output": "lab"})
  train.train_and_evaluate(config, str(tmp_path))
  metrics = evaluate.evaluate_run(config, str(tmp_path), num_images=7)  # Batches of 4: the last one padded.
  assert metrics["num_images"] == 7
  # Recomputed independently: G's a,b joined with the input's own L.
  generator, variables, _ = inference.load_generator(config, str(tmp_path))
  images = np.stack(list(input_pipeline.eval_dataset(config, num_images=7).images()))
  assert len(images) == 7
  lightness = color.uint8_rgb_to_normalized_lab(images)[..., :1]
  predicted = generator.apply(variables, lightness, train=False)
  expected = metrics_lib.image_metrics(jnp.concatenate([lightness, predicted[..., 1:]], -1), images)
  predicted_rgb = color.normalized_lab_to_uint8_rgb(predicted)
  own = metrics_lib.image_metrics(color.uint8_rgb_to_normalized_lab(predicted_rgb), images)
  for key in ("accuracy", "mae_rgb", "psnr", "ssim", "colorfulness"):
    assert metrics["kept_l"][key] == pytest.approx(float(expected[key].mean()), rel=1e-4, abs=1e-6), key
  assert metrics["mae_rgb"] == pytest.approx(float(own["mae_rgb"].mean()), rel=1e-3)  # G's own L, the paper's way
  assert metrics["kept_l"]["psnr"] != pytest.approx(metrics["psnr"], rel=1e-3)  # G's own L differs
  assert "input L kept" in open(os.path.join(str(tmp_path), "eval", "report.md")).read()
  # The classic colorizers, fitted on the first training images, on the same 7 images.
  tables = baselines.fit(input_pipeline.first_training_images(config, evaluate.CLASSIC_FIT_IMAGES))
  for name in ("mean_ab", "ab_of_l", "ab_of_l_texture"):
    outputs = np.stack([baselines.colorize(tables, name, image) for image in images])
    scores = metrics_lib.output_metrics(outputs, images)
    for key in ("accuracy", "mae_rgb", "psnr", "ssim", "colorfulness"):
      expected_value = float(scores[key].mean())
      assert metrics["baselines"][name][key] == pytest.approx(expected_value, rel=1e-4, abs=1e-6), (name, key)
    assert metrics["baselines"][name]["num_images"] == 7


def test_evaluating_the_bundle_without_an_output_says_what_is_evaluated_and_both_ways_out():
  from colorize.runs import bundle
  from colorize.runs import run_setup

  with pytest.raises(run_setup.UsageError, match=r"(?s)weights \(a bundle, no run\) needs --output=DIR.*--workdir=RUN"):
    evaluate.evaluate_run(bundle.bundle_config(bundle.BUNDLED), bundle.BUNDLED)


def test_intervals_are_bootstraps_of_the_real_images_alone():
  from colorize import metrics as metrics_lib

  rng = np.random.default_rng(0)
  batches = []
  for mask in (np.ones(4), np.array([1.0, 1.0, 0.0, 0.0])):  # The last batch padded with two copies.
    psnr, gray = rng.normal(20, 2, 4), rng.normal(19, 2, 4)
    batches.append({"psnr": psnr, "gray/psnr": gray, "mae_rgb": psnr * 0 + 1000 * (1 - mask), "l1": psnr, "mask": mask})
  spread = evaluate.intervals(batches)
  real = np.concatenate([b["psnr"] for b in batches])[[0, 1, 2, 3, 4, 5]]
  gray = np.concatenate([b["gray/psnr"] for b in batches])[[0, 1, 2, 3, 4, 5]]
  assert spread["psnr"] == list(metrics_lib.bootstrap_interval(real))
  assert spread["psnr_vs_gray"] == list(metrics_lib.bootstrap_interval(real - gray))
  assert spread["mae_rgb"] == [0.0, 0.0]  # The padding's 1000s left out.
  assert "l1" not in spread  # Only the report's metrics.


@pytest.mark.slow  # The judge compiles EfficientNet-Lite2 at 260 px (about 10 s).
def test_evaluate_reports_the_judges_agreement_for_the_model_and_gray(trained_run, tmp_path):
  from colorize.measuring import judge

  config = tiny_config(num_train_steps=2, judge=True)
  metrics = evaluate.evaluate_run(config, trained_run, num_images=5, output_dir=str(tmp_path))
  generator, variables, _ = inference.load_generator(config, trained_run)
  real = np.stack(list(input_pipeline.eval_dataset(config, num_images=5).images()))
  colorized = np.asarray(inference.colorize_images(generator, variables, real))
  classifier = judge.ImageNetJudge()
  assert metrics["agreement"] == pytest.approx(classifier.agreement(real, colorized).mean())
  gray = classifier.agreement(real, inference.gray_version(real)).mean()
  assert metrics["baselines"]["gray"]["agreement"] == pytest.approx(gray)
  report = open(tmp_path / "report.md").read()
  assert "Classifier agreement (EfficientNet-Lite2's ImageNet top-1 class the same as for the real image): " in report
