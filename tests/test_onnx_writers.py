"""The ONNX writer registry (`onnx_export.WRITERS`) op by op: each writer onnxruntime checks against JAX on a tiny
function, and each refuses what it does not write (an op, a dtype, an option) in one line naming it."""

import jax
import jax.numpy as jnp
import numpy as np
import onnxruntime
import pytest

from colorize.exporting import export
from colorize.exporting import onnx_export
from colorize.runs.run_setup import UsageError

F32 = jnp.float32


def spec(*shape, dtype=F32):
  return jax.ShapeDtypeStruct(shape, dtype)


@jax.custom_vjp
def doubled(x):
  return 2.0 * x


doubled.defvjp(lambda x: (2.0 * x, None), lambda _, g: (2.0 * g,))


def arithmetic(x, y):
  positive = jnp.abs(x) + 0.5
  return (
    *(x - y, x * y, x / positive, jnp.maximum(x, y), jnp.minimum(x, y), positive**y, -x, jnp.sign(x)),
    *(jnp.tanh(x), jax.nn.sigmoid(x), jnp.exp(x), jnp.log(positive), jnp.sqrt(positive), jax.scipy.special.erf(x)),
    *(jnp.floor(x), jnp.ceil(x), jax.lax.rsqrt(positive), jnp.square(x), x**2, x**3, jax.lax.clamp(-0.5, x, 0.5)),
  )


def comparisons(x, y):
  either = (x > y) | (x < -1.0)
  both = (x >= 0.0) & ~(y <= 0.0)
  same, differ = jnp.floor(x) == jnp.floor(y), jnp.floor(x) != jnp.floor(y)
  return either, both, same, differ, jnp.where(either, x, y), both.astype(F32)


def shapes(x):  # x: (2, 3, 4)
  strided = jax.lax.slice(x, (0, 1, 0), (2, 3, 4), (1, 1, 2))
  row = jax.lax.squeeze(jax.lax.slice(x, (0, 2, 0), (2, 3, 4)), (1,))
  return (
    *(x.reshape(6, 4), strided, jax.lax.broadcast_in_dim(row, (2, 5, 4), (0, 2)), x.transpose(2, 0, 1)),
    *(jnp.concatenate([x, 2 * x], 1), jnp.stack([x, -x], 1), jax.lax.rev(x, (0, 2))),
    *(jax.lax.pad(x, 0.5, ((1, 0, 0), (0, 2, 0), (0, 0, 0))), jnp.copy(x), jax.lax.stop_gradient(x)),
  )


def reductions(x):  # x: (2, 3, 4)
  return x.sum(axis=(1, 2)), x.max(axis=0), x.min(axis=2), x.sum(axis=()), x.max(axis=())


def calls(x):  # jit, custom_jvp_call (relu), custom_vjp_call
  return (jax.jit(lambda v: v * 3.0)(x) + jax.nn.relu(x) + doubled(x),)


def layers(x, kernel, dense):  # x: (1, 8, 8, 4) NHWC; a grouped, dilated, strided conv, max pooling, matmuls.
  conv = jax.lax.conv_general_dilated(
    x, kernel, (2, 1), ((1, 2), (0, 1)), rhs_dilation=(2, 1), feature_group_count=2,
    dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )  # fmt: skip
  pooled = jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), ((0, 0), (1, 0), (0, 1), (0, 0)))
  return conv, pooled @ dense, jnp.einsum("hwc,hcd->hwd", x[0], jnp.broadcast_to(dense, (8, 4, 3)))


def network(x, kernel):  # A convolution, a bias, tanh, a sum over the image.
  conv = jax.lax.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
  return (jnp.tanh(conv + 0.1).sum(axis=(1, 2)),)


def symbolic(x):  # x: (b, 3): a symbolic size as a value, and an iota of a symbolic length.
  return x * x.shape[0], jax.lax.broadcasted_iota(jnp.int32, (x.shape[0], 3), 0)


