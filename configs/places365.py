"""The paper's Places365 run: 256x256, batch 16.

    python main.py --config=configs/places365.py --workdir=runs/p365

Needs `places365_small` prepared by tensorflow-datasets in ArrayRecord (about 24 GB of downloads:
`tfds build places365_small --file_format=array_record --data_dir=...`, or --config.download=True
with internet).
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = "places365_small"
  config.download = True
  config.eval_split = "validation"
  config.image_size = 256
  config.batch_size = 16
  config.num_train_steps = 1_000_000
  config.log_every_steps = 200
  config.eval_every_steps = 10_000
  config.sample_every_steps = 5_000
  config.checkpoint_every_steps = 5_000
  config.model.disc_units = 5
  # The authors' tuned Places365 command (reference README: --label-smoothing 1) trains D
  # towards 0.9 for real images: one-sided label smoothing.
  config.loss.label_smoothing = 0.1
  config.num_eval_images = 2_000
  return config
