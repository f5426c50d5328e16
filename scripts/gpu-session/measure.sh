#!/usr/bin/env bash
# The one measuring call on a lent GPU machine (prepared by scripts/gpu-session/prepare.sh;
# issue: the GPU path). Writes its figures under $OUT (default out/gpu-session):
#   gpu.txt          the GPU and driver
#   gpu-tests.txt    trainer/tests/gpu.rs on the GPU (CUDA parity, training, sampling)
#   serve-step-tests.txt  serve/tests/step.rs there: the bucketed step on CUDA (graphs replay
#                    the step; one shape makes rows independent bit for bit)
#   serve-cuda.txt   the serving benchmark on ONNX Runtime's CUDA provider: 1, 8, 64, 256
#                    streams, stepping as the server does by default there (bucketed, CUDA graphs)
#   serve-cpu.txt    the same models on the CPU provider of the same machine (all its cores)
#   serve-cuda-direct.txt   part serve-direct: CUDA stepping directly (the way before issue 23)
#   serve-cuda-nographs.txt part serve-nographs: CUDA bucketed without CUDA graphs
#   serve-cuda-fixed.txt    part serve-fixed: CUDA bucketed with one shape of 256 rows
#                    (--batch-rows 256: rows independent of the batch, at the padding's cost)
#   train-speed.txt  first-epoch training frames/s of the NADE recipes at batch 1, 8, 32, 128
#   train-batched/   recipes/lstm-nade-batch16.toml trained whole: metrics.csv (frames/s of
#                    whole epochs), results.json (test NLL), the log
# PARTS chooses what runs (default: "tests serve serve-direct serve-fixed"; the others are
# serve-nographs, train-speed and train-batched), so the parts can be split over calls when one
# would run past the call's time limit.
# `DEVICE=cpu BATCHES=8 MAX_STEPS=5 bash scripts/gpu-session/measure.sh` is the dry run on this
# machine (MAX_STEPS cuts the whole-recipe training short).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-out/gpu-session}"
mkdir -p "$OUT"
BIN=.gpu
DEVICE="${DEVICE:-cuda}"
BATCHES="${BATCHES:-1 8 32 128}" # the training-speed sweep's batch sizes
PARTS=" ${PARTS:-tests serve serve-direct serve-fixed} "
part() { [[ "$PARTS" == *" $1 "* ]]; }

TORCH=/opt/torch/.venv/lib/python3.12/site-packages
if [ "$DEVICE" = cuda ]; then
    # The parts arrived one call each (receive.sh kept them in /tmp/parts); xz, since the
    # machine has no zstd. Unpacked once per machine, into a staging folder renamed when
    # whole, so a call cut short mid-unpack leaves nothing that looks finished.
    if [ ! -d /tmp/ortcuda ]; then
        sums="$PWD/$BIN/ortcuda-SHA256SUMS"
        (cd /tmp/parts && sha256sum -c "$sums") || {
            echo "measure.sh: the parts in /tmp/parts are missing or damaged; send them again" >&2
            exit 1
        }
        rm -rf /tmp/ortcuda.partial && mkdir -p /tmp/ortcuda.partial
        # Only the parts the sums name, in their order.
        (cd /tmp/parts && cat $(cut -d' ' -f3 "$sums")) | xz -dc | tar x -C /tmp/ortcuda.partial || {
            echo "measure.sh: unpacking ONNX Runtime's CUDA provider failed" >&2
            exit 1
        }
        mv /tmp/ortcuda.partial /tmp/ortcuda
    fi
    export ORT_DYLIB_PATH=/tmp/ortcuda/libonnxruntime.so.1.31.1
    LD_LIBRARY_PATH="/tmp/ortcuda:$TORCH/torch/lib:$(ls -d "$TORCH"/nvidia/*/lib | paste -sd:)"
    export LD_LIBRARY_PATH
    nvidia-smi > "$OUT/gpu.txt" 2>&1
else
    # The dry run here: the project's own libraries.
    export ORT_DYLIB_PATH="$PWD/.onnxruntime/onnxruntime/capi/libonnxruntime.so.1.31.1"
    export LD_LIBRARY_PATH="$PWD/.libtorch/torch/lib"
    echo "dry run on the CPU" > "$OUT/gpu.txt"
