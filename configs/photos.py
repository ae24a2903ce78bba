"""Train on a folder of your own photos: the best recipe measured by `benchmarks/quality.py`.

    python main.py --config=configs/photos.py --config.data_dir=/path/to/photos --workdir=runs/mine

The folder's `train/` and `val/` subfolders are the splits (otherwise a fixed share is held out).
Sized for a CPU: 64x64 crops, the demo's narrow networks; the colorize mode still writes full
resolution (the generator's a,b are upsampled onto each photo's own lightness). The README's
"Quality" section measures each switch below, added one at a time.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = "folder"
  config.image_size = 64
  config.batch_size = 16
  config.num_train_steps = 4_000  # About 30 minutes on 2 CPU cores (38 images/s).
  config.num_eval_images = 60
  config.num_sample_images = 8
  config.log_every_steps = 100
  config.eval_every_steps = 500
  config.sample_every_steps = 500
  config.checkpoint_every_steps = 500
  config.model.base_width = 16
  config.model.depth = 4
  config.model.disc_base_width = 16
  config.model.disc_units = 4

  # The recipe, in the order the benchmark adds it to the paper's GAN:
  config.model.output = "ab"  # Predict a,b and keep the photo's own lightness (the paper predicts L too).
  config.min_crop_fraction = 0.5  # Scale jitter: random squares of 50-100% of the short side.
  config.min_colorfulness = 10.0  # Skip near-gray photos with a faint cast (colourfulness under 10).
  config.pretrain_steps = 1_000  # G alone by L1 first: the GAN starts from a sane colorizer.
  config.ema_decay = 0.999  # Validate, sample and colorize with the moving average of G's weights.
  config.model.disc_norm = "spectral"  # Spectral norm instead of BatchNorm in D.
  # Class rebalancing (loss.rebalance = 0.5) paints more vividly (colourfulness gap 28 -> 12) but
  # costs 1.3 dB of PSNR in the benchmark: off here, a switch for users who want vivid colour.
  config.loss.rebalance = 0.0
  return config
