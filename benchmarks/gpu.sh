#!/usr/bin/env bash
# The whole GPU comparison in about 6 minutes on one H100: this project's real train step at the
# paper's two scales (places365 256x256 batch 16, cifar10 32x32 batch 128) in float32 and bfloat16,
# 200 timed steps each, then the JAX twin and the PyTorch reference of ../shared/bench on the same card.
#
#   bash benchmarks/gpu.sh                 # OUT=folder (default benchmarks/results), BENCH=../shared/bench
#
# Writes $OUT/gpu.jsonl (one JSON line per run; {"run": ..., "error": ...} for a failed or skipped
# one) and prints the table of benchmarks/summary.py. Needs jax, flax, optax, ml-collections, absl.
set -u
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-benchmarks/results}"
BENCH="${BENCH:-../shared/bench}"
PY="${PYTHON:-python3}"
BUDGET="${BUDGET:-380}"
STEPS="${STEPS:-200}"
CASES="${CASES-places365:256:16 cifar10:32:128}"
REFERENCE_CASES="${REFERENCE_CASES-256:16 32:128}"
mkdir -p "$OUT"
JSONL="$OUT/gpu.jsonl"
: > "$JSONL"
START=$SECONDS

run() {  # run NAME CAP_SECONDS CMD...: keeps the JSON lines of CMD, or one error line.
  local name="$1" cap="$2"; shift 2
  local left=$(( BUDGET - (SECONDS - START) ))
  if (( left < 30 )); then echo "{\"run\": \"$name\", \"error\": \"skipped: budget spent\"}" >> "$JSONL"; return; fi
  local t=$(( cap < left ? cap : left ))
  echo "=== $name (t+$(( SECONDS - START ))s, timeout ${t}s)" >&2
  local tmp; tmp="$(mktemp)"
  timeout -k 5 "$t" "$@" > "$tmp" 2> "$OUT/$name.log"
  local rc=$?
  grep '^{' "$tmp" >> "$JSONL"
  (( rc == 0 )) || echo "{\"run\": \"$name\", \"error\": \"exit $rc (124: timeout)\"}" >> "$JSONL"
  rm -f "$tmp"
}

gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)"
echo "{\"device\": \"${gpu:-unknown}\", \"date\": \"$(date -u +%F)\"}" >> "$JSONL"
case_flags=(); for c in $CASES; do case_flags+=("--case=$c"); done

run flops 60 env JAX_PLATFORMS=cpu "$PY" -m benchmarks.train_step --flops_only "${case_flags[@]}"
run colorize-float32 150 "$PY" -m benchmarks.train_step "${case_flags[@]}" --steps="$STEPS" --warmup=5 --dtype=float32
run colorize-bfloat16 150 "$PY" -m benchmarks.train_step "${case_flags[@]}" --steps="$STEPS" --warmup=5 --dtype=bfloat16
for rc in $REFERENCE_CASES; do
  run "twin-bf16-$rc" 90 "$PY" "$BENCH/bench_jax.py" --size "${rc%%:*}" --batch "${rc##*:}" --bf16 --warmup 5 --steps 20
done
for rc in $REFERENCE_CASES; do
  run "torch-bf16-cl-$rc" 60 "$PY" "$BENCH/bench_torch.py" --size "${rc%%:*}" --batch "${rc##*:}" --amp --channels-last --warmup 5 --steps 20
  run "torch-fp32-$rc" 60 "$PY" "$BENCH/bench_torch.py" --size "${rc%%:*}" --batch "${rc##*:}" --warmup 5 --steps 20
done
echo "=== done in $(( SECONDS - START ))s: $JSONL" >&2
"$PY" -m benchmarks.summary "$JSONL"
