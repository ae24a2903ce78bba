"""The bundled model with a vivid head: its colour distribution trained beside the shipped weights.

    python main.py --config=configs/photos_vivid.py --config.data_dir=/path/to/photos --workdir=runs/vivid

Starts from the bundle in `weights/` (`init_from`) and trains only the new head
(`vivid_head_only`): logits over the a,b bins read from the decoder's last features, by
cross-entropy against the photos' colours. Everything else keeps the bundle's weights, so
`--vividness=0` colours exactly as the bundle does; higher values tilt the head's distribution
towards rare (bold) colours and move the regression's colour by as much. Measured, that knob
was no better than scaling the bundle's a,b (docs/quality.md, "Vivid and right").
"""

import os

from configs import photos_pretrained

BUNDLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights")


def get_config():
  config = photos_pretrained.get_config()
  config.model.vivid_head = True
  config.vivid_head_only = True
  config.init_from = BUNDLE
  config.model.hints = True  # As the bundle: the trunk's inputs must match its weights.
  config.num_train_steps = 800  # 31 minutes on 2 CPU cores (docs/quality.md).
  config.freeze_encoder_steps = config.num_train_steps  # Frozen anyway: no phase switch to compile.
  config.checkpoint_every_steps = 200
  config.optim.g_learning_rate = 1e-3
  config.ema_decay = 0.999
  return config
