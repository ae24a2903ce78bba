"""The tests' tiny preset: the demo shrunk to 16 px, width 4, batch 4.

    python main.py --config=configs/test.py --workdir=/tmp/t      # a whole run in seconds on a CPU

A full run compiles and trains in seconds; tests override what they check.
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.image_size = 16
  config.batch_size = 4
  config.num_eval_images = 4
  config.num_sample_images = 2
  config.num_train_steps = 4
  config.log_every_steps = 1
  config.eval_every_steps = 2
  config.sample_every_steps = 2
  config.checkpoint_every_steps = 2
  config.judge = False  # The judge compiles EfficientNet-Lite2 at 260 px: the tests that need it turn it on.
  config.data_workers = 0  # Threads: worker processes would cost each test seconds to start.
  config.model.base_width = 4
  config.model.depth = 2
  config.model.disc_base_width = 4
  config.model.disc_units = 2
  return config
