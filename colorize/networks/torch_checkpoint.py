"""PyTorch checkpoints in the legacy (non-zip) format, read with pickle and NumPy: no PyTorch.

The format (`torch.save(..., _use_new_zipfile_serialization=False)`, PyTorch before 1.6): four
pickles, then the raw storages. The pickles are a magic number, a protocol version, the writer's
system info, and the object itself, whose tensors are `torch._utils._rebuild_tensor_v2` calls on
storages named by persistent ids; a fifth pickle lists the storage keys in file order, and each
storage follows as its element count (8 bytes, little-endian) and its elements.

Only plain state dicts are read: the unpickler builds ordered dicts, tensors and storages, and
refuses every other class, so a checkpoint cannot run code. A hostile file cannot make the reader
allocate much more than its own size either: tensors are checked before any is copied.
"""

import collections
import dataclasses
import math
import os
import pickle
import reprlib

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
# Bytes the distinct tensors may copy out, per byte of the file. Views that do not overlap copy
# at most their storages (which lie in the file); this leaves room for a few that do (a weight
# and its transpose, an expand()ed buffer), and caps what stride-0 views of a tiny file can ask.
MAX_TENSOR_BYTES_PER_FILE_BYTE = 2
MAX_DEPTH = 100  # Nested dicts: real state dicts nest a few levels, and this stays far from Python's recursion limit.
MAX_RANK = 32  # NumPy 1's limit on dimensions.
MAX_ELEMENTS = 2**48  # Per shape (its nonzero sizes), even an empty one: far beyond real tensors, within NumPy's sizes.


class TorchCheckpointError(ValueError):
  """A file that is not a plain PyTorch state dict in the legacy format."""


class _Unbuildable:
  """Refuses pickle's BUILD, which would write any attribute into the object's __dict__ (a shape
  of the wrong type after the checks, say)."""

  def __setstate__(self, state):
    raise TorchCheckpointError("an object of the checkpoint sets attributes of its own: not a plain state dict.")


@dataclasses.dataclass(frozen=True)
class _StorageType(_Unbuildable):
  dtype: np.dtype


@dataclasses.dataclass(frozen=True)
class _Storage(_Unbuildable):
  key: str
  dtype: np.dtype
  size: int


@dataclasses.dataclass(frozen=True)
class _Tensor(_Unbuildable):
  storage: _Storage
  offset: int
  shape: tuple
  stride: tuple


def _is_int(value) -> bool:
  """A Python int: not a bool, a float or a string that int() would take."""
  return isinstance(value, int) and not isinstance(value, bool)


def _is_ints(value) -> bool:
  return isinstance(value, tuple | list) and len(value) <= MAX_RANK and all(_is_int(n) for n in value)


def _rebuild_tensor(storage, offset, shape, stride, *unused):
  """Stands in for `torch._utils._rebuild_tensor_v2`: where the tensor's elements lie."""
  del unused  # requires_grad, backward hooks, metadata
  if not (isinstance(storage, _Storage) and _is_int(offset) and _is_ints(shape) and _is_ints(stride)):
    offset_shape_stride = reprlib.repr((offset, shape, stride))
    raise TorchCheckpointError(
      f"a tensor whose storage, offset, shape or stride is not PyTorch's: {offset_shape_stride}"
    )
  if len(shape) != len(stride):
    raise TorchCheckpointError(f"a tensor of shape {reprlib.repr(shape)} but stride {reprlib.repr(stride)}")
  return _Tensor(storage, offset, tuple(shape), tuple(stride))


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
    if not (isinstance(saved_id, tuple) and len(saved_id) == 6 and saved_id[0] == "storage"):
      raise TorchCheckpointError(f"unknown persistent id {reprlib.repr(saved_id)}: not a legacy PyTorch checkpoint.")
    _, storage_type, key, _location, size, view = saved_id
    if view is not None:
      raise TorchCheckpointError("storage views (PyTorch before 0.4) are not supported.")
    if not (isinstance(storage_type, _StorageType) and isinstance(key, str) and _is_int(size) and size >= 0):
      raise TorchCheckpointError(f"a storage that is not what PyTorch writes: {reprlib.repr(saved_id)}")
    return _Storage(key, storage_type.dtype, size)


def _load(file):
  return _StateDictUnpickler(file).load()


def _tensors(state) -> list:
  """The distinct `_Tensor`s of a state dict, nested dicts included (each walked once, none in itself)."""
  found, done, open_dicts = {}, set(), set()

  def walk(tree, depth):
    if isinstance(tree, _Tensor):
      found[id(tree)] = tree
    elif isinstance(tree, dict) and id(tree) not in done:
      if id(tree) in open_dicts:
        raise TorchCheckpointError("a dict that contains itself")
      if depth >= MAX_DEPTH:
        raise TorchCheckpointError(f"dicts nested more than {MAX_DEPTH} deep")
      open_dicts.add(id(tree))
      for value in tree.values():
        walk(value, depth + 1)
      open_dicts.remove(id(tree))
      done.add(id(tree))

  walk(state, 0)
  return list(found.values())


