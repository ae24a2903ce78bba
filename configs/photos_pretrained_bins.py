"""The pretrained-encoder recipe with the vividness knob: colour from a bins head.

    python main.py --config=configs/photos_pretrained_bins.py --config.data_dir=/path/to/photos --workdir=runs/mine
    python main.py --workdir=runs/mine --mode=colorize --input=PHOTOS --output=OUT --colorize_temperature=0.2

`configs/photos_pretrained.py`, with the decoder predicting a distribution over a,b bins
(Zhang et al. 2016), decoded at `model.temperature`; `--colorize_temperature` changes it when
colorizing. Tuned on a held-out tenth of the project's train/ photos, 400 steps each
(docs/quality.md): from a gray start the bins head beat the L1 head (+0.70 dB over gray against
-0.16), G's rate 1e-3 beat 2e-4, the cross-entropy with the L1 beside it matched it alone, and
class rebalancing traded PSNR for colour. On val/ it scored within noise of the L1 recipe.
About 28 minutes on 2 CPU cores (0.8 s per batch of 16).
"""

from configs import photos_pretrained


def get_config():
  config = photos_pretrained.get_config()
  config.model.colour_head = "bins"
  config.model.base_width = 16  # Decoder widths 32 (stride 2, where the bins are predicted) to 128 (stride 16).
  config.model.temperature = 0.38  # The best PSNR when tuning (and Zhang et al.'s choice).
  config.num_train_steps = 1_800  # About the L1 recipe's minutes for its 1,200 steps.
  config.freeze_encoder_steps = 1_800
  config.model.hints = False  # As measured (the hints came later).
  return config
