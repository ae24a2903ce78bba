"""Offline demo: trains a small GAN on the colour photos bundled with scikit-image.

    python main.py --config=configs/demo.py          # writes runs/demo

Needs no download. Random 48x48 crops of six photos; the held-out chelsea and coffee photos
are the validation set, and the last sample grid (printed at the end) shows them colorized.
A few minutes on a 2-core CPU; not a good colorizer, but every part of the program runs.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = "demo"
  config.image_size = 48
  config.min_crop_fraction = 0.15
  config.batch_size = 16
  config.num_eval_images = 12
  config.num_sample_images = 12
  config.num_train_steps = 200
  config.log_every_steps = 25
  config.eval_every_steps = 100
  config.sample_every_steps = 100
  config.checkpoint_every_steps = 100
  config.model.base_width = 16
  config.model.depth = 4
  # Predict a and b and keep the photo's own lightness: after a few minutes of training this
  # looks far better than the paper's 3-channel output, which must also relearn L.
  config.model.output = "ab"
  config.model.disc_base_width = 16
  config.model.disc_units = 4
  return config
