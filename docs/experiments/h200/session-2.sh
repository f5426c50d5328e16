#!/usr/bin/env bash
# Kept as the record of what ran on the H200 on 2026-11-27 (BENCHMARKS.md, README "On a GPU").
# That machine has no Rust toolchain: these scripts expect a folder .gpucheck/ carried beside
# the checkout with the `trainer` binary, the `gpu` test binary (cargo test --no-run), the
# bundled dataset built by `pipeline build` and `src-root` (the build checkout's path), and
# write what they measure to $OUT. On a GPU runner with Rust, scripts/test.sh runs the GPU tests
# and scripts/benchmark-runs.sh the presets instead.
# Second call: larger RWKVs at batch 8 with dropout, concurrently under MPS, until the deadline.
set -u
G=.gpucheck; OUT="${OUT:-/tmp/gpucheck-out}"; DEVICE="${DEVICE:-cuda}"; BUDGET="${BUDGET:-235}"
START=$(date +%s); elapsed() { echo $(( $(date +%s) - START )); }
log() { echo "[$(elapsed)s] $*" | tee -a "$OUT/summary2.log"; }
TORCH_LIB=/opt/torch/.venv/lib/python3.12/site-packages/torch/lib
[ -d "$TORCH_LIB" ] && export LD_LIBRARY_PATH="$TORCH_LIB"
export OMP_NUM_THREADS=1
T="$G/trainer"; DATA="$G/nottingham"; RUNS=/tmp/gpuruns2; L="$RUNS/logs"; rm -rf "$RUNS"; mkdir -p "$L" "$OUT"
if [ "$DEVICE" = cuda ] && command -v nvidia-cuda-mps-control >/dev/null; then
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
    mkdir -p /tmp/mps-pipe /tmp/mps-log; nvidia-cuda-mps-control -d && log "MPS on"
fi
E=(--model rwkv --batch-size 8 --warmup-steps 200 --epochs 14 --weight-decay 0.1)
[ -n "${FAST:-}" ] && E+=(--max-steps 3)
declare -A SWEEP=(
    [rwkv-6x512-b8-d3-wd1-e14]="--embd 512 --dropout 0.3"
    [rwkv-6x512-b8-d5-wd1-e14]="--embd 512 --dropout 0.5"
    [rwkv-6x384-b8-d4-wd1-e14]="--embd 384 --dropout 0.4"
    [rwkv-6x512-b8-d4-in2-wd1-e14]="--embd 512 --dropout 0.4 --dropout-in 0.2"
)
declare -A PIDS=()
for name in "${!SWEEP[@]}"; do
    # shellcheck disable=SC2086
    "$T" train "${E[@]}" ${SWEEP[$name]} --data "$DATA" --out "$RUNS/$name" --device "$DEVICE" > "$L/$name.log" 2>&1 &
    PIDS[$name]=$!
done
log "started ${!SWEEP[*]}"
while [ "$(elapsed)" -lt $(( BUDGET - 35 )) ]; do
    running=0; for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && running=$((running + 1)); done
    [ "$running" -eq 0 ] && break; sleep 3
done
for name in "${!PIDS[@]}"; do kill -TERM "${PIDS[$name]}" 2>/dev/null && log "$name: stopped at the deadline"; done
wait
for name in "${!SWEEP[@]}"; do
    run="$RUNS/$name"
    [ ! -f "$run/results.json" ] && [ -f "$run/best.safetensors" ] && \
        timeout 25 "$T" eval "$run" --split test --device "$DEVICE" --json > "$run/eval-test.json" 2> "$L/eval-$name.log" &
done
wait
for name in "${!SWEEP[@]}"; do
    run="$RUNS/$name"
    log "$name: last $(tail -1 "$run/metrics.csv" 2>/dev/null | cut -d, -f1-4,8); best $(tr -d ' \n' < "$run/best.json" 2>/dev/null); test $(grep -ho '"nll_per_frame": [0-9.]*' "$run/results.json" "$run/eval-test.json" 2>/dev/null | tail -1)"
done
rm -f "$RUNS"/*/*.safetensors; tar czf "$OUT/results2.tgz" -C "$RUNS" .; log done
