import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from colorize import compare
from colorize import evaluate
from colorize import inference
from colorize import input_pipeline
from colorize import run_setup
from colorize import train
from tests.conftest import tiny_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def unet_run(tmp_path_factory):
  """The regression-only twin of `trained_run`: the paper's baseline, same data and size."""
  workdir = str(tmp_path_factory.mktemp("unet_run"))
  train.train_and_evaluate(tiny_config(num_train_steps=2, adversarial=False), workdir)
  return workdir


@pytest.mark.slow
def test_compare_writes_one_table_and_one_grid_of_the_same_images(trained_run, unet_run, tmp_path):
  out = tmp_path / "comparison"
  compare.compare([trained_run, unet_run], str(out), num_images=4)

  table = (out / "comparison.md").read_text()
  names = [os.path.basename(trained_run), os.path.basename(unet_run)]
  assert f"| metric | {names[0]} | {names[1]} | gray baseline |" in table
  assert sum(line.startswith("|") for line in table.splitlines()) == 2 + 6 + 1  # header, rule, 6 metrics, step
  summary = json.loads((out / "comparison.json").read_text())["runs"]
  for run in (trained_run, unet_run):  # Runs without a report are evaluated first, then reused.
    assert summary[run] == json.loads(open(os.path.join(run, "eval", "metrics.json")).read())

  rows = {line.split(" | ")[0].lstrip("| "): line.strip(" |").split(" | ")[1:] for line in table.splitlines()[4:10]}
  for label, cells in rows.items():  # Every cell is its run's own metrics.json value, then the gray baseline.
    key = next(
      k
      for k, text in evaluate.METRIC_LABELS.items()
      if label == text.format(real=summary[trained_run]["real_colorfulness"])
    )
    expected = [summary[trained_run][key], summary[unet_run][key], summary[trained_run]["baselines"]["gray"][key]]
    assert [float(cell) for cell in cells] == pytest.approx(expected, abs=5e-5), label
  assert len(rows) == 6

  grid = np.asarray(Image.open(out / "comparison.png"))
  assert grid.shape == (2 * (16 + 2), 2 * (4 * 16 + 2), 3)  # 4 images, 2 groups a row: gray|real|GAN|U-Net
  real = input_pipeline.validation_images(tiny_config(), 4)
  for column, run in ((2, trained_run), (3, unet_run)):  # Each column is its own run's output.
    generator, variables, _ = inference.load_generator(tiny_config(), run)
    own = np.asarray(inference.colorize_images(generator, variables, real))
    for i in range(4):
      top, left = (i // 2) * 18, (i % 2) * (4 * 16 + 2) + column * 16
      np.testing.assert_array_equal(grid[top : top + 16, left : left + 16], own[i])

  with pytest.raises(run_setup.UsageError, match="--overwrite"):
    compare.compare([trained_run, unet_run], str(out))


def test_runs_evaluated_on_different_data_are_refused():
  small, large = tiny_config(), tiny_config(image_size=32)
  with pytest.raises(ValueError, match=r"config.image_size: a: 16, b: 32"):
    compare.check_same_eval_data([small, large], ["a", "b"])
  with pytest.raises(ValueError, match="same --eval_images"):
    compare.check_same_image_count([{"num_images": 4}, {"num_images": 8}], ["a", "b"])
  # A folder's split does not depend on the seed: runs that differ only in it compare.
  folder = {"dataset": "folder", "data_dir": "/photos"}
  compare.check_same_eval_data([tiny_config(seed=0, **folder), tiny_config(seed=1, **folder)], ["a", "b"])
  with pytest.raises(ValueError, match="config.folder_val_fraction"):
    compare.check_same_eval_data([tiny_config(**folder), tiny_config(folder_val_fraction=0.2, **folder)], ["a", "b"])


def test_command_line_needs_two_runs_and_an_output(tmp_path):
  command = [sys.executable, "-m", "colorize.compare", str(tmp_path), "--output", str(tmp_path / "out")]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2 and "--runs=RUN_A,RUN_B" in result.stderr
