"""Reads benchmark JSON lines and prints one Markdown table of training speed with ratios.

    python -m benchmarks.summary benchmarks/results/gpu-h100.jsonl [--peak_tflops=800]

Rows are this project's `train_step` lines and the reference lines of `../shared/bench`
(`bench_torch.py`: the PyTorch implementation, `bench_jax.py`: its JAX twin), matched by
size x batch. The ratio column is images/s over the best PyTorch row of the same size x batch;
the utilisation column divides HLO FLOPs per step (see `train_step --flops_only`) by the step time.
"""

import json
import sys

from absl import app
from absl import flags

flags.DEFINE_float("peak_tflops", 800.0, "Peak of the card for the utilisation column (H100 bf16 matmul: ~800).")
FLAGS = flags.FLAGS


def read_rows(path: str) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f if line.startswith("{")]


def shape_of(row: dict) -> str:
  if "case" in row:
    _, size, batch = row["case"].split(":")
    return f"{size}x{batch}"
  return f"{row['size']}x{row['batch']}"


def images_per_second(row: dict) -> float:
  """From the median step time: the rows' own images/s fields are rounded, too coarsely for slow CPU steps."""
  return int(shape_of(row).split("x")[1]) / row["median_step_s"]


def label_of(row: dict) -> str:
  if row.get("benchmark") == "train_step":
    return f"colorize {row['dtype']}"
  extras = [row["dtype"]] + ["channels_last"] * bool(row.get("channels_last") and row["framework"] == "torch")
  extras += ["compile"] * bool(row.get("compile") and row["framework"] == "torch")
  name = "PyTorch reference" if row["framework"] == "torch" else "JAX twin"
  return f"{name} {', '.join(extras)}"


def table(rows: list[dict], peak_tflops: float) -> str:
  timed = [r for r in rows if r.get("images_per_s")]
  flops = {shape_of(r): r["hlo_flops_per_step"] for r in rows if "hlo_flops_per_step" in r}
  best_torch = {}
  for r in timed:
    if r.get("framework") == "torch":
      best_torch[shape_of(r)] = max(best_torch.get(shape_of(r), 0), images_per_second(r))
  lines = [
    "| size x batch | run | step ms | images/s | vs best PyTorch | TFLOP/s (HLO count) | share of peak |",
    "|---|---|---:|---:|---:|---:|---:|",
  ]
  for r in sorted(timed, key=lambda r: (shape_of(r), -images_per_second(r))):
    shape, step_s = shape_of(r), r["median_step_s"]
    speed = images_per_second(r)
    shown_speed = f"{speed:,.{2 if speed < 10 else 0}f}"
    ratio = f"{speed / best_torch[shape]:.2f}x" if shape in best_torch else "-"
    tflops = flops.get(shape) / step_s / 1e12 if flops.get(shape) and r.get("benchmark") == "train_step" else None
    achieved = f"{tflops:.0f}" if tflops else "-"
    share = f"{100 * tflops / peak_tflops:.0f}%" if tflops else "-"
    lines.append(f"| {shape} | {label_of(r)} | {1000 * step_s:.1f} | {shown_speed} | {ratio} | {achieved} | {share} |")
  return "\n".join(lines)


def main(argv):
  for path in argv[1:]:
    print(table(read_rows(path), FLAGS.peak_tflops))
  if len(argv) < 2:
    sys.exit("usage: python -m benchmarks.summary RESULTS.jsonl")


if __name__ == "__main__":
  app.run(main)
