"""The paper's baseline on Places365: the same U-Net trained by L2 regression alone.

    python main.py --config=configs/places365_unet.py --workdir=runs/p365_unet

Identical to configs/places365.py but for the objective: `adversarial=False`, an L2 loss and one G
update per batch (the paper's baseline minimises the Euclidean distance).
"""

from configs import places365


def get_config():
  config = places365.get_config()
  config.adversarial = False
  config.loss.regression = "l2"  # The paper's baseline minimises the Euclidean distance.
  config.generator_steps_per_batch = 1  # No discriminator to keep up with: one update per batch.
  return config
