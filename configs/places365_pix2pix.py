"""The paper's GAN on Places365 with pix2pix's networks: the 4x4 stride-2 U-Net and the 70x70 PatchGAN.

    python main.py --config=configs/places365_pix2pix.py --workdir=runs/p365_pix2pix

Identical to configs/places365.py but for the networks (Isola et al. 2017: `unet_256`, eight
levels with transposed convolutions and dropout 0.5, and the PatchGAN with three stride-2 units),
so a comparison with runs/p365 isolates the architecture.
"""

from configs import places365


def get_config():
  config = places365.get_config()
  config.model.generator = "pix2pix"
  config.model.depth = 8  # 256 px down to 1x1, as pix2pix's unet_256.
  config.model.upsample = "transpose"
  config.model.discriminator = "patchgan"
  config.model.disc_units = 3  # 70x70 receptive field.
  return config
