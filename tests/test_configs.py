import importlib

import pytest

from colorize import train

NAMES = ("default", "demo", "cifar10", "cifar10_unet", "places365", "places365_unet")


@pytest.mark.parametrize("name", NAMES)
def test_every_config_loads_and_passes_the_start_checks(name):
  config = importlib.import_module(f"configs.{name}").get_config()
  train.check_config(config, num_devices=1)


@pytest.mark.parametrize("name", ["cifar10", "places365"])
def test_unet_baselines_differ_from_the_gan_only_in_the_objective(name):
  gan = importlib.import_module(f"configs.{name}").get_config().to_dict()
  unet = importlib.import_module(f"configs.{name}_unet").get_config().to_dict()
  assert {k for k in gan if gan[k] != unet[k]} == {"adversarial"}