(BATCH,) = jax.export.symbolic_shape("b")
CASES = {  # name: (function, input specs for the export, concrete inputs' shapes)
  "arithmetic": (arithmetic, [spec(2, 3), spec(2, 3)], [(2, 3), (2, 3)]),
  "comparisons": (comparisons, [spec(2, 3), spec(2, 3)], [(2, 3), (2, 3)]),
  "shapes": (shapes, [spec(2, 3, 4)], [(2, 3, 4)]),
  "reductions": (reductions, [spec(2, 3, 4)], [(2, 3, 4)]),
  "calls": (calls, [spec(2, 3)], [(2, 3)]),
  "layers": (layers, [spec(1, 8, 8, 4), spec(3, 3, 2, 6), spec(4, 3)], [(1, 8, 8, 4), (3, 3, 2, 6), (4, 3)]),
  "network": (network, [spec(2, 8, 8, 3), spec(3, 3, 3, 5)], [(2, 8, 8, 3), (3, 3, 3, 5)]),
  "symbolic": (symbolic, [spec(BATCH, 3)], [(4, 3)]),
}


def export_case(name: str):
  function, specs, _ = CASES[name]
  outputs = jax.eval_shape(function, *specs)
  names = [f"x{i}" for i in range(len(specs))]
  return onnx_export.to_onnx(function, specs, names, [f"y{i}" for i in range(len(outputs))])


def refusal(function, *specs) -> str:
  """The message of the error `to_onnx` raises for `function`, checked to be one line."""
  with pytest.raises(onnx_export.UnsupportedOp) as error:
    onnx_export.to_onnx(function, list(specs), [f"x{i}" for i in range(len(specs))], ["y"])
  assert "\n" not in str(error.value)
  return str(error.value)


WRITTEN = {  # Every JAX primitive with a writer.
  *("abs", "add", "and", "ceil", "div", "eq", "erf", "exp", "floor", "ge", "gt", "le", "log", "logistic", "lt"),
  *("max", "min", "mul", "ne", "neg", "not", "or", "pow", "integer_pow", "rsqrt", "sign", "sqrt", "square", "sub"),
  *("tanh", "clamp", "select_n", "convert_element_type", "copy", "stop_gradient", "jit", "custom_jvp_call"),
  *("custom_vjp_call", "reduce_sum", "reduce_max", "reduce_min", "reshape", "squeeze", "broadcast_in_dim"),
  *("transpose", "concatenate", "stack", "slice", "rev", "pad", "dot_general", "conv_general_dilated"),
  *("reduce_window_max", "dim_as_value", "iota"),
}


def test_every_writer_is_met_by_the_cases_and_is_a_jax_primitive(monkeypatch):
  met = set()

  def recorded(write):
    def record(graph, eqn, inputs):
      met.add(eqn.primitive.name)
      return write(graph, eqn, inputs)

    return record

  for primitive, write in list(onnx_export.WRITERS.items()):
    monkeypatch.setitem(onnx_export.WRITERS, primitive, recorded(write))
  for name in CASES:
    export_case(name)
  # `met`: the primitives JAX put in the cases' jaxprs and `to_onnx` wrote. No writer is dead or untested.
  assert met == set(onnx_export.WRITERS) == WRITTEN


@pytest.mark.parametrize("name", list(CASES))
def test_each_case_exported_gives_jax_outputs_in_onnxruntime(name):
  function, _, shapes = CASES[name]
  rng = np.random.default_rng(0)
  inputs = [rng.uniform(-1.5, 1.5, shape).astype(np.float32) for shape in shapes]
  session = onnxruntime.InferenceSession(export_case(name).SerializeToString(), providers=["CPUExecutionProvider"])
  got = session.run(None, {f"x{i}": x for i, x in enumerate(inputs)})
  expected = function(*inputs)
  assert len(got) == len(expected)
  for ours, theirs in zip(got, expected, strict=True):
    assert ours.dtype == theirs.dtype and ours.shape == theirs.shape
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=0, atol=1e-5)


def test_an_op_without_a_writer_is_named_in_one_line():
  assert refusal(jnp.sort, spec(4)) == "the op sort (no ONNX writer for it)"
  assert issubclass(onnx_export.UnsupportedOp, ValueError)
  # What the export mode tells its user.
  expected = r"--format=onnx cannot write this generator: the op sort \(no ONNX writer for it\); use"
  with pytest.raises(UsageError, match=expected):
    export.onnx_bytes(jnp.sort, [spec(4)])


