import json
import os

import pytest

from colorize import evaluate
from tests.conftest import tiny_config

KEYS = {"accuracy", "mae_rgb", "psnr", "ssim", "colorfulness", "delta_colorfulness", "num_images", "step"}


def test_evaluate_writes_metrics_with_the_gray_baseline_a_report_and_a_grid(trained_run):
  workdir, config = trained_run, tiny_config(num_train_steps=2)
  returned = evaluate.evaluate_run(config, workdir)
  with open(os.path.join(workdir, "eval", "metrics.json")) as f:
    metrics = json.load(f)
  assert metrics == returned
  assert KEYS <= metrics.keys() and KEYS <= metrics["baselines"]["gray"].keys()
  assert metrics["step"] == 2 and metrics["num_images"] == 12  # every held-out demo tile
  gray = metrics["baselines"]["gray"]
  assert gray["colorfulness"] == pytest.approx(0.0, abs=1.0)  # a = b = 0: (almost) no colour
  assert gray["delta_colorfulness"] == pytest.approx(metrics["real_colorfulness"], abs=1.0)
  assert 0.0 <= metrics["accuracy"] <= 1.0 and metrics["mae_rgb"] > 0
  report = open(os.path.join(workdir, "eval", "report.md")).read()
  assert "| MAE, RGB 0..255 (lower is better) |" in report and "grid.png" in report
  assert os.path.getsize(os.path.join(workdir, "eval", "grid.png")) > 0


def test_evaluate_without_a_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="train the run first"):
    evaluate.evaluate_run(tiny_config(), str(tmp_path))
