"""Times the project's real jitted train step (1 D + N G updates) on random uint8 images.

    python -m benchmarks.train_step                      # the CPU-sized cases
    python -m benchmarks.train_step --quick              # one small case, a few steps (CI smoke run)
    python -m benchmarks.train_step --case=cifar10:32:128 --case=places365:256:16

Prints one JSON line per case (compile seconds, median step seconds, images/s, XLA FLOPs per
step, achieved FLOP/s, peak RSS) and then a Markdown table.
"""

import ast
import json
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from colorize import steps  # noqa: E402
from configs import cifar10  # noqa: E402
from configs import demo  # noqa: E402
from configs import places365  # noqa: E402

CONFIGS = {"cifar10": cifar10, "places365": places365, "demo": demo}
# config:size:batch. CPU-sized cases: the paper's networks at 32 and 64 px, batch 16.
DEFAULT_CASES = ("cifar10:32:16", "cifar10:64:16")
QUICK_CASES = ("demo:32:8",)

flags.DEFINE_multi_string("case", None, "config:size:batch; repeatable.")
flags.DEFINE_bool("quick", False, "One small case, 1 warm-up and 3 timed steps.")
flags.DEFINE_integer("steps", 5, "Timed steps per case.")
flags.DEFINE_integer("warmup", 1, "Untimed steps after compiling.")
flags.DEFINE_string("dtype", "float32", "Compute dtype.")
flags.DEFINE_bool("flops_only", False, "Only lower each case and print its HLO FLOP count (fast, any backend).")
flags.DEFINE_multi_string("set", [], "Config override FIELD=VALUE (Python literal), e.g. model.disc_dropout=0.0.")
FLAGS = flags.FLAGS


def case_config(name: str, size: int, batch: int):
  config = CONFIGS[name].get_config()
  config.image_size, config.batch_size, config.dtype = size, batch, FLAGS.dtype
  overrides = dict(item.split("=", 1) for item in FLAGS.set)
  config.update_from_flattened_dict({key: ast.literal_eval(value) for key, value in overrides.items()})
  if size < 2**config.model.disc_units * 2:
    config.model.disc_units = max(1, int(np.log2(size)) - 2)
  return config


def compiled_flops(compiled):
  flops = (first_cost(compiled.cost_analysis()) or {}).get("flops")
  return float(flops) if flops and flops > 0 else None


def first_cost(analysis):
  return analysis[0] if isinstance(analysis, list | tuple) else analysis


def peak_memory_mb() -> tuple[str, float]:
  """Peak device memory where the backend reports it (GPU), else this process's peak RSS (CPU)."""
  stats = jax.devices()[0].memory_stats() or {}
  if "peak_bytes_in_use" in stats:
    return "device", stats["peak_bytes_in_use"] / 2**20
  return "rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def lowered_case(spec: str):
  """(config, mesh, state, jitted step, batch) for one config:size:batch case."""
  name, size, batch = spec.split(":")
  config = case_config(name, int(size), int(batch))
  mesh = steps.make_mesh()
  state, (step_fn, _) = steps.setup(config, mesh)
  images = np.random.default_rng(0).integers(0, 256, (config.batch_size, *(2 * [config.image_size]), 3), np.uint8)
  return config, mesh, state, step_fn, steps.global_batch(mesh, images)


def hlo_flops(spec: str) -> dict:
  """FLOPs of the unoptimised step program: convolutions included on every backend that lowers it."""
  config, _, state, step_fn, batch_array = lowered_case(spec)
  flops = (first_cost(step_fn.lower(state, batch_array).cost_analysis()) or {}).get("flops")
  return {"benchmark": "train_step_flops", "case": spec, "dtype": config.dtype, "hlo_flops_per_step": flops}


def time_case(spec: str, timed_steps: int, warmup: int) -> dict:
  config, _, state, step_fn, batch_array = lowered_case(spec)
  start = time.perf_counter()
  compiled = step_fn.lower(state, batch_array).compile()
  compile_s = time.perf_counter() - start
  for _ in range(warmup):
    state, metrics = compiled(state, batch_array)
  jax.block_until_ready(state)
  times = []
  for _ in range(timed_steps):
    start = time.perf_counter()
    state, metrics = compiled(state, batch_array)
    jax.block_until_ready((state, metrics))
    times.append(time.perf_counter() - start)
  median = statistics.median(times)
  flops = compiled_flops(compiled)
  device = jax.devices()[0]
  memory_kind, memory_mb = peak_memory_mb()
  return {
    "benchmark": "train_step",
    "case": spec,
    "device": f"{jax.device_count()} x {device.device_kind}",
    "dtype": config.dtype,
    "base_width": config.model.base_width,
    "disc_units": config.model.disc_units,
    "compile_s": round(compile_s, 2),
    "median_step_s": round(median, 4),
    "min_step_s": round(min(times), 4),
    "steps_per_s": round(1 / median, 3),
    "images_per_s": round(config.batch_size / median, 2),
    "flops_per_step": flops,
    "achieved_gflops": round(flops / median / 1e9, 1) if flops else None,
    f"peak_{memory_kind}_mb": round(memory_mb),
    "steps_run": warmup + timed_steps + 1,
    "loss_finite": bool(np.isfinite(float(metrics["g_loss"]))),
  }


def main(argv):
  del argv
  cases = FLAGS.case or (QUICK_CASES if FLAGS.quick else DEFAULT_CASES)
  timed_steps, warmup = (3, 1) if FLAGS.quick else (FLAGS.steps, FLAGS.warmup)
  if FLAGS.flops_only:
    for spec in cases:
      print(json.dumps(hlo_flops(spec)), flush=True)
    return
  rows = []
  for spec in cases:
    row = time_case(spec, timed_steps, warmup)
    print(json.dumps(row), flush=True)
    rows.append(row)
  print("\n| case | device | compile s | step s | steps/s | images/s | GFLOP/s |", file=sys.stderr)
  print("|---|---|---:|---:|---:|---:|---:|", file=sys.stderr)
  for r in rows:
    print(
      f"| {r['case']} | {r['device']} | {r['compile_s']} | {r['median_step_s']} | {r['steps_per_s']} | "
      f"{r['images_per_s']} | {r['achieved_gflops']} |",
      file=sys.stderr,
    )


if __name__ == "__main__":
  app.run(main)