FLOATS_AND_INTS = "float16, bfloat16, float32, float64, int8, int16, int32, int64"
NUMBERS = f"{FLOATS_AND_INTS}, uint8, uint16, uint32, uint64"


@pytest.mark.parametrize(
  "function, dtype, expected",
  [
    (lambda x: x + x, jnp.complex64, f"the op add on complex64 (it writes {NUMBERS})"),
    (lambda x: jnp.maximum(x, x), jnp.bool_, f"the op max on bool (it writes {NUMBERS})"),
    (lambda x: x & x, jnp.int32, "the op and on int32 (it writes bool)"),  # Bitwise in JAX.
    (lambda x: -x, jnp.uint8, f"the op neg on uint8 (it writes {FLOATS_AND_INTS})"),
    (lambda x: x.astype(jnp.complex64), F32, f"the op convert_element_type on complex64 (it writes bool, {NUMBERS})"),
    (
      lambda x: jax.lax.reduce(x, np.int8(0), jax.lax.add, (0,)),
      jnp.int8,
      "the op reduce_sum on int8 (it writes float16, bfloat16, float32, float64, int32, int64, uint32, uint64)",
    ),
    (
      lambda x: jax.lax.conv(x, x, (1, 1), "VALID"),
      jnp.int32,
      "the op conv_general_dilated on int32 (it writes float16, float32, float64)",
    ),
  ],
  ids=["complex add", "bool max", "int and", "uint neg", "cast to complex", "int8 sum", "int conv"],
)
def test_a_writer_refuses_a_dtype_it_does_not_write_naming_both(function, dtype, expected):
  assert refusal(function, spec(1, 1, 3, 3, dtype=dtype)) == expected


def test_matmuls_and_convolutions_refuse_a_wider_output_than_their_operands():
  half = spec(1, 1, 3, 3, dtype=jnp.float16)
  message = refusal(lambda x: jax.lax.dot(x[0, 0], x[0, 0], preferred_element_type=F32), half)
  assert message == "the op dot_general mixing float16, float32 (it writes operands and output of one dtype)"
  message = refusal(lambda x: jax.lax.conv(x, x, (1, 1), "VALID", preferred_element_type=F32), half)
  assert message == "the op conv_general_dilated mixing float16, float32 (it writes operands and output of one dtype)"


@pytest.mark.parametrize(
  "function, specs, expected",
  [
    (
      lambda x, k: jax.lax.conv_transpose(x, k, (2, 2), "SAME"),
      [spec(1, 4, 4, 2), spec(3, 3, 2, 2)],
      "the op conv_general_dilated with lhs_dilation=(2, 2), batch_group_count=1 (it writes lhs_dilation 1 and",
    ),
    (
      lambda x, k: jax.lax.conv_general_dilated(x, k, (1, 1), "VALID", batch_group_count=2),
      [spec(2, 2, 4, 4), spec(2, 2, 3, 3)],
      "the op conv_general_dilated with lhs_dilation=(1, 1), batch_group_count=2 (it writes lhs_dilation 1 and",
    ),
    (
      lambda i, x: jax.lax.select_n(i, x, x, x),
      [spec(3, dtype=jnp.int32), spec(3)],
      "the op select_n with 3 cases chosen by int32 (it writes a boolean choice between two cases)",
    ),
    (
      lambda x: jax.lax.pad(x, 0.0, ((0, 0, 1),)),
      [spec(3)],
      "the op pad with interior or negative padding ((0, 0, 1),) (it writes edge padding of 0 or more)",
    ),
    (
      lambda x: jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2), (1, 1, 1), "VALID"),
      [spec(1, 4, 4)],
      "the op reduce_window_max over the window (1, 2, 2), strides (1, 1, 1) (it writes windows over the middle",
    ),
  ],
  ids=["transposed conv", "batch groups", "three cases", "interior padding", "pooling channels"],
)
def test_a_writer_refuses_an_option_it_does_not_write_naming_it(function, specs, expected):
  assert refusal(function, *specs).startswith(expected)
