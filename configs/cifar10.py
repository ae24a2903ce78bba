"""The paper's CIFAR-10 run: 32x32, batch 128, 200 epochs.

    python main.py --config=configs/cifar10.py --workdir=runs/cifar10

Needs CIFAR-10 prepared by tensorflow-datasets in ArrayRecord (`tfds build cifar10
--file_format=array_record`, or --config.download=True on a machine with internet). The paper
reports MAE 5.1 (RGB, 0..255) on the test set.
"""

from configs import default


def get_config():
  config = default.get_config()
  config.dataset = "cifar10"
  config.download = True
  config.image_size = 32
  config.batch_size = 128
  config.num_train_steps = 78_200  # 200 epochs of 50,000 images.
  config.model.disc_units = 4
  return config
