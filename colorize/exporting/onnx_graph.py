"""The ONNX graph being written: its nodes and initializers, fresh names, and the values of the
inputs' symbolic sizes (`Graph.size`), computed in the graph from the inputs' own shapes."""

import re

import numpy as np
from onnx import helper
from onnx import numpy_helper


class UnsupportedOp(ValueError):
  """The function uses an op (or an op's dtype or option, or a size) the ONNX writer does not write."""


class Graph:
  """The nodes and initializers being written, with fresh names and the symbolic sizes' values."""

  def __init__(self):
    self.nodes, self.initializers, self.sizes, self._count = [], [], {}, 0

  def name(self, hint: str = "t") -> str:
    self._count += 1
    return f"{hint}_{self._count}"

  def add(self, op: str, inputs: list, **attributes) -> str:
    output = self.name(op.lower())
    self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
    return output

  def constant(self, value, dtype=None) -> str:
    array = np.asarray(value, dtype=dtype)
    name = self.name("const")
    self.initializers.append(numpy_helper.from_array(array, name))
    return name

  def size(self, dim) -> str:
    """A 1-element int64 tensor holding `dim`: a number, or a sum of products of symbolic sizes
    and numbers (`32*height + 15`: a mirrored border's slice)."""
    if isinstance(dim, (int, np.integer)):
      return self.constant([int(dim)], np.int64)
    terms = re.split(r" \+ ", str(dim).replace(" - ", " + -"))
    if len(terms) > 1:
      values = [self.size(int(t)) if re.fullmatch(r"-?\d+", t) else self.size(t) for t in terms]
      total = values[0]
      for value in values[1:]:
        total = self.add("Add", [total, value])
      return total
    factors = str(dim).split("*")
    if not all(re.fullmatch(r"\d+|[A-Za-z_]\w*", f) for f in factors):
      raise UnsupportedOp(f"the size {dim} (only products of symbolic sizes and numbers are written)")
    coefficient = int(np.prod([int(f) for f in factors if f.isdigit()]))
    names = [self.sizes[f] for f in factors if not f.isdigit()]
    value = names[0]
    for other in names[1:]:
      value = self.add("Mul", [value, other])
    return value if coefficient == 1 else self.add("Mul", [value, self.constant([coefficient], np.int64)])

  def shape(self, dims) -> str:
    """An int64 shape tensor for `dims` (numbers and symbolic sizes)."""
    if all(isinstance(d, (int, np.integer)) for d in dims):
      return self.constant([int(d) for d in dims], np.int64)
    return self.add("Concat", [self.size(d) for d in dims], axis=0)
