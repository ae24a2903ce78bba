"""A JAX function as an ONNX model: its jaxpr, op by op, for the ops of the generators at inference.

    model = to_onnx(fn, [jax.ShapeDtypeStruct((b, 32 * h, 32 * w, 1), jnp.float32)], ["lightness"], ["ab"])

Sizes may be symbolic (`jax.export.symbolic_shape`): each becomes a named ONNX dimension, and
the shapes that ops such as reshape need are computed in the graph from the inputs' own shapes.
Closed-over arrays (the weights) become initializers. Layout stays NHWC: convolutions and pooling
are wrapped in transposes, which onnxruntime's optimizer cancels between neighbours.

Each JAX primitive has one writer in `WRITERS` (registered with `@writes`), which refuses the dtypes
and options it does not write. An op without a writer, or refused, raises `UnsupportedOp` naming it;
the StableHLO export handles every op.
"""

import functools
import re
from collections.abc import Callable

import jax
import jax.extend
import numpy as np
import onnx
from onnx import helper

from colorize.exporting import onnx_graph

OPSET = 18

# Dtypes by name, in the order error messages list them; each writer takes those its ONNX ops take at opset 18
# (ONNX has no arithmetic on complex numbers, and most ops none on booleans).
FLOATS = ("float16", "bfloat16", "float32", "float64")
SIGNED = FLOATS + ("int8", "int16", "int32", "int64")  # What Neg takes.
NUMBERS = SIGNED + ("uint8", "uint16", "uint32", "uint64")
BOOL_AND_NUMBERS = ("bool",) + NUMBERS
BOOL = ("bool",)
POW_BASE = ("float16", "bfloat16", "float32", "float64", "int32", "int64")
EINSUM = tuple(d for d in NUMBERS if d != "bfloat16")
CONV = ("float16", "float32", "float64")
MAX_POOL = CONV + ("int8", "uint8")
REDUCE_SUM = FLOATS + ("int32", "int64", "uint32", "uint64")
REDUCE_MAX = REDUCE_SUM + ("int8", "uint8")

_ELEMENTWISE = [  # (the operand dtypes the ONNX ops take, {JAX primitive: ONNX op}).
  (NUMBERS, {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "max": "Max", "min": "Min", "abs": "Abs"}),
  (NUMBERS, {"sign": "Sign", "gt": "Greater", "lt": "Less", "ge": "GreaterOrEqual", "le": "LessOrEqual"}),
  (FLOATS, {"tanh": "Tanh", "logistic": "Sigmoid", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "erf": "Erf"}),
  (FLOATS, {"floor": "Floor", "ceil": "Ceil"}),
  (SIGNED, {"neg": "Neg"}),
  (BOOL_AND_NUMBERS, {"eq": "Equal"}),
  (BOOL, {"and": "And", "or": "Or", "not": "Not"}),  # On integers JAX's are bitwise: not written.
]
_INLINED = {"jit": "jaxpr", "custom_jvp_call": "call_jaxpr", "custom_vjp_call": "call_jaxpr"}
_REDUCTIONS = {
  "reduce_sum": ("ReduceSum", REDUCE_SUM),
  "reduce_max": ("ReduceMax", REDUCE_MAX),
  "reduce_min": ("ReduceMin", REDUCE_MAX),
}


UnsupportedOp = onnx_graph.UnsupportedOp


def _onnx_type(dtype) -> int:
  return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _refuse(eqn, what: str, written: str):
  """Raises the one-line error: the primitive, what of it is not written, and what is."""
  raise UnsupportedOp(f"the op {eqn.primitive.name} {what} (it writes {written})")


def _check_dtypes(eqn, dtypes: tuple, variables=None) -> None:
  """Refuses `eqn` when one of `variables` (its operands by default) has a dtype not in `dtypes`."""
  for var in eqn.invars if variables is None else variables:
    if str(var.aval.dtype) not in dtypes:
      _refuse(eqn, f"on {var.aval.dtype}", ", ".join(dtypes))


def _check_one_dtype(eqn) -> None:
  """Refuses mixed operand dtypes or another output dtype (preferred_element_type): ONNX's op keeps its input's."""
  found = {str(v.aval.dtype) for v in (*eqn.invars, *eqn.outvars)}
  if len(found) > 1:
    _refuse(eqn, f"mixing {', '.join(sorted(found))}", "operands and output of one dtype")


Writer = Callable[
  [onnx_graph.Graph, object, list], list
]  # (graph, eqn, its operands' ONNX names) -> its outputs' names.
WRITERS: dict[str, Writer] = {}


