"""The paper's baseline on CIFAR-10: the same U-Net trained by L1 regression alone, no discriminator.

    python main.py --config=configs/cifar10_unet.py          # then --mode=evaluate on both runs

Identical to configs/cifar10.py but for `adversarial=False`, so the two runs compare the GAN
objective with plain regression and nothing else.
"""

from configs import cifar10


def get_config():
  config = cifar10.get_config()
  config.adversarial = False
  return config
