"""PyTorch checkpoints in the legacy (non-zip) format, read with pickle and NumPy: no PyTorch.

The format (`torch.save(..., _use_new_zipfile_serialization=False)`, PyTorch before 1.6): four
pickles, then the raw storages. The pickles are a magic number, a protocol version, the writer's
system info, and the object itself, whose tensors are `torch._utils._rebuild_tensor_v2` calls on
storages named by persistent ids; a fifth pickle lists the storage keys in file order, and each
storage follows as its element count (8 bytes, little-endian) and its elements.

Only plain state dicts are read: the unpickler builds ordered dicts, tensors and storages, and
refuses every other class, so a checkpoint cannot run code.
"""

import collections
import dataclasses
import os
import pickle

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_DTYPES = {
  "FloatStorage": np.float32,
  "DoubleStorage": np.float64,
  "HalfStorage": np.float16,
  "LongStorage": np.int64,
  "IntStorage": np.int32,
  "ShortStorage": np.int16,
  "CharStorage": np.int8,
  "ByteStorage": np.uint8,
  "BoolStorage": np.bool_,
}


class TorchCheckpointError(ValueError):
  """A file that is not a plain PyTorch state dict in the legacy format."""


@dataclasses.dataclass(frozen=True)
class _StorageType:
  dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _Storage:
  key: str
  dtype: np.dtype
  size: int


@dataclasses.dataclass(frozen=True)
class _Tensor:
  storage: _Storage
  offset: int
  shape: tuple
  stride: tuple


def _rebuild_tensor(storage, offset, shape, stride, *unused):
  """Stands in for `torch._utils._rebuild_tensor_v2`: where the tensor's elements lie."""
  del unused  # requires_grad, backward hooks, metadata
  return _Tensor(storage, int(offset), tuple(shape), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
  """Builds ordered dicts, tensors and storages; refuses every other class."""

  def find_class(self, module: str, name: str):
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
      return _rebuild_tensor
    if module == "torch" and name in STORAGE_DTYPES:
      return _StorageType(np.dtype(STORAGE_DTYPES[name]))
    raise TorchCheckpointError(f"{module}.{name} is not part of a plain state dict: refusing to load it.")

  def persistent_load(self, saved_id):
    if not (isinstance(saved_id, tuple) and saved_id[0] == "storage" and len(saved_id) == 6):
      raise TorchCheckpointError(f"unknown persistent id {saved_id!r:.80}: not a legacy PyTorch checkpoint.")
    _, storage_type, key, _location, size, view = saved_id
    if view is not None:
      raise TorchCheckpointError("storage views (PyTorch before 0.4) are not supported.")
    return _Storage(key, storage_type.dtype, int(size))


def _load(file):
  return _StateDictUnpickler(file).load()


def _tensors(tree):
  """Every `_Tensor` of a state dict, nested dicts included."""
  if isinstance(tree, _Tensor):
    yield tree
  elif isinstance(tree, dict):
    for value in tree.values():
      yield from _tensors(value)


def _as_array(tensor: _Tensor, storages: dict) -> np.ndarray:
  data = storages[tensor.storage.key]
  itemsize = data.dtype.itemsize
  last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride, strict=True))
  bad = tensor.offset < 0 or min((*tensor.shape, *tensor.stride), default=0) < 0
  if bad or len(tensor.shape) != len(tensor.stride) or (0 not in tensor.shape and last >= data.size):
    raise TorchCheckpointError(f"a tensor reaches outside its storage {tensor.storage.key}: a damaged checkpoint.")
  view = np.lib.stride_tricks.as_strided(
    data[tensor.offset :], shape=tensor.shape, strides=[s * itemsize for s in tensor.stride], writeable=False
  )
  return np.array(view)  # A copy of its own, in C order.


def _arrays(tree, storages: dict):
  if isinstance(tree, _Tensor):
    return _as_array(tree, storages)
  if isinstance(tree, dict):
    return {name: _arrays(value, storages) for name, value in tree.items()}
  return tree


def read_state_dict(path: str) -> dict:
  """{name: NumPy array} of a legacy-format PyTorch state dict (nested dicts stay nested)."""
  with open(path, "rb") as f:
    try:
      magic, protocol, _system = _load(f), _load(f), _load(f)
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
      raise TorchCheckpointError(f"{path} is not a PyTorch checkpoint in the legacy format ({error}).") from None
    if magic != MAGIC_NUMBER or protocol != PROTOCOL_VERSION:
      raise TorchCheckpointError(
        f"{path} is not a legacy-format PyTorch checkpoint (magic {magic!r}, protocol {protocol!r}); "
        "a zip-format one (PyTorch >= 1.6) can be saved again with "
        "`torch.save(state_dict, path, _use_new_zipfile_serialization=False)`."
      )
    try:
      state, keys = _load(f), _load(f)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
      raise TorchCheckpointError(f"{path}: a damaged legacy-format PyTorch checkpoint ({error}).") from None
    expected = {tensor.storage.key: tensor.storage for tensor in _tensors(state)}
    if not isinstance(keys, list) or set(keys) != set(expected):
      raise TorchCheckpointError(f"{path}: its storage list does not match its tensors (a damaged checkpoint).")
    file_size = os.fstat(f.fileno()).st_size
    storages = {}
    for key in keys:
      size, storage = int.from_bytes(f.read(8), "little"), expected[key]
      nbytes = size * storage.dtype.itemsize
      if size != storage.size or nbytes > file_size - f.tell():
        raise TorchCheckpointError(f"{path}: storage {key} is truncated or not the size its tensors say.")
      storages[key] = np.frombuffer(f.read(nbytes), storage.dtype.newbyteorder("<"))
  return _arrays(state, storages)
