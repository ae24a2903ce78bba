"""Times the networks' convolutions: XLA's own against this project's CPU routes, forward and backward.

    python -m benchmarks.conv_ops                    # the paper U-Net's convolutions on its 2x2 to 8x8 maps at 64x16
    python -m benchmarks.conv_ops --first_and_last   # its first layers and G's last (1x1) at 256 px
    python -m benchmarks.conv_ops --weight_gradient  # weight gradients alone: XLA's and the flat weight gradient
    python -m benchmarks.conv_ops --upsampled        # its decoders' upsampling convolutions at 256x4
    python -m benchmarks.conv_ops --quick            # tiny shapes (CI smoke run)
    python -m benchmarks.conv_ops --shape=16,4,4,512,1024,3

Each --shape is batch,height,width,in,out,kernel (stride 1, 'SAME', NHWC/HWIO, float32). One row
per shape: the median of --repeats calls of the jitted forward pass and of both gradients
(`jax.vjp` with a random cotangent). Routes: `xla` is `lax.conv_general_dilated`; `matmul` is
`cpu_kernels.matmul_conv` where `cpu_kernels.conv_route` does not leave the convolution to XLA (small
maps, 1x1 kernels, thin patches, large maps). With --upsampled the
input is first upsampled 2x (nearest), as in the decoder: `xla` convolves the upsampled map,
`phases` is `cpu_kernels.nearest_upsample_conv`. With --weight_gradient, only the weight gradient.
"""

import functools
import statistics

import jax
from absl import app
from absl import flags

from benchmarks import common
from colorize.networks import cpu_kernels

# The paper U-Net's convolutions at 64 px, batch 16, on its deepest maps (4x4 and 2x2) and on 8x8.
PAPER_64x16 = [
  "16,4,4,512,1024,3",
  "16,4,4,1536,512,3",
  "16,4,4,512,512,3",
  "16,4,4,1024,512,2",
  "16,2,2,1024,1024,3",
  "16,8,8,256,512,3",
  "16,8,8,768,256,3",
]
# The decoders' 2x2 convolutions at 256 px, batch 4, given their inputs before upsampling.
UPSAMPLED_256x4 = ["4,128,128,64,32,2", "4,64,64,128,64,2", "4,32,32,256,128,2", "4,16,16,512,256,2"]
# The U-Net's 3x3 convolutions at 256 px, batch 4 (and two other batches) for the weight gradient alone.
WEIGHT_GRADIENT_256x4 = [
  "4,128,128,64,128,3",
  "4,256,256,96,32,3",
  "4,128,128,192,64,3",
  "4,256,256,32,32,3",
  "4,64,64,128,256,3",
  "4,64,64,384,128,3",
  "2,128,128,64,128,3",
  "8,128,128,64,128,3",
]
# The first layers of G (gray in) and D (gray + Lab in) and G's last (1x1) at 256 px, batch 4 and 8.
FIRST_AND_LAST_256 = [f"{batch},256,256,{spec}" for batch in (4, 8) for spec in ("1,64,3", "4,64,3", "32,3,1")]
flags.DEFINE_multi_string("shape", None, "batch,height,width,in,out,kernel; repeatable (default: see above).")
flags.DEFINE_bool("upsampled", False, "Time the decoder's upsampling convolution (kernel 2) instead.")
flags.DEFINE_bool("first_and_last", False, "Time the networks' first layers and G's last one at 256 px.")
flags.DEFINE_bool("weight_gradient", False, "Time the weight gradient alone: XLA's and the flat one.")
flags.DEFINE_integer("repeats", 7, "Timed calls per measurement (after one untimed call).")
flags.DEFINE_bool("quick", False, "Two tiny shapes, 3 repeats.")
FLAGS = flags.FLAGS


def median_ms(fn, *args, repeats: int) -> float:
  return round(1000 * statistics.median(common.call_seconds(fn, *args, repeats=repeats)), 2)


def forward_and_backward(conv):
  forward = jax.jit(lambda x, w: conv(x, w, (1, 1), "SAME", dimension_numbers=cpu_kernels.NHWC))
  backward = jax.jit(
    lambda x, w, g: jax.vjp(lambda a, b: conv(a, b, (1, 1), "SAME", dimension_numbers=cpu_kernels.NHWC), x, w)[1](g)
  )
  return forward, backward


def upsampled_xla(lhs, rhs, *args, **kwargs):
  return jax.lax.conv_general_dilated(cpu_kernels.upsample_nearest(lhs), rhs, *args, **kwargs)


