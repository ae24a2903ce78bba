"""The legacy-format PyTorch reader against hostile files: bounded memory and time, one clear error for each."""

import collections
import contextlib
import dataclasses
import io
import pickle
import signal
import sys
import time
import tracemalloc
import types

import numpy as np
import pytest

from colorize.networks import torch_checkpoint
from tests.test_efficientnet import legacy_checkpoint
from tests.test_efficientnet import write_torch_checkpoint


@dataclasses.dataclass(eq=False)
class Storage:
  """A float32 storage, written once after the pickles however many tensors view it."""

  key: str
  values: np.ndarray


@dataclasses.dataclass(eq=False)
class Tensor:
  """What torch.save pickles for a tensor: `_rebuild_tensor_v2(storage, offset, shape, stride, ...)`."""

  storage: Storage
  offset: object
  shape: object
  stride: object


def write_checkpoint(path, state, monkeypatch):
  """A legacy-format file around `state`, whose dicts may share sub-dicts and whose tensors may share storages.

  (test_efficientnet's `write_torch_checkpoint` gives each tensor a storage of its own, in one flat dict.)
  """
  torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
  torch.FloatStorage = type("FloatStorage", (), {"__module__": "torch"})

  def rebuild(*args):
    raise AssertionError("never called: the pickle only names it")

  # pickle finds a global by module and name, and checks it is the same object: stand-in modules.
  rebuild.__module__, rebuild.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
  utils._rebuild_tensor_v2 = rebuild
  monkeypatch.setitem(sys.modules, "torch", torch)
  monkeypatch.setitem(sys.modules, "torch._utils", utils)
  storages = {}

  class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
      if not isinstance(obj, Storage):
        return None
      storages[obj.key] = obj  # In the order first met, as torch.save lists them.
      return ("storage", torch.FloatStorage, obj.key, "cpu", obj.values.size, None)

    def reducer_override(self, obj):
      if isinstance(obj, Tensor):
        return rebuild, (obj.storage, obj.offset, obj.shape, obj.stride, False, collections.OrderedDict())
      return NotImplemented

  out = io.BytesIO()
  for part in (torch_checkpoint.MAGIC_NUMBER, torch_checkpoint.PROTOCOL_VERSION, {"little_endian": True}):
    pickle.dump(part, out, protocol=2)
  Pickler(out, protocol=2).dump(state)
  pickle.dump(list(storages), out, protocol=2)
  for storage in storages.values():
    out.write(storage.values.size.to_bytes(8, "little") + storage.values.astype("<f4").tobytes())
  path.write_bytes(out.getvalue())


def refused(path, match: str) -> str:
  """The reader's refusal of `path`, which names the file and says `match`."""
  with pytest.raises(torch_checkpoint.TorchCheckpointError, match=match) as caught:
    torch_checkpoint.read_state_dict(str(path))
  assert str(path) in str(caught.value)
  return str(caught.value)


@contextlib.contextmanager
def deadline(seconds: float):
  """Fails a block that takes longer, rather than hang the suite (the reader's loops are Python's: signals get in)."""

  def expire(signum, frame):
    raise TimeoutError(f"still reading after {seconds} s")

  previous = signal.signal(signal.SIGALRM, expire)
  signal.setitimer(signal.ITIMER_REAL, seconds)
  try:
    yield
  finally:
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def test_a_nested_state_dict_with_views_of_one_storage_reads_as_pytorch_holds_it(tmp_path, monkeypatch):
  shared, empty = Storage("0", np.arange(10, dtype=np.float32)), Storage("1", np.zeros(0, np.float32))
  state = collections.OrderedDict(
    layer=collections.OrderedDict(
      weight=Tensor(shared, 0, (2, 3), (3, 1)),
      bias=Tensor(shared, 6, (4,), (1,)),  # The next, non-overlapping view of the same storage.
    ),
    transposed=Tensor(shared, 0, (3, 2), (1, 3)),
    scalar=Tensor(shared, 9, (), ()),
    empty=Tensor(empty, 0, (0, 5), (5, 1)),
    step=7,
  )
  write_checkpoint(tmp_path / "w.pth", state, monkeypatch)
  read = torch_checkpoint.read_state_dict(str(tmp_path / "w.pth"))
  np.testing.assert_array_equal(read["layer"]["weight"], [[0, 1, 2], [3, 4, 5]])
  np.testing.assert_array_equal(read["layer"]["bias"], [6, 7, 8, 9])
  np.testing.assert_array_equal(read["transposed"], [[0, 3], [1, 4], [2, 5]])
  assert read["scalar"].shape == () and read["scalar"] == 9
  assert read["empty"].shape == (0, 5) and read["empty"].dtype == np.float32
  assert read["step"] == 7


