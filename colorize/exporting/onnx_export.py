"""A JAX function as an ONNX model: its jaxpr, op by op, for the ops of the generators at inference.

    model = to_onnx(fn, [jax.ShapeDtypeStruct((b, 32 * h, 32 * w, 1), jnp.float32)], ["lightness"], ["ab"])

Sizes may be symbolic (`jax.export.symbolic_shape`): each becomes a named ONNX dimension, and
the shapes that ops such as reshape need are computed in the graph from the inputs' own shapes.
Closed-over arrays (the weights) become initializers. Layout stays NHWC: convolutions and pooling
are wrapped in transposes, which onnxruntime's optimizer cancels between neighbours. An op this
module does not know raises `UnsupportedOp` naming it; the StableHLO export handles every op.
"""

import re

import jax
import jax.extend
import numpy as np
import onnx
from onnx import helper
from onnx import numpy_helper

OPSET = 18

_ELEMENTWISE = {
  "add": "Add",
  "sub": "Sub",
  "mul": "Mul",
  "div": "Div",
  "max": "Max",
  "min": "Min",
  "pow": "Pow",
  "tanh": "Tanh",
  "logistic": "Sigmoid",
  "exp": "Exp",
  "log": "Log",
  "neg": "Neg",
  "abs": "Abs",
  "sqrt": "Sqrt",
  "sign": "Sign",
  "erf": "Erf",
  "floor": "Floor",
  "ceil": "Ceil",
  "gt": "Greater",
  "lt": "Less",
  "ge": "GreaterOrEqual",
  "le": "LessOrEqual",
  "eq": "Equal",
}
_LOGICAL = {"and": "And", "or": "Or", "not": "Not"}  # On booleans; on integers JAX's are bitwise.
_INLINED = {"jit": "jaxpr", "pjit": "jaxpr", "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr"}
_REDUCTIONS = {"reduce_sum": "ReduceSum", "reduce_max": "ReduceMax", "reduce_min": "ReduceMin"}


class UnsupportedOp(Exception):
  """The function uses an op (or an op's option) this converter does not write."""


def _onnx_type(dtype) -> int:
  return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


class _Graph:
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


def _read_sizes(graph: _Graph, input_names: list, avals: list) -> None:
  """Each symbolic size's value from the first input axis that holds it, alone or times a number."""
  for name, aval in zip(input_names, avals, strict=True):
    for axis, dim in enumerate(aval.shape):
      match = re.fullmatch(r"(?:(\d+)\*)?([A-Za-z_]\w*)", str(dim))
      if isinstance(dim, (int, np.integer)) or not match or match.group(2) in graph.sizes:
        continue
      shape = graph.add("Shape", [name], start=axis, end=axis + 1)
      factor = int(match.group(1) or 1)
      value = shape if factor == 1 else graph.add("Div", [shape, graph.constant([factor], np.int64)])
      graph.sizes[match.group(2)] = value


def _channels_first(graph: _Graph, x: str, spec) -> str:
  """Transposes `x` so the dimensions listed in `spec` (batch or output feature, feature, spatial) come first."""
  return graph.add("Transpose", [x], perm=list(spec))


def _back_from_channels_first(graph: _Graph, x: str, spec) -> str:
  """The inverse of `_channels_first`: dimension k of `x` goes to position spec[k]."""
  return graph.add("Transpose", [x], perm=list(np.argsort(spec)))


def _conv(graph: _Graph, eqn, lhs: str, rhs: str) -> str:
  p = eqn.params
  if any(d != 1 for d in p["lhs_dilation"]) or p["batch_group_count"] != 1:
    raise UnsupportedOp("conv_general_dilated with lhs_dilation or batch_group_count (transposed convolutions)")
  if any(not isinstance(pad, int) or pad < 0 for pair in p["padding"] for pad in pair):
    raise UnsupportedOp(f"conv_general_dilated with padding {p['padding']}")
  numbers = p["dimension_numbers"]
  pads = [low for low, _ in p["padding"]] + [high for _, high in p["padding"]]
  out = graph.add(
    "Conv",
    [_channels_first(graph, lhs, numbers.lhs_spec), _channels_first(graph, rhs, numbers.rhs_spec)],
    strides=list(p["window_strides"]),
    pads=pads,
    dilations=list(p["rhs_dilation"]),
    group=p["feature_group_count"],
  )
  return _back_from_channels_first(graph, out, numbers.out_spec)


