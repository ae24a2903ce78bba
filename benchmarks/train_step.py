"""Times the project's real jitted train step (1 D + N G updates) on random uint8 images.

    python -m benchmarks.train_step                      # the CPU-sized cases
    python -m benchmarks.train_step --quick              # one small case, a few steps (CI smoke run)
    python -m benchmarks.train_step --case=cifar10:32:128 --case=places365:256:16
    python -m benchmarks.train_step --reference=../shared/bench --reference_python=.venv-bench/bin/python

Prints one JSON line per case (compile seconds, median step seconds, images/s, XLA FLOPs per
step, achieved FLOP/s, peak memory) and then a Markdown table. With --reference, each case is
also run, right after ours and with the same networks, size, batch and step counts, by the
PyTorch reference of ../shared/bench (`bench_torch.py`; --twin adds its JAX twin); their JSON
lines follow ours and the table gets the ratio of step times (> 1: ours is faster).
"""

import ast
import json
import os
import statistics
import subprocess
import sys
import time

import jax
import numpy as np
from absl import app
from absl import flags

from benchmarks import common
from colorize.training import compiled
from colorize.training import steps
from configs import cifar10
from configs import demo
from configs import places365

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
flags.DEFINE_string("reference", None, "../shared/bench: also time its PyTorch reference on each case.")
flags.DEFINE_string("reference_python", sys.executable, "A Python with torch for --reference.")
flags.DEFINE_bool("twin", False, "With --reference: also time its JAX twin (bench_jax.py).")
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
  return "rss", common.peak_rss_mb()


def lowered_case(spec: str):
  """(config, mesh, state, jitted step, batch) for one config:size:batch case."""
  name, size, batch = spec.split(":")
  config = case_config(name, int(size), int(batch))
  mesh = steps.make_mesh()
  state, (step_fn, _) = compiled.setup(config, mesh)
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


def reference_case(script: str, python: str, spec: str, timed_steps: int, warmup: int) -> dict:
  """One run of a ../shared/bench script on the networks, size and batch of our case."""
  name, size, batch = spec.split(":")
  config = case_config(name, int(size), int(batch))
  bfloat16 = config.dtype == "bfloat16"
  device = "cuda" if jax.default_backend() == "gpu" else "cpu"
  command = [python, os.path.join(FLAGS.reference, script), "--device", device]
  command += ["--size", size, "--batch", batch, "--steps", str(timed_steps), "--warmup", str(warmup)]
  command += ["--base", str(config.model.base_width), "--d-units", str(config.model.disc_units)]
  command += (["--amp"] if script == "bench_torch.py" else ["--bf16"]) if bfloat16 else []
  child = subprocess.run(command, capture_output=True, text=True)
  lines = [line for line in child.stdout.splitlines() if line.startswith("{")]
  if child.returncode or not lines:
    return {"run": script, "case": spec, "error": child.stderr[-500:]}
  return {**json.loads(lines[-1]), "case": spec}


def main(argv):
  del argv
  cases = FLAGS.case or (QUICK_CASES if FLAGS.quick else DEFAULT_CASES)
  timed_steps, warmup = (3, 1) if FLAGS.quick else (FLAGS.steps, FLAGS.warmup)
  if FLAGS.flops_only:
    for spec in cases:
      common.emit(hlo_flops(spec))
    return
  rows = []
  for spec in cases:
    row = time_case(spec, timed_steps, warmup)
    common.emit(row)
    if FLAGS.reference:
      scripts = [("torch", "bench_torch.py", FLAGS.reference_python)]
      scripts += [("twin", "bench_jax.py", sys.executable)] if FLAGS.twin else []
      for label, script, python in scripts:
        reference = reference_case(script, python, spec, timed_steps, warmup)
        common.emit(reference)
        if "median_step_s" in reference:
          row[f"{label}_step_s"] = round(reference["median_step_s"], 4)
          row[f"vs_{label}"] = round(reference["median_step_s"] / row["median_step_s"], 2)
    rows.append(row)
  references = [k for k in ("torch_step_s", "vs_torch", "twin_step_s", "vs_twin") if any(k in r for r in rows)]
  columns = ["case", "device", "compile_s", "median_step_s", "images_per_s", "achieved_gflops", *references]
  common.print_table(rows, columns)


if __name__ == "__main__":
  app.run(main)