def routes_for(route: str | None) -> dict:
  """XLA's convolution and ours; `route` is `cpu_kernels.conv_route`'s, None for the upsampling convolution."""
  if route is None:
    return {"xla": upsampled_xla, "phases": cpu_kernels.nearest_upsample_conv}
  return {"xla": jax.lax.conv_general_dilated} | ({} if route == "xla" else {"matmul": cpu_kernels.matmul_conv})


def weight_gradient_ms(x, w, g, repeats: int) -> dict:
  """The weight gradient alone ('SAME'): XLA's, and `cpu_kernels.flat_weight_gradient`'s."""
  padding = jax.lax.padtype_to_pads(x.shape[1:3], w.shape[:2], (1, 1), "SAME")
  conv = functools.partial(jax.lax.conv_general_dilated, window_strides=(1, 1), padding=padding)
  xla = jax.jit(lambda x, w, g: jax.vjp(lambda b: conv(x, b, dimension_numbers=cpu_kernels.NHWC), w)[1](g)[0])
  flat = jax.jit(lambda x, g: cpu_kernels.flat_weight_gradient(x, g, w.shape[:2], padding))
  return {
    "xla_weight_gradient_ms": median_ms(xla, x, w, g, repeats=repeats),
    "flat_weight_gradient_ms": median_ms(flat, x, g, repeats=repeats),
  }


def time_shape(spec: str, repeats: int, upsampled: bool) -> dict:
  batch, height, width, cin, cout, kernel = (int(v) for v in spec.split(","))
  scale = 2 if upsampled else 1
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (batch, height, width, cin))
  w = 0.05 * jax.random.normal(keys[1], (kernel, kernel, cin, cout))
  g = jax.random.normal(keys[2], (batch, scale * height, scale * width, cout))
  # 'SAME': an output per pixel of the (upsampled) map.
  forward_gflop = 2 * batch * scale**2 * height * width * kernel * kernel * cin * cout / 1e9
  row = {"benchmark": "conv_ops", "cpu": common.cpu_model(), "op": f"{batch}x{height}x{width} {cin}->{cout} k{kernel}"}
  row |= {"upsampled": upsampled, "forward_gflop": round(forward_gflop, 3)}
  # matmul_conv's way (its forward pass is XLA's on the gradient-only routes).
  route = None if upsampled else cpu_kernels.conv_route(x, w, (1, 1), "SAME", dimension_numbers=cpu_kernels.NHWC)
  if route:
    row["route"] = route
  if FLAGS.weight_gradient:
    return common.emit(row | weight_gradient_ms(x, w, g, repeats))
  for name, conv in routes_for(route).items():
    forward, backward = forward_and_backward(conv)
    row[f"{name}_forward_ms"] = median_ms(forward, x, w, repeats=repeats)
    row[f"{name}_backward_ms"] = median_ms(backward, x, w, g, repeats=repeats)
    # Both gradients together: twice the forward pass's multiply-adds.
    row[f"{name}_forward_gflops"] = round(forward_gflop / row[f"{name}_forward_ms"] * 1000, 1)
    row[f"{name}_backward_gflops"] = round(2 * forward_gflop / row[f"{name}_backward_ms"] * 1000, 1)
  return common.emit(row)


def main(argv):
  del argv
  if FLAGS.quick:
    shapes = ["2,4,4,8,8,2"] if FLAGS.upsampled else ["2,2,2,8,8,3", "2,8,8,8,8,3"]
  else:
    default = FIRST_AND_LAST_256 if FLAGS.first_and_last else PAPER_64x16
    default = WEIGHT_GRADIENT_256x4 if FLAGS.weight_gradient else default
    shapes = FLAGS.shape or (UPSAMPLED_256x4 if FLAGS.upsampled else default)
  rows = [time_shape(spec, 3 if FLAGS.quick else FLAGS.repeats, FLAGS.upsampled) for spec in shapes]
  if FLAGS.weight_gradient:
    return common.print_table(rows, ["op", "xla_weight_gradient_ms", "flat_weight_gradient_ms", "route"])
  ours = "phases" if FLAGS.upsampled else "matmul"
  columns = ["op", "xla_forward_ms", f"{ours}_forward_ms", "xla_backward_ms", f"{ours}_backward_ms"]
  columns += [] if FLAGS.upsampled else ["route"]
  columns += ["xla_forward_gflops", "xla_backward_gflops"]
  common.print_table(rows, columns)


if __name__ == "__main__":
  app.run(main)
