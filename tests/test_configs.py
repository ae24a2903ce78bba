import importlib
import os

import pytest

from colorize.training import config_checks

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
# from_run.py is an existing run's config (configs/from_run.py:RUN): tests/test_run_record.py checks it.
NAMES = sorted(
  name[:-3] for name in os.listdir(CONFIGS) if name.endswith(".py") and name not in ("__init__.py", "from_run.py")
)


@pytest.mark.parametrize("name", NAMES)
def test_every_config_loads_and_passes_the_start_checks(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  config_checks.check_config(config, num_devices=1)


@pytest.mark.parametrize("name", ["cifar10", "places365"])
def test_unet_baselines_differ_from_the_gan_only_in_the_objective(name):
  gan = importlib.import_module(f"configs.{name}").get_config().to_dict()
  unet = importlib.import_module(f"configs.{name}_unet").get_config().to_dict()
  assert {k for k in gan if gan[k] != unet[k]} == {"adversarial", "loss", "generator_steps_per_batch"}
  assert {k for k in gan["loss"] if gan["loss"][k] != unet["loss"][k]} == {"regression"}
  assert (unet["loss"]["regression"], unet["generator_steps_per_batch"]) == ("l2", 1)  # The paper's Euclidean loss.


def test_places365_uses_the_authors_one_sided_label_smoothing():
  assert importlib.import_module("configs.places365").get_config().loss.label_smoothing == 0.1


def test_pix2pix_variant_differs_from_the_paper_only_in_the_networks():
  paper = importlib.import_module("configs.places365").get_config().to_dict()
  variant = importlib.import_module("configs.places365_pix2pix").get_config().to_dict()
  assert {k for k in paper if paper[k] != variant[k]} == {"model"}
  changed = {k for k in paper["model"] if paper["model"][k] != variant["model"][k]}
  assert changed == {"generator", "discriminator", "depth", "upsample", "disc_units"}
