"""Train on a folder of your own photos: the best recipe measured by `benchmarks/quality.py`.

    python main.py --config=configs/photos.py --config.data_dir=/path/to/photos --workdir=runs/mine

The folder's `train/` and `val/` subfolders are the splits (otherwise a fixed share is held out).
Sized for a CPU: 64x64 crops, the demo's narrow networks; the colorize mode still writes full
resolution (the generator's a,b are upsampled onto each photo's own lightness). The README's
"Quality" section gives each choice below its measured effect.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = "folder"
  config.image_size = 64
  config.min_crop_fraction = 0.5  # Scale jitter: random squares of 50-100% of the short side.
  config.batch_size = 16
  config.num_train_steps = 4_000  # About 30 minutes on 2 CPU cores (the GAN: 38 images/s).
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
  # Predict a,b and keep the photo's own lightness (the paper predicts L, a and b).
  config.model.output = "ab"
  return config