fi
export OMP_NUM_THREADS=1

# 1. The GPU tests (skipped with a message where there is no GPU).
if part tests; then
    timeout 120 "$BIN/gpu-tests" --test-threads 1 > "$OUT/gpu-tests.txt" 2>&1
    # The serving tests find the shipped models in this working tree.
    PIANOROLL_TEST_ROOT="$PWD" timeout 120 "$BIN/serve-step-tests" --test-threads 1 --nocapture \
        > "$OUT/serve-step-tests.txt" 2>&1
fi

# 2. Models to serve: the shipped NADE models, and Bernoulli twins of the same sizes (one
#    optimiser step of the best recipes: speed does not depend on training). Made once.
models=/tmp/gpu-session-models
if [[ "$PARTS" == *" serve"* ]] && [ ! -f "$models/.done" ]; then
    rm -rf "$models" && mkdir -p "$models"
    cp -r models/lstm-nade models/rwkv-nade "$models/"
    for recipe in lstm-best rwkv-best; do
        "$BIN/trainer" train --recipe "recipes/$recipe.toml" --data "$BIN/nottingham" \
            --out "/tmp/gpu-session-runs/$recipe" --max-steps 1 --device "$DEVICE" > /dev/null 2>&1
        "$BIN/trainer" export "/tmp/gpu-session-runs/$recipe" -o "$models/$recipe" --force
    done
    touch "$models/.done"
fi
# 3. Serving. bench NAME [VAR=VALUE...]: the serving benchmark on $DEVICE with the settings
#    given, into serve-NAME.txt (the naive loop only where BENCH_NAIVE_UP_TO says).
bench() {
    local name="$1"
    shift
    env BENCH_DEVICE="$DEVICE" BENCH_STREAMS=1,8,64,256 BENCH_NAIVE_UP_TO=0 "$@" \
        timeout 200 "$BIN/batching" "$models" > "$OUT/serve-$name.txt" 2>&1
}
if part serve; then
    # As the server runs by default: on CUDA bucketed with CUDA graphs; then the CPU provider
    # with the server's default threads (the cores but one, shared between the models).
    bench "$DEVICE" BENCH_NAIVE_UP_TO=8
    [ "$DEVICE" = cpu ] || bench cpu BENCH_DEVICE=cpu
fi
part serve-direct && bench "$DEVICE-direct" BENCH_STEP=direct
part serve-nographs && bench "$DEVICE-nographs" BENCH_STEP=bucketed BENCH_CUDA_GRAPHS=0
part serve-fixed && bench "$DEVICE-fixed" BENCH_STEP=bucketed BENCH_BATCH_ROWS=256

# 4. Training speed against batch size (first epoch of the NADE recipes).
if part train-speed; then
    for recipe in lstm-nade rwkv-nade; do
        for batch in $BATCHES; do
            run="/tmp/gpu-session-runs/$recipe-b$batch"
            timeout 120 "$BIN/trainer" train --recipe "recipes/$recipe.toml" --data "$BIN/nottingham" \
                --out "$run" --batch-size "$batch" --stop-after-epoch 1 --device "$DEVICE" > /dev/null 2>&1
            echo "$recipe batch $batch: $(tail -1 "$run/metrics.csv" 2>/dev/null)" >> "$OUT/train-speed.txt"
        done
    done
fi

# 5. The batched recipe trained whole: whole-epoch frames/s and test NLL (the GPU issue's
#    target: 50,000 frames/s, test NLL within 0.03 of lstm-nade's).
if part train-batched; then
    run=/tmp/gpu-session-runs/lstm-nade-batch16
    rm -rf "$run" && mkdir -p "$OUT/train-batched"
    timeout 400 "$BIN/trainer" train --recipe recipes/lstm-nade-batch16.toml \
        --data "$BIN/nottingham" --out "$run" --device "$DEVICE" \
        ${MAX_STEPS:+--max-steps "$MAX_STEPS"} > "$OUT/train-batched/train.log" 2>&1
    cp "$run/metrics.csv" "$run/results.json" "$run/config.json" "$OUT/train-batched/" 2>/dev/null
fi
ls -l "$OUT"
