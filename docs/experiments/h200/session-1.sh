#!/usr/bin/env bash
# Kept as the record of what ran on the H200 on 2026-11-27 (BENCHMARKS.md, README "On a GPU").
# That machine has no Rust toolchain: these scripts expect a folder .gpucheck/ carried beside
# the checkout with the `trainer` binary, the `gpu` test binary (cargo test --no-run), the
# bundled dataset built by `pipeline build` and `src-root` (the build checkout's path), and
# write what they measure to $OUT. On a GPU runner with Rust, scripts/test.sh runs the GPU tests
# and scripts/benchmark-runs.sh the presets instead.
# One device call: CUDA checks, the two seed presets timed alone, then an RWKV batch-1 sweep
# until the deadline. Everything it measures lands in $OUT.
# Run from the repository root:  bash .gpucheck/run.sh   (DEVICE=cpu FAST=1 for a local dry run)
set -u
G=.gpucheck
OUT="${OUT:-/tmp/gpucheck-out}"
L=/tmp/gpulogs # every log, packed into $OUT/results.tgz at the end (few files come back)
rm -rf "$L"; mkdir -p "$OUT" "$L"
DEVICE="${DEVICE:-cuda}"
BUDGET="${BUDGET:-530}"         # seconds from start until everything must be wrapped up
START=$(date +%s)
elapsed() { echo $(( $(date +%s) - START )); }
log() { echo "[$(elapsed)s] $*" | tee -a "$OUT/summary.log"; }

TORCH_LIB="${TORCH_LIB:-/opt/torch/.venv/lib/python3.12/site-packages/torch/lib}"
[ -d "$TORCH_LIB" ] && export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export OMP_NUM_THREADS=1
T="$G/trainer"
DATA="$G/nottingham"
RUNS=/tmp/gpuruns
rm -rf "$RUNS"; mkdir -p "$RUNS"

# The test binary was compiled with this checkout's absolute path (CARGO_MANIFEST_DIR).
SRC_ROOT="$(cat $G/src-root)"
if [ "$(pwd)" != "$SRC_ROOT" ] && [ ! -e "$SRC_ROOT" ]; then
    mkdir -p "$(dirname "$SRC_ROOT")" && ln -s "$(pwd)" "$SRC_ROOT"
fi

log "start on $(hostname); device $DEVICE"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$OUT/summary.log"

# 1. Does the trainer see the GPU? If not, try preloading the CUDA library before giving up.
probe() {
    rm -rf "$RUNS/probe"
    timeout "${1:-120}" "$T" train --model lstm --data "$DATA" --out "$RUNS/probe" --device "$DEVICE" \
        --hidden 8 --layers 1 --max-steps 2 >> "$L/probe.log" 2>&1
}
if ! probe; then
    log "probe failed; retrying with LD_PRELOAD of libtorch_cuda.so"
    export LD_PRELOAD="$TORCH_LIB/libc10_cuda.so:$TORCH_LIB/libtorch_cuda.so"
    if ! probe; then
        log "probe failed again; diagnostics in probe.log"
        { ldd "$T"; ls "$TORCH_LIB"; } >> "$L/probe.log" 2>&1
        tail -c 8000 "$L/probe.log"
        exit 1
    fi
fi
log "probe ok: $(grep -o 'parameters, on [^;]*' "$L/probe.log" | tail -1)"

# 2. The GPU tests (skip themselves without CUDA).
timeout 240 "$G/gpu-tests" --test-threads 1 --nocapture > "$L/gpu-tests.log" 2>&1
log "gpu tests exit $?: $(grep -E '^test result' "$L/gpu-tests.log")"

# 3. The seed presets, one at a time, nothing else on the GPU.
PRESET_FLAGS=()
[ -n "${FAST:-}" ] && PRESET_FLAGS=(--max-steps 3 --embd 16 --hidden 16 --layers 1)
for model in lstm rwkv; do
    [ "$model" = lstm ] && cap=150 || cap=180
    timeout "$cap" "$T" train --model "$model" --preset seed --data "$DATA" \
        --out "$RUNS/$model-seed" --device "$DEVICE" "${PRESET_FLAGS[@]}" \
        > "$L/$model-seed.log" 2>&1
    log "$model seed exit $?: $(tail -1 "$L/$model-seed.log")"
done

