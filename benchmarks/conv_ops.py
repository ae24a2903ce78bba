"""Times one convolution of the networks, XLA's vs `models.small_map_conv`'s matrix product, forward and backward.

    python -m benchmarks.conv_ops                # the paper U-Net's convolutions on its 2x2 to 8x8 maps at 64x16
    python -m benchmarks.conv_ops --quick        # two tiny shapes (CI smoke run)
    python -m benchmarks.conv_ops --shape=16,4,4,512,1024,3

Each --shape is batch,height,width,in,out,kernel (stride 1, 'SAME', NHWC/HWIO, float32). One row
per shape: the median of --repeats calls of the jitted forward pass and of both gradients
(`jax.vjp` with a random cotangent) for `lax.conv_general_dilated` and, where it takes the matrix
route (maps of at most `models.SMALL_MAP_PIXELS` pixels, CPU), for `small_map_conv`.
"""

import statistics
import time

import jax
from absl import app
from absl import flags

from benchmarks import common
from colorize import models

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
flags.DEFINE_multi_string("shape", PAPER_64x16, "batch,height,width,in,out,kernel; repeatable.")
flags.DEFINE_integer("repeats", 7, "Timed calls per measurement (after one untimed call).")
flags.DEFINE_bool("quick", False, "Two tiny shapes, 3 repeats.")
FLAGS = flags.FLAGS
NUMBERS = ("NHWC", "HWIO", "NHWC")


def median_ms(fn, *args, repeats: int) -> float:
  jax.block_until_ready(fn(*args))  # Compiles.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return round(1000 * statistics.median(times), 2)


def forward_and_backward(conv):
  forward = jax.jit(lambda x, w: conv(x, w, (1, 1), "SAME", dimension_numbers=NUMBERS))
  backward = jax.jit(
    lambda x, w, g: jax.vjp(lambda a, b: conv(a, b, (1, 1), "SAME", dimension_numbers=NUMBERS), x, w)[1](g)
  )
  return forward, backward


def time_shape(spec: str, repeats: int) -> dict:
  batch, height, width, cin, cout, kernel = (int(v) for v in spec.split(","))
  keys = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(keys[0], (batch, height, width, cin))
  w = 0.05 * jax.random.normal(keys[1], (kernel, kernel, cin, cout))
  g = jax.random.normal(keys[2], (batch, height, width, cout))
  row = {"benchmark": "conv_ops", "cpu": common.cpu_model(), "op": f"{batch}x{height}x{width} {cin}->{cout} k{kernel}"}
  routes = {"xla": jax.lax.conv_general_dilated}
  if height * width <= models.SMALL_MAP_PIXELS and jax.default_backend() == "cpu":
    routes["matmul"] = models.small_map_conv
  for name, conv in routes.items():
    forward, backward = forward_and_backward(conv)
    row[f"{name}_forward_ms"] = median_ms(forward, x, w, repeats=repeats)
    row[f"{name}_backward_ms"] = median_ms(backward, x, w, g, repeats=repeats)
  return common.emit(row)


def main(argv):
  del argv
  shapes = ["2,2,2,8,8,3", "2,8,8,8,8,3"] if FLAGS.quick else FLAGS.shape
  rows = [time_shape(spec, 3 if FLAGS.quick else FLAGS.repeats) for spec in shapes]
  columns = ["op", "xla_forward_ms", "matmul_forward_ms", "xla_backward_ms", "matmul_backward_ms"]
  common.print_table(rows, columns)


if __name__ == "__main__":
  app.run(main)
