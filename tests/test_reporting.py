import json

import jax
import numpy as np
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from colorize.runs import reporting
from colorize.training import steps
from tests.conftest import tiny_config


def test_tensorboard_files_hold_the_scalars_and_the_image_without_tensorflow(tmp_path):
  writer = reporting.TensorBoardWriter(str(tmp_path))
  writer.scalars(3, {"train/g_loss": 1.5, "eval/psnr": 20.25})
  grid = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
  writer.image(3, "samples", grid)
  writer.close()
  events = EventAccumulator(str(tmp_path))
  events.Reload()
  assert [(e.step, e.value) for e in events.Scalars("train/g_loss")] == [(3, 1.5)]
  assert [(e.step, e.value) for e in events.Scalars("eval/psnr")] == [(3, 20.25)]
  (image,) = events.Images("samples")
  assert (image.step, image.height, image.width) == (3, 8, 12)


def test_console_line_shows_the_losses_and_the_skipped_photos():
  line = reporting.console_line(
    10, 20, {"train/d_loss": 0.5, "train/g_loss": 12.0, "train/accuracy": 0.25, "train/gray_images_skipped": 3}
  )
  assert line == "step 10/20 | D 0.5000 | G 12.0000 | acc@2 25.0% | 3 gray photos skipped"


def test_a_resumed_run_forgets_the_lines_past_its_checkpoint_and_a_torn_line(tmp_path):
  run = reporting.RunFolder(str(tmp_path), tiny_config(), steps.make_mesh(jax.devices()[:1]))
  for step in (1, 2, 3):
    run.write_scalars(step, {"train/g_loss": float(step)})
  run.close()
  with open(tmp_path / "metrics.jsonl", "a") as f:
    f.write('{"step": 4, "train/g_lo')  # Cut short by a kill.
  run.forget_metrics_after(2)
  assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
  assert json.loads((tmp_path / "config.json").read_text())["config"]["image_size"] == 16


def test_the_config_is_in_tensorboards_hparams_tab(tmp_path):
  from tensorboard.plugins.hparams import plugin_data_pb2

  writer = reporting.TensorBoardWriter(str(tmp_path))
  writer.hparams(0, tiny_config(seed=7))
  writer.close()
  events = EventAccumulator(str(tmp_path))
  events.Reload()
  (content,) = events.PluginTagToContent("hparams").values()
  start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
  assert start.hparams["seed"].number_value == 7 and start.hparams["model.encoder"].string_value == "unet"
  assert start.hparams["optim.g_learning_rate"].number_value == tiny_config().optim.g_learning_rate