def writes(*primitives: str, dtypes: tuple | None = None):
  """Registers the decorated writer for `primitives`, refusing operands whose dtype is not in `dtypes`
  (None: the writer checks what it needs, or its ONNX ops take every dtype)."""

  def register(write: Writer) -> Writer:
    @functools.wraps(write)
    def checked(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
      if dtypes is not None:
        _check_dtypes(eqn, dtypes)
      return write(graph, eqn, inputs)

    for primitive in primitives:
      assert primitive not in WRITERS, f"two writers for {primitive}"
      WRITERS[primitive] = checked
    return write

  return register


def _read_sizes(graph: onnx_graph.Graph, input_names: list, avals: list) -> None:
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


def _channels_first(graph: onnx_graph.Graph, x: str, spec) -> str:
  """Transposes `x` so the dimensions listed in `spec` (batch or output feature, feature, spatial) come first."""
  return graph.add("Transpose", [x], perm=list(spec))


def _back_from_channels_first(graph: onnx_graph.Graph, x: str, spec) -> str:
  """The inverse of `_channels_first`: dimension k of `x` goes to position spec[k]."""
  return graph.add("Transpose", [x], perm=list(np.argsort(spec)))


def _elementwise(op: str) -> Writer:
  return lambda graph, eqn, inputs: [graph.add(op, inputs)]


_ONE_LINERS = {  # JAX primitive: (operand dtypes or None for any, writer).
  "rsqrt": (FLOATS, lambda g, eqn, x: [g.add("Reciprocal", [g.add("Sqrt", x)])]),
  "square": (NUMBERS, lambda g, eqn, x: [g.add("Mul", [x[0], x[0]])]),
  "ne": (BOOL_AND_NUMBERS, lambda g, eqn, x: [g.add("Not", [g.add("Equal", x)])]),
  "clamp": (NUMBERS, lambda g, eqn, x: [g.add("Max", [g.add("Min", [x[1], x[2]]), x[0]])]),
  "copy": (None, lambda g, eqn, x: [g.add("Identity", x)]),
  "stop_gradient": (None, lambda g, eqn, x: [g.add("Identity", x)]),
  "squeeze": (None, lambda g, eqn, x: [g.add("Squeeze", [x[0], g.constant(eqn.params["dimensions"], np.int64)])]),
  "transpose": (None, lambda g, eqn, x: [g.add("Transpose", x, perm=list(eqn.params["permutation"]))]),
  "concatenate": (None, lambda g, eqn, x: [g.add("Concat", x, axis=eqn.params["dimension"])]),
}
for _dtypes, _ops in _ELEMENTWISE:
  for _primitive, _op in _ops.items():
    writes(_primitive, dtypes=_dtypes)(_elementwise(_op))
for _primitive, (_dtypes, _write) in _ONE_LINERS.items():
  writes(_primitive, dtypes=_dtypes)(_write)


@writes(*_INLINED)
def _inlined(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  """A call (jit, a custom derivative's function) as its body's nodes."""
  closed = eqn.params[_INLINED[eqn.primitive.name]]
  return _write_jaxpr(graph, closed.jaxpr, closed.consts, inputs)


@writes("pow")
def _pow(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  _check_dtypes(eqn, POW_BASE, eqn.invars[:1])
  _check_dtypes(eqn, NUMBERS, eqn.invars[1:])  # ONNX's exponent may have another dtype, as JAX's may.
  return [graph.add("Pow", inputs)]


@writes("integer_pow")
def _integer_pow(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  exponent, x = eqn.params["y"], inputs[0]
  if exponent == 2:
    _check_dtypes(eqn, NUMBERS)
    return [graph.add("Mul", [x, x])]
  _check_dtypes(eqn, POW_BASE)
  return [graph.add("Pow", [x, graph.constant(float(exponent), eqn.invars[0].aval.dtype)])]


@writes("convert_element_type", dtypes=BOOL_AND_NUMBERS)
def _convert(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  _check_dtypes(eqn, BOOL_AND_NUMBERS, eqn.outvars)  # ONNX's Cast takes no complex numbers.
  return [graph.add("Cast", inputs, to=_onnx_type(eqn.params["new_dtype"]))]


@writes(*_REDUCTIONS)
def _reduce(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  axes = eqn.params["axes"]
  if not axes:
    return [graph.add("Identity", inputs[:1])]  # ONNX reduces every axis when given none.
  op, dtypes = _REDUCTIONS[eqn.primitive.name]
  _check_dtypes(eqn, dtypes)
  return [graph.add(op, [inputs[0], graph.constant(axes, np.int64)], keepdims=0)]


@writes("reshape")
def _reshape(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  if eqn.params.get("dimensions") is not None:
    _refuse(eqn, f"with dimensions={eqn.params['dimensions']}", "reshapes without a transposition")
  # allowzero: a size of 0 is 0, not "copy this dimension".
  return [graph.add("Reshape", [inputs[0], graph.shape(eqn.params["new_sizes"])], allowzero=1)]


@writes("stack")
def _stack(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  axis = eqn.params["axis"]
  parts = [graph.add("Unsqueeze", [x, graph.constant([axis], np.int64)]) for x in inputs]
  return [graph.add("Concat", parts, axis=axis)]


@writes("broadcast_in_dim")
def _broadcast_in_dim(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  shape, kept = eqn.params["shape"], eqn.params["broadcast_dimensions"]
  new_axes = [a for a in range(len(shape)) if a not in kept]
  if list(kept) != sorted(kept):
    _refuse(eqn, f"with reordered broadcast_dimensions {kept}", "broadcast_dimensions in increasing order")
  x = inputs[0]
  if new_axes:
    x = graph.add("Unsqueeze", [x, graph.constant(new_axes, np.int64)])
  return [graph.add("Expand", [x, graph.shape(shape)])]


@writes("slice")
def _slice(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  p = eqn.params
  rank = len(p["start_indices"])
  steps = p["strides"] or (1,) * rank
  starts, limits = graph.shape(p["start_indices"]), graph.shape(p["limit_indices"])
  axes = graph.constant(range(rank), np.int64)
  return [graph.add("Slice", [inputs[0], starts, limits, axes, graph.constant(steps, np.int64)])]


@writes("rev")
def _rev(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  """`x` reversed along `dimensions`: a Slice from the last element backwards (a mirrored border)."""
  axes = list(eqn.params["dimensions"])
  ends = graph.constant([np.iinfo(np.int64).min] * len(axes), np.int64)
  starts, steps = graph.constant([-1] * len(axes), np.int64), graph.constant([-1] * len(axes), np.int64)
  return [graph.add("Slice", [inputs[0], starts, ends, graph.constant(axes, np.int64), steps])]


@writes("pad")
def _pad(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  config = eqn.params["padding_config"]
  if any(interior for _, _, interior in config) or any(low < 0 or high < 0 for low, high, _ in config):
    _refuse(eqn, f"with interior or negative padding {config}", "edge padding of 0 or more")
  pads = graph.shape([low for low, _, _ in config] + [high for _, high, _ in config])
  return [graph.add("Pad", [inputs[0], pads, inputs[1]])]


@writes("select_n")
def _select(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  which, *cases = inputs
  if len(cases) != 2 or eqn.invars[0].aval.dtype != np.bool_:
    what = f"with {len(cases)} cases chosen by {eqn.invars[0].aval.dtype}"
    _refuse(eqn, what, "a boolean choice between two cases")
  return [graph.add("Where", [which, cases[1], cases[0]])]


@writes("dot_general", dtypes=EINSUM)
def _dot_general(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  """dot_general as an Einsum: batch axes shared, contracted axes summed, then lhs's and rhs's free axes."""
  _check_one_dtype(eqn)
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = eqn.params["dimension_numbers"]
  lhs_rank, rhs_rank = (len(v.aval.shape) for v in eqn.invars)
  if lhs_rank + rhs_rank - len(lhs_batch) - len(lhs_contract) > 26:
    _refuse(eqn, f"of ranks {lhs_rank} and {rhs_rank}", "at most 26 distinct axes, one letter each")
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
  return [graph.add("Einsum", inputs, equation=equation)]


@writes("conv_general_dilated", dtypes=CONV)
def _conv(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  """Any feature_group_count (ONNX's group) and rhs_dilation; no transposed convolutions."""
  p = eqn.params
  _check_one_dtype(eqn)
  if any(d != 1 for d in p["lhs_dilation"]) or p["batch_group_count"] != 1:
    what = f"with lhs_dilation={p['lhs_dilation']}, batch_group_count={p['batch_group_count']}"
    _refuse(eqn, what, "lhs_dilation 1 and batch_group_count 1 only: no transposed convolutions")
  if any(not isinstance(pad, int) or pad < 0 for pair in p["padding"] for pad in pair):
    _refuse(eqn, f"with padding {p['padding']}", "padding of 0 or more")
  numbers = p["dimension_numbers"]
  pads = [low for low, _ in p["padding"]] + [high for _, high in p["padding"]]
  out = graph.add(
    "Conv",
    [_channels_first(graph, inputs[0], numbers.lhs_spec), _channels_first(graph, inputs[1], numbers.rhs_spec)],
    strides=list(p["window_strides"]),
    pads=pads,
    dilations=list(p["rhs_dilation"]),
    group=p["feature_group_count"],
  )
  return [_back_from_channels_first(graph, out, numbers.out_spec)]


@writes("reduce_window_max", dtypes=MAX_POOL)
def _max_pool(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  """reduce_window_max over the middle axes of an NHWC array (flax's max_pool) as MaxPool."""
  p, rank = eqn.params, len(eqn.invars[0].aval.shape)
  window, strides = p["window_dimensions"], p["window_strides"]
  spatial = range(1, rank - 1)
  if rank < 3 or window[0] != 1 or window[-1] != 1 or strides[0] != 1 or strides[-1] != 1:
    _refuse(eqn, f"over the window {window}, strides {strides}", "windows over the middle axes of rank 3 or more")
  dilated = any(d != 1 for d in (*p["base_dilation"], *p["window_dilation"]))
  if dilated or tuple(p["padding"][0]) != (0, 0) or tuple(p["padding"][-1]) != (0, 0):
    what = f"with base_dilation={p['base_dilation']}, window_dilation={p['window_dilation']}, padding {p['padding']}"
    _refuse(eqn, what, "no dilation, and padding of the middle axes alone")
  if any(not isinstance(pad, int) or pad < 0 for a in spatial for pad in p["padding"][a]):
    _refuse(eqn, f"with padding {p['padding']}", "padding of 0 or more")
  pads = [p["padding"][a][0] for a in spatial] + [p["padding"][a][1] for a in spatial]
  spec = (0, rank - 1, *spatial)
  out = graph.add(
    "MaxPool",
    [_channels_first(graph, inputs[0], spec)],
    kernel_shape=[window[a] for a in spatial],
    strides=[strides[a] for a in spatial],
    pads=pads,
  )
  return [_back_from_channels_first(graph, out, spec)]


def _scalar_size(graph: onnx_graph.Graph, dim, dtype) -> str:
  """`dim` (a number or symbolic size) as a 0-d tensor of `dtype`."""
  scalar = graph.add("Reshape", [graph.size(dim), graph.constant([], np.int64)])
  return graph.add("Cast", [scalar], to=_onnx_type(dtype))


@writes("dim_as_value")
def _dim_as_value(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  """A symbolic size as a value (jax.image.resize's scale): computed from the inputs' shapes."""
  _check_dtypes(eqn, NUMBERS, eqn.outvars)
  return [_scalar_size(graph, eqn.params["dim"], eqn.outvars[0].aval.dtype)]


@writes("iota")
def _iota(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  """0, 1, ... along `dimension`, broadcast to `shape`: a Range whose length may be symbolic
  (jax.image.resize of a symbolic size builds its interpolation weights from one)."""
  p = eqn.params
  _check_dtypes(eqn, NUMBERS, eqn.outvars)
  shape, axis = p["shape"], p["dimension"]
  count = _scalar_size(graph, shape[axis], np.int64)
  # Counted in int64 then cast: exact, and Range has no kernel for every dtype.
  values = graph.add("Range", [graph.constant(0, np.int64), count, graph.constant(1, np.int64)])
  values = graph.add("Cast", [values], to=_onnx_type(p["dtype"]))
  if len(shape) == 1:
    return [values]
  others = [a for a in range(len(shape)) if a != axis]
  return [graph.add("Expand", [graph.add("Unsqueeze", [values, graph.constant(others, np.int64)]), graph.shape(shape)])]


def _write_eqn(graph: onnx_graph.Graph, eqn, inputs: list) -> list:
  """The ONNX value names of `eqn`'s outputs, after writing its nodes."""
  write = WRITERS.get(eqn.primitive.name)
  if write is None:
    raise UnsupportedOp(f"the op {eqn.primitive.name} (no ONNX writer for it)")
  return write(graph, eqn, inputs)


def _write_jaxpr(graph: onnx_graph.Graph, jaxpr, consts, inputs: list) -> list:
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
  graph = onnx_graph.Graph()
  _read_sizes(graph, input_names, closed.in_avals)
  outputs = _write_jaxpr(graph, closed.jaxpr, closed.consts, list(input_names))
  for output, name in zip(outputs, output_names, strict=True):
    graph.nodes.append(helper.make_node("Identity", [output], [name]))
  model_graph = helper.make_graph(
    graph.nodes,
    "generator",
    [_value_info(n, a) for n, a in zip(input_names, closed.in_avals, strict=True)],
    [_value_info(n, a) for n, a in zip(output_names, closed.out_avals, strict=True)],
    graph.initializers,
    doc_string=doc,
  )
  model = helper.make_model(model_graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="colorize")
  model.ir_version = 9  # What onnxruntime 1.16 and later read.
  onnx.checker.check_model(model)
  return model