def _storages(tensors: list) -> dict:
  """{key: `_Storage`} of `tensors`, which must agree on each storage's type and size."""
  storages = {}
  for tensor in tensors:
    if storages.setdefault(tensor.storage.key, tensor.storage) != tensor.storage:
      raise TorchCheckpointError(f"tensors disagree on storage {tensor.storage.key}'s type or size")
  return storages


def _view(tensor: _Tensor) -> tuple:
  """What a tensor's array is made of: equal views (tied weights saved twice) are copied once."""
  return tensor.storage, tensor.offset, tensor.shape, tensor.stride


def _check_tensors(tensors: list, file_size: int):
  """Each tensor lies inside its storage, and together they copy out a few times the file at most."""
  views = {_view(tensor) for tensor in tensors}
  for storage, offset, shape, stride in views:
    last = offset + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))  # Python ints: no overflow.
    if min((offset, *shape, *stride)) < 0 or (0 not in shape and last >= storage.size):
      raise TorchCheckpointError(f"a tensor reaches outside its storage {storage.key}")
    if math.prod(n for n in shape if n) > MAX_ELEMENTS:
      raise TorchCheckpointError(f"a tensor of shape {reprlib.repr(shape)}: too large")
  nbytes = sum(math.prod(shape) * storage.dtype.itemsize for storage, _, shape, _ in views)
  if nbytes > MAX_TENSOR_BYTES_PER_FILE_BYTE * file_size:
    raise TorchCheckpointError(
      f"its tensors would take {nbytes} bytes, more than {MAX_TENSOR_BYTES_PER_FILE_BYTE} times the file's "
      f"{file_size} (overlapping or stride-0 views)"
    )


def _as_array(tensor: _Tensor, data: np.ndarray) -> np.ndarray:
  """A copy of its own, in C order, of a tensor checked by `_check_tensors`."""
  if 0 in tensor.shape:
    return np.zeros(tensor.shape, data.dtype)
  # A size-1 dimension's stride is never used, and may be too large for NumPy.
  strides = [s * data.dtype.itemsize if n > 1 else 0 for n, s in zip(tensor.shape, tensor.stride, strict=True)]
  view = np.lib.stride_tricks.as_strided(data[tensor.offset :], shape=tensor.shape, strides=strides, writeable=False)
  return np.array(view, order="C")


def _arrays(state, storages: dict):
  """`state` with its tensors as arrays; a dict or view met twice is converted once (and shared)."""
  dicts, arrays = {}, {}

  def build(tree):
    if isinstance(tree, _Tensor):
      view = _view(tree)
      if view not in arrays:
        arrays[view] = _as_array(tree, storages[tree.storage.key])
      return arrays[view]
    if not isinstance(tree, dict):
      return tree
    if id(tree) not in dicts:  # `_tensors` has refused cycles and deep nesting.
      dicts[id(tree)] = {name: build(value) for name, value in tree.items()}
    return dicts[id(tree)]

  return build(state)


def read_state_dict(path: str) -> dict:
  """{name: NumPy array} of a legacy-format PyTorch state dict (nested dicts stay nested).

  A tensor saved twice (tied weights) is one array under both names.
  """
  with open(path, "rb") as f:
    try:
      magic, protocol, _system = _load(f), _load(f), _load(f)
    except (pickle.UnpicklingError, EOFError, ValueError) as error:
      raise TorchCheckpointError(f"{path} is not a PyTorch checkpoint in the legacy format ({error}).") from None
    if magic != MAGIC_NUMBER or protocol != PROTOCOL_VERSION:
      raise TorchCheckpointError(
        f"{path} is not a legacy-format PyTorch checkpoint (not its magic number and protocol version); "
        "a zip-format one (PyTorch >= 1.6) can be saved again with "
        "`torch.save(state_dict, path, _use_new_zipfile_serialization=False)`."
      )
    try:
      state, keys = _load(f), _load(f)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
      raise TorchCheckpointError(f"{path}: a damaged legacy-format PyTorch checkpoint ({error}).") from None
    file_size = os.fstat(f.fileno()).st_size
    try:
      tensors = _tensors(state)
      expected = _storages(tensors)
      _check_tensors(tensors, file_size)
    except TorchCheckpointError as error:
      raise TorchCheckpointError(f"{path}: a damaged legacy-format PyTorch checkpoint ({error}).") from None
    if not (isinstance(keys, list) and all(isinstance(key, str) for key in keys) and sorted(keys) == sorted(expected)):
      raise TorchCheckpointError(f"{path}: its storage list does not match its tensors (a damaged checkpoint).")
    storages = {}
    for key in keys:
      size, storage = int.from_bytes(f.read(8), "little"), expected[key]
      nbytes = size * storage.dtype.itemsize
      if size != storage.size or nbytes > file_size - f.tell():
        raise TorchCheckpointError(f"{path}: storage {key} is truncated or not the size its tensors say.")
      storages[key] = np.frombuffer(f.read(nbytes), storage.dtype.newbyteorder("<"))
  return _arrays(state, storages)
