import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from colorize.data import input_pipeline
from colorize.measuring import compare
from colorize.measuring import evaluate
from colorize.networks import inference
from colorize.runs import run_setup
from colorize.training import train
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
  # The metrics' header, 6 metrics, the PSNR gain over gray, the step; the settings' header, then their rows.
  assert sum(line.startswith("| ") and "`" not in line for line in table.splitlines()) == 1 + 6 + 2 + 1
  assert "| adversarial | `True` | `False` |" in table and "at 16x16 px: the largest centred square" in table
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
    assert [float(cell.split(" [")[0]) for cell in cells] == pytest.approx(expected, abs=5e-5), label
    if key != "delta_colorfulness":  # Each per-image mean with its 95% interval (the gap is of two means).
      low, high = (float(x) for x in cells[0].split(" [")[1].rstrip("]").split(", "))
      assert low <= float(cells[0].split(" [")[0]) <= high
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

  # Metrics older than the run's newest checkpoint are not reported: the run is evaluated again.
  metrics_path = os.path.join(unet_run, "eval", "metrics.json")
  stale = json.loads(open(metrics_path).read()) | {"step": 1, "psnr": -1.0}
  with open(metrics_path, "w") as f:
    json.dump(stale, f)
  compare.compare([trained_run, unet_run], str(out), num_images=4, overwrite=True)
  fresh = json.loads((out / "comparison.json").read_text())["runs"][unet_run]
  assert fresh["step"] == 2 and fresh["psnr"] != -1.0


@pytest.mark.slow
def test_runs_are_evaluated_and_compared_at_a_chosen_common_size(trained_run, unet_run, tmp_path):
  """A 16 px GAN evaluated at 32 px (its discriminator does not fit that size; the generator does)."""
  config = run_setup.saved_config(trained_run)
  with config.unlocked():
    config.image_size = 32
  metrics = evaluate.evaluate_run(config, trained_run, num_images=4)
  assert metrics["image_size"] == 32 and "trained at 16 px" in metrics["resolution"]
  assert os.path.isfile(os.path.join(trained_run, "eval-32px", "report.md"))  # Beside the run's own eval/.
  compare.compare([trained_run, unet_run], str(tmp_path / "out"), num_images=2, eval_images=4, eval_size=32)
  runs = json.loads((tmp_path / "out" / "comparison.json").read_text())["runs"]
  assert {m["image_size"] for m in runs.values()} == {32}
  assert "# Comparison on 4 held-out images, at 32x32 px" in (tmp_path / "out" / "comparison.md").read_text()


def test_runs_evaluated_on_different_data_are_refused():
  small, large = tiny_config(), tiny_config(image_size=32)
  with pytest.raises(ValueError, match=r"trained at different sizes \(a: 16 px, b: 32 px\): pass --eval_size=N"):
    compare.common_size([small, large], ["a", "b"], eval_size=0)
  assert compare.common_size([small, large], ["a", "b"], eval_size=24) == 24
  assert compare.common_size([small, small], ["a", "b"], eval_size=0) == 16
  with pytest.raises(ValueError, match=r"config.data_dir: a: '', b: '/x'"):
    compare.check_same_eval_data([small, tiny_config(data_dir="/x")], ["a", "b"])
  with pytest.raises(ValueError, match="same --eval_images"):
    compare.check_same_image_count([{"num_images": 4}, {"num_images": 8}], ["a", "b"])
  # A folder's split does not depend on the seed: runs that differ only in it compare.
  folder = {"dataset": "folder", "data_dir": "/photos"}
  compare.check_same_eval_data([tiny_config(seed=0, **folder), tiny_config(seed=1, **folder)], ["a", "b"])
  with pytest.raises(ValueError, match="config.folder_val_fraction"):
    compare.check_same_eval_data([tiny_config(**folder), tiny_config(folder_val_fraction=0.2, **folder)], ["a", "b"])


def test_command_line_needs_two_runs_and_an_output(tmp_path):
  command = [sys.executable, "-m", "colorize.measuring.compare", str(tmp_path), "--output", str(tmp_path / "out")]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
  assert result.returncode == 2 and "--runs=RUN_A,RUN_B" in result.stderr