def test_a_tensor_saved_twice_is_one_array_under_both_names(tmp_path, monkeypatch):
  storage = Storage("0", np.arange(6, dtype=np.float32))
  weight = Tensor(storage, 0, (2, 3), (3, 1))
  # Tied weights: the same tensor object (pickled once), or state_dict()'s detached copies of one view.
  state = collections.OrderedDict(embedding=weight, head=weight, detached=Tensor(storage, 0, (2, 3), (3, 1)))
  write_checkpoint(tmp_path / "w.pth", state, monkeypatch)
  read = torch_checkpoint.read_state_dict(str(tmp_path / "w.pth"))
  assert read["embedding"] is read["head"] is read["detached"]
  np.testing.assert_array_equal(read["head"], [[0, 1, 2], [3, 4, 5]])


@pytest.mark.parametrize(
  "storage_size,shape,stride",
  [(1, (2**13, 2**13), (0, 0)), (2**13, (2**12, 2**12), (1, 1))],
  ids=["stride-0", "overlapping"],
)
def test_views_cannot_ask_for_more_memory_than_a_few_times_the_file(tmp_path, monkeypatch, storage_size, shape, stride):
  # In bounds of its storage, but a 256 MiB or 64 MiB copy of a 0.2 or 32 KiB file.
  write_torch_checkpoint(tmp_path / "w.pth", {"t": (np.zeros(storage_size, np.float32), 0, shape, stride)}, monkeypatch)
  tracemalloc.start()
  try:
    refused(tmp_path / "w.pth", "times the file's")
    peak = tracemalloc.get_traced_memory()[1]
  finally:
    tracemalloc.stop()
  assert peak < 2**22


def test_many_views_of_one_storage_cannot_together_ask_for_more_than_a_few_times_the_file(tmp_path, monkeypatch):
  storage = Storage("0", np.zeros(1000, np.float32))
  state = {f"t{n}": Tensor(storage, 0, (n,), (1,)) for n in range(700, 1000)}  # Each one fits: 1 MB in all.
  write_checkpoint(tmp_path / "w.pth", state, monkeypatch)
  refused(tmp_path / "w.pth", "times the file's")


def test_dicts_that_share_sub_dicts_are_walked_and_converted_once(tmp_path, monkeypatch):
  tree = {"w": Tensor(Storage("0", np.arange(3, dtype=np.float32)), 0, (3,), (1,))}
  for _ in range(60):  # 2**60 paths to the tensor, in a file of a few hundred bytes.
    tree = {"a": tree, "b": tree}
  write_checkpoint(tmp_path / "w.pth", tree, monkeypatch)
  start = time.perf_counter()
  with deadline(5):
    read = torch_checkpoint.read_state_dict(str(tmp_path / "w.pth"))
  assert time.perf_counter() - start < 0.5
  assert read["a"] is read["b"]  # The output shares its sub-dicts as the file did.
  for _ in range(59):
    read = read["b"]
  np.testing.assert_array_equal(read["a"]["w"], [0, 1, 2])


def test_a_dict_that_contains_itself_is_refused(tmp_path):
  state = collections.OrderedDict(step=3)
  state["inner"] = {"outer": state}
  (tmp_path / "w.pth").write_bytes(legacy_checkpoint(state))
  refused(tmp_path / "w.pth", "a dict that contains itself")


def test_dicts_nested_too_deep_are_refused(tmp_path):
  depth = 5000  # Opcode by opcode: pickle.dump itself would recurse too deep.
  state = b"\x80\x02" + b"}K\x00" * depth + b"}" + b"s" * depth + b"."  # {0: {0: ... {} ...}}
  assert pickle.loads(state)[0][0][0] is not None
  head = (torch_checkpoint.MAGIC_NUMBER, torch_checkpoint.PROTOCOL_VERSION, {"little_endian": True})
  checkpoint = b"".join(pickle.dumps(part, protocol=2) for part in head) + state + pickle.dumps([], protocol=2)
  (tmp_path / "w.pth").write_bytes(checkpoint)
  refused(tmp_path / "w.pth", "nested more than")


@pytest.mark.parametrize(
  "offset,shape,stride",
  [(0, "ab", (1, 1)), (0, (1.5,), (1,)), (0, ((1,),), (1,)), ("0", (3,), (1,)), (0, (3,), None)],
  ids=["string-shape", "float-size", "nested-shape", "string-offset", "no-stride"],
)
def test_a_tensor_whose_offset_shape_or_stride_is_not_counts_is_refused(tmp_path, monkeypatch, offset, shape, stride):
  write_torch_checkpoint(tmp_path / "w.pth", {"t": (np.zeros(3, np.float32), offset, shape, stride)}, monkeypatch)
  refused(tmp_path / "w.pth", "offset, shape or stride")
