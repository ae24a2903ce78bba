import errno
import os

import orbax.checkpoint as ocp
import pytest

from colorize.runs import checkpoint
from colorize.training import compiled
from colorize.training import steps
from colorize.training import train
from tests.conftest import assert_trees_equal
from tests.conftest import params_of
from tests.conftest import tiny_config
from tests.conftest import train_losses


@pytest.mark.slow
def test_a_failed_save_stops_the_run_naming_the_step_and_keeps_older_checkpoints(tmp_path, monkeypatch):
  real_save = ocp.CheckpointManager.save

  def save_until_the_disk_fills(self, step, *args, **kwargs):
    if step == 4:
      raise OSError(errno.ENOSPC, "No space left on device")
    return real_save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save_until_the_disk_fills)
  with pytest.raises(OSError, match="could not save the checkpoint of step 4 in .*No space left on device"):
    train.train_and_evaluate(tiny_config(num_train_steps=4), str(tmp_path))
  assert params_of(str(tmp_path))[0] == 2


@pytest.mark.slow
def test_a_damaged_newest_checkpoint_falls_back_to_the_one_before(tmp_path):
  reference, damaged = str(tmp_path / "reference"), str(tmp_path / "damaged")
  train.train_and_evaluate(tiny_config(num_train_steps=4), reference)
  train.train_and_evaluate(tiny_config(num_train_steps=4), damaged)
  newest = os.path.join(checkpoint.checkpoint_dir(damaged), "4", "generator")
  for folder, _, files in os.walk(newest):  # Truncate every file of the newest generator.
    for name in files:
      open(os.path.join(folder, name), "w").close()
  train.train_and_evaluate(tiny_config(num_train_steps=4), damaged)  # Falls back to 2, trains 3 and 4 again.
  assert_trees_equal(params_of(damaged)[1].generator, params_of(reference)[1].generator)
  assert train_losses(damaged) == train_losses(reference)
  assert [n.split("-")[0] for n in os.listdir(os.path.join(damaged, "damaged_checkpoints"))] == ["4"]  # kept aside

  for step in ("2", "4"):
    for folder, _, files in os.walk(os.path.join(checkpoint.checkpoint_dir(damaged), step, "generator")):
      for name in files:
        open(os.path.join(folder, name), "w").close()
  with pytest.raises(checkpoint.NoUsableCheckpointError, match="none of the checkpoints"):
    train.train_and_evaluate(tiny_config(num_train_steps=6), damaged)


def test_checkpoints_of_earlier_versions_give_their_data_position():
  # Before the global input stream, each process saved its own (epoch, index) row.
  assert checkpoint.data_position({"step": 8, "positions": [[3, 17], [3, 15]]}) == {"epoch": 3, "index": 17}
  assert checkpoint.data_position({"step": 8, "epoch": 2, "index": 5}) == {"epoch": 2, "index": 5}


def test_weights_of_another_run_bring_its_parameters_and_batch_statistics_and_a_fresh_optimiser(trained_run):
  source = trained_run
  fresh, _ = compiled.setup(tiny_config(), steps.make_mesh())
  loaded, step = checkpoint.load_weights(source, fresh)
  _, saved = params_of(source)
  assert step == 2 and int(loaded.step) == 0
  for network in ("generator", "discriminator"):
    assert_trees_equal(getattr(loaded, network).params, saved[network]["params"])
    assert_trees_equal(getattr(loaded, network).batch_stats, saved[network]["batch_stats"])
    assert_trees_equal(getattr(loaded, network).opt_state, getattr(fresh, network).opt_state)  # Adam starts afresh