def _max_pool(graph: _Graph, eqn, x: str) -> str:
  """reduce_window_max over the middle axes of an NHWC array (flax's max_pool) as MaxPool."""
  p, rank = eqn.params, len(eqn.invars[0].aval.shape)
  window, strides = p["window_dimensions"], p["window_strides"]
  spatial = range(1, rank - 1)
  if rank < 3 or window[0] != 1 or window[-1] != 1 or strides[0] != 1 or strides[-1] != 1:
    raise UnsupportedOp(f"reduce_window_max over {window} (only windows over the middle axes)")
  dilated = any(d != 1 for d in (*p["base_dilation"], *p["window_dilation"]))
  if dilated or tuple(p["padding"][0]) != (0, 0) or tuple(p["padding"][-1]) != (0, 0):
    raise UnsupportedOp("reduce_window_max with dilation, or padding of the batch or channels")
  if any(not isinstance(pad, int) or pad < 0 for a in spatial for pad in p["padding"][a]):
    raise UnsupportedOp(f"reduce_window_max with padding {p['padding']}")
  pads = [p["padding"][a][0] for a in spatial] + [p["padding"][a][1] for a in spatial]
  spec = (0, rank - 1, *spatial)
  out = graph.add(
    "MaxPool",
    [_channels_first(graph, x, spec)],
    kernel_shape=[window[a] for a in spatial],
    strides=[strides[a] for a in spatial],
    pads=pads,
  )
  return _back_from_channels_first(graph, out, spec)


