"""The paper's baseline on Places365: the same U-Net trained by L1 regression alone.

    python main.py --config=configs/places365_unet.py --workdir=runs/p365_unet

Identical to configs/places365.py but for `adversarial=False`.
"""

from configs import places365


def get_config():
  config = places365.get_config()
  config.adversarial = False
  return config