# 4. RWKV at batch 1 (and one LSTM control), concurrently, until the deadline. Under CUDA's
#    MPS, if it starts, the small kernels of several processes can share the GPU's SMs.
if [ "$DEVICE" = cuda ] && command -v nvidia-cuda-mps-control >/dev/null; then
    export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
    mkdir -p /tmp/mps-pipe /tmp/mps-log
    if nvidia-cuda-mps-control -d 2>>"$OUT/summary.log"; then
        if probe 40; then
            log "MPS on"
        else
            log "MPS probe failed; MPS off"
            echo quit | nvidia-cuda-mps-control
            unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
        fi
    else
        unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
        log "MPS did not start"
    fi
fi
B1=(--batch-size 1 --warmup-steps 1000 --epochs 12)
[ -n "${FAST:-}" ] && B1=(--batch-size 1 --warmup-steps 10 --epochs 2 --max-steps 20)
RW="--model rwkv ${B1[*]}"
declare -A SWEEP=(
    [rwkv-6x128-d4-wd1-e12]="$RW --embd 128 --dropout 0.4 --weight-decay 0.1"
    [rwkv-6x128-d4-wd1-e12-s1]="$RW --embd 128 --dropout 0.4 --weight-decay 0.1 --seed 1"
    [rwkv-6x128-d4-wd1-e12-ema]="$RW --embd 128 --dropout 0.4 --weight-decay 0.1 --ema-decay 0.999"
    [rwkv-6x128-d4-wd3-e12]="$RW --embd 128 --dropout 0.4 --weight-decay 0.3"
    [rwkv-6x128-d4-wd1-e12-lr5e4]="$RW --embd 128 --dropout 0.4 --weight-decay 0.1 --lr 5e-4"
    [rwkv-8x128-ffn2-d4-wd1-e12]="$RW --embd 128 --layers 8 --ffn-mult 2 --dropout 0.4 --weight-decay 0.1"
    [rwkv-3x192-ffn2-d5-wd1-e12]="$RW --embd 192 --layers 3 --ffn-mult 2 --dropout 0.5 --weight-decay 0.1"
    [lstm-256x2-nobn-e12]="--model lstm --no-batch-norm --hidden 256 --dropout-in 0.3 --dropout-out 0.3 --dropout-between 0.2 --weight-decay 0.01 ${B1[*]}"
)
declare -A PIDS=()
for name in "${!SWEEP[@]}"; do
    # shellcheck disable=SC2086
    "$T" train ${SWEEP[$name]} --data "$DATA" --out "$RUNS/$name" --device "$DEVICE" \
        > "$L/sweep-$name.log" 2>&1 &
    PIDS[$name]=$!
done
log "sweep started: ${!SWEEP[*]}"
while [ "$(elapsed)" -lt $(( BUDGET - 50 )) ]; do
    running=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && running=$((running + 1)); done
    [ "$running" -eq 0 ] && break
    sleep 5
done
for name in "${!PIDS[@]}"; do
    kill -TERM "${PIDS[$name]}" 2>/dev/null && log "$name: stopped at the deadline"
done
wait
[ -n "${CUDA_MPS_PIPE_DIRECTORY:-}" ] && echo quit | nvidia-cuda-mps-control

# 5. Runs stopped at the deadline: score their best checkpoint on test (all at once).
for name in "${!SWEEP[@]}"; do
    run="$RUNS/$name"
    if [ ! -f "$run/results.json" ] && [ -f "$run/best.safetensors" ]; then
        timeout 40 "$T" eval "$run" --split test --device "$DEVICE" --json \
            > "$run/eval-test.json" 2> "$L/eval-$name.log" &
    fi
done
wait
for name in "${!SWEEP[@]}"; do
    run="$RUNS/$name"
    log "$name: last epoch $(tail -1 "$run/metrics.csv" 2>/dev/null | cut -d, -f1-4); best $(cat "$run/best.json" 2>/dev/null | tr -d ' \n'); test $(grep -o '"nll_per_frame": [0-9.]*' "$run/results.json" "$run/eval-test.json" 2>/dev/null | tail -1)"
done

cp "$L/gpu-tests.log" "$OUT/" 2>/dev/null
rm -f "$RUNS"/*/*.safetensors
mv "$L" "$RUNS/logs"
tar czf "$OUT/results.tgz" -C "$RUNS" . 2>> "$OUT/summary.log"
log "done"