def _dot_general(graph: _Graph, eqn, lhs: str, rhs: str) -> str:
  """dot_general as an Einsum: batch axes shared, contracted axes summed, then lhs's and rhs's free axes."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
  lhs_rank, rhs_rank = (len(v.aval.shape) for v in eqn.invars)
  letters = iter("abcdefghijklmnopqrstuvwxyz")
  lhs_letters, rhs_letters = [None] * lhs_rank, [None] * rhs_rank
  for i, j in zip(lhs_batch, rhs_batch, strict=True):
    lhs_letters[i] = rhs_letters[j] = next(letters)
  for i, j in zip(lhs_contract, rhs_contract, strict=True):
    lhs_letters[i] = rhs_letters[j] = next(letters)
  for letters_of in (lhs_letters, rhs_letters):
    for k, letter in enumerate(letters_of):
      letters_of[k] = letter or next(letters)
  batch = [lhs_letters[i] for i in lhs_batch]
  free = [lhs_letters[i] for i in range(lhs_rank) if i not in (*lhs_batch, *lhs_contract)]
  free += [rhs_letters[j] for j in range(rhs_rank) if j not in (*rhs_batch, *rhs_contract)]
  equation = f"{''.join(lhs_letters)},{''.join(rhs_letters)}->{''.join(batch + free)}"
  return graph.add("Einsum", [lhs, rhs], equation=equation)


def _broadcast_in_dim(graph: _Graph, eqn, x: str) -> str:
  shape, kept = eqn.params["shape"], eqn.params["broadcast_dimensions"]
  new_axes = [a for a in range(len(shape)) if a not in kept]
  if list(kept) != sorted(kept):
    raise UnsupportedOp(f"broadcast_in_dim with reordered dimensions {kept}")
  if new_axes:
    x = graph.add("Unsqueeze", [x, graph.constant(new_axes, np.int64)])
  return graph.add("Expand", [x, graph.shape(shape)])


def _slice(graph: _Graph, eqn, x: str) -> str:
  p = eqn.params
  rank = len(p["start_indices"])
  steps = p["strides"] or (1,) * rank
  return graph.add(
    "Slice",
    [x, graph.shape(p["start_indices"]), graph.shape(p["limit_indices"]), graph.constant(range(rank), np.int64)]
    + [graph.constant(steps, np.int64)],
  )


def _rev(graph: _Graph, eqn, x: str) -> str:
  """`x` reversed along `dimensions`: a Slice from the last element backwards (a mirrored border)."""
  axes = list(eqn.params["dimensions"])
  ends = graph.constant([np.iinfo(np.int64).min] * len(axes), np.int64)
  starts, steps = graph.constant([-1] * len(axes), np.int64), graph.constant([-1] * len(axes), np.int64)
  return graph.add("Slice", [x, starts, ends, graph.constant(axes, np.int64), steps])


def _pad(graph: _Graph, eqn, x: str, value: str) -> str:
  config = eqn.params["padding_config"]
  if any(interior for _, _, interior in config) or any(low < 0 or high < 0 for low, high, _ in config):
    raise UnsupportedOp(f"pad with interior or negative padding {config}")
  pads = graph.shape([low for low, _, _ in config] + [high for _, high, _ in config])
  return graph.add("Pad", [x, pads, value])


def _scalar_size(graph: _Graph, dim, dtype) -> str:
  """`dim` (a number or symbolic size) as a 0-d tensor of `dtype`."""
  scalar = graph.add("Reshape", [graph.size(dim), graph.constant([], np.int64)])
  return graph.add("Cast", [scalar], to=_onnx_type(dtype))


def _iota(graph: _Graph, eqn) -> str:
  """0, 1, ... along `dimension`, broadcast to `shape`: a Range whose length may be symbolic
  (jax.image.resize of a symbolic size builds its interpolation weights from one)."""
  p = eqn.params
  shape, axis = p["shape"], p["dimension"]
  count = _scalar_size(graph, shape[axis], np.int64)
  # Counted in int64 then cast: exact, and Range has no kernel for every dtype.
  values = graph.add("Range", [graph.constant(0, np.int64), count, graph.constant(1, np.int64)])
  values = graph.add("Cast", [values], to=_onnx_type(p["dtype"]))
  if len(shape) == 1:
    return values
  others = [a for a in range(len(shape)) if a != axis]
  return graph.add("Expand", [graph.add("Unsqueeze", [values, graph.constant(others, np.int64)]), graph.shape(shape)])


def _integer_pow(graph: _Graph, eqn, x: str) -> str:
  exponent = eqn.params["y"]
  if exponent == 2:
    return graph.add("Mul", [x, x])
  return graph.add("Pow", [x, graph.constant(float(exponent), eqn.invars[0].aval.dtype)])


def _write_eqn(graph: _Graph, eqn, inputs: list) -> list:
  """The ONNX value names of `eqn`'s outputs, after writing its nodes."""
  name, p = eqn.primitive.name, eqn.params
  if name in _INLINED:
    closed = p[_INLINED[name]]
    return _write_jaxpr(graph, closed.jaxpr, closed.consts, inputs)
  if name in _ELEMENTWISE:
    return [graph.add(_ELEMENTWISE[name], inputs)]
  if name in _LOGICAL and all(v.aval.dtype == np.bool_ for v in eqn.invars):
    return [graph.add(_LOGICAL[name], inputs)]
  if name in _REDUCTIONS and not p["axes"]:
    return [graph.add("Identity", inputs[:1])]  # ONNX reduces every axis when given none.
  if name in _REDUCTIONS:
    return [graph.add(_REDUCTIONS[name], [inputs[0], graph.constant(p["axes"], np.int64)], keepdims=0)]
  if name == "reshape" and p.get("dimensions") is not None:
    raise UnsupportedOp("reshape with a transposition (dimensions)")
  simple = {
    "rsqrt": lambda: graph.add("Reciprocal", [graph.add("Sqrt", inputs)]),
    "square": lambda: graph.add("Mul", [inputs[0], inputs[0]]),
    "integer_pow": lambda: _integer_pow(graph, eqn, inputs[0]),
    "copy": lambda: graph.add("Identity", inputs),
    "copy_p": lambda: graph.add("Identity", inputs),
    "stop_gradient": lambda: graph.add("Identity", inputs),
    "convert_element_type": lambda: graph.add("Cast", inputs, to=_onnx_type(p["new_dtype"])),
    "ne": lambda: graph.add("Not", [graph.add("Equal", inputs)]),
    # allowzero: a size of 0 is 0, not "copy this dimension".
    "reshape": lambda: graph.add("Reshape", [inputs[0], graph.shape(p["new_sizes"])], allowzero=1),
    "squeeze": lambda: graph.add("Squeeze", [inputs[0], graph.constant(p["dimensions"], np.int64)]),
    "broadcast_in_dim": lambda: _broadcast_in_dim(graph, eqn, inputs[0]),
    "transpose": lambda: graph.add("Transpose", inputs, perm=list(p["permutation"])),
    "concatenate": lambda: graph.add("Concat", inputs, axis=p["dimension"]),
    "stack": lambda: graph.add(
      "Concat", [graph.add("Unsqueeze", [x, graph.constant([p["axis"]], np.int64)]) for x in inputs], axis=p["axis"]
    ),
    "slice": lambda: _slice(graph, eqn, inputs[0]),
    "pad": lambda: _pad(graph, eqn, *inputs),
    "rev": lambda: _rev(graph, eqn, inputs[0]),
    "clamp": lambda: graph.add("Max", [graph.add("Min", [inputs[1], inputs[2]]), inputs[0]]),
    "select_n": lambda: _select(graph, eqn, inputs),
    "dot_general": lambda: _dot_general(graph, eqn, *inputs),
    "conv_general_dilated": lambda: _conv(graph, eqn, *inputs),
    "reduce_window_max": lambda: _max_pool(graph, eqn, inputs[0]),
    # A symbolic size as a value (jax.image.resize's scale): computed from the inputs' shapes.
    "dim_as_value": lambda: _scalar_size(graph, p["dim"], eqn.outvars[0].aval.dtype),
    "iota": lambda: _iota(graph, eqn),
  }
  if name not in simple:
    raise UnsupportedOp(f"the op {name}")
  return [simple[name]()]


