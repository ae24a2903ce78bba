"""The paper's baseline on CIFAR-10: the same U-Net trained by L2 regression alone.

    python main.py --config=configs/cifar10_unet.py          # then --mode=evaluate on both runs

Identical to configs/cifar10.py but for the objective: `adversarial=False`, an L2 loss and one G
update per batch: the two runs compare the GAN objective with plain regression.
"""

from configs import cifar10


def get_config():
  config = cifar10.get_config()
  config.adversarial = False
  config.loss.regression = "l2"  # The paper's baseline minimises the Euclidean distance.
  config.generator_steps_per_batch = 1  # No discriminator to keep up with: one update per batch.
  return config