def _select(graph: _Graph, eqn, inputs: list) -> str:
  which, *cases = inputs
  if len(cases) != 2 or eqn.invars[0].aval.dtype != np.bool_:
    raise UnsupportedOp("select_n other than a boolean choice between two cases")
  return graph.add("Where", [which, cases[1], cases[0]])


def _write_jaxpr(graph: _Graph, jaxpr, consts, inputs: list) -> list:
  """Writes `jaxpr`'s equations with its inputs bound to the ONNX names `inputs`; its outputs' names."""
  env = {}

  def read(var):
    if isinstance(var, jax.extend.core.Literal):
      return graph.constant(var.val, var.aval.dtype)
    return env[var]

  for var, const in zip(jaxpr.constvars, consts, strict=True):
    env[var] = graph.constant(np.asarray(const), np.asarray(const).dtype)
  for var, name in zip(jaxpr.invars, inputs, strict=True):
    env[var] = name
  for eqn in jaxpr.eqns:
    outputs = _write_eqn(graph, eqn, [read(v) for v in eqn.invars])
    for var, name in zip(eqn.outvars, outputs, strict=True):
      env[var] = name
  return [read(v) for v in jaxpr.outvars]


def _value_info(name: str, aval) -> onnx.ValueInfoProto:
  dims = [d if isinstance(d, (int, np.integer)) else str(d) for d in aval.shape]
  return helper.make_tensor_value_info(name, _onnx_type(aval.dtype), dims)


def to_onnx(fn, input_specs: list, input_names: list, output_names: list, doc: str = "") -> onnx.ModelProto:
  """The ONNX model of `fn` (arrays in, arrays out) for inputs shaped like `input_specs`."""
  closed = jax.make_jaxpr(fn)(*input_specs)
  graph = _Graph()
  _read_sizes(graph, input_names, closed.in_avals)
  outputs = _write_jaxpr(graph, closed.jaxpr, closed.consts, list(input_names))
  for output, name in zip(outputs, output_names, strict=True):
    graph.nodes.append(helper.make_node("Identity", [output], [name]))
  onnx_graph = helper.make_graph(
    graph.nodes,
    "generator",
    [_value_info(n, a) for n, a in zip(input_names, closed.in_avals, strict=True)],
    [_value_info(n, a) for n, a in zip(output_names, closed.out_avals, strict=True)],
    graph.initializers,
    doc_string=doc,
  )
  model = helper.make_model(onnx_graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="colorize")
  model.ir_version = 9  # What onnxruntime 1.16 and later read.
  onnx.checker.check_model(model)
  return model
