#!/usr/bin/env bash
# The one measuring call on a lent GPU machine (prepared by scripts/gpu-session/prepare.sh;
# issue: the GPU path). Writes its figures under $OUT (default out/gpu-session):
#   gpu.txt          the GPU and driver
#   gpu-tests.txt    trainer/tests/gpu.rs on the GPU (CUDA parity, training, sampling)
#   serve-cuda.txt   the serving benchmark on ONNX Runtime's CUDA provider: 1, 8, 64, 256 streams
#   serve-cpu.txt    the same models on the CPU provider of the same machine
#   train-speed.txt  first-epoch training frames/s of the NADE recipes at batch 1, 8, 32, 128
# `DEVICE=cpu BATCHES=8 bash scripts/gpu-session/measure.sh` is the dry run on this machine.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-out/gpu-session}"
mkdir -p "$OUT"
BIN=.gpu
DEVICE="${DEVICE:-cuda}"
BATCHES="${BATCHES:-1 8 32 128}" # the training-speed sweep's batch sizes

TORCH=/opt/torch/.venv/lib/python3.12/site-packages
if [ "$DEVICE" = cuda ]; then
    mkdir -p /tmp/ortcuda
    cat .ortcuda/part-* | zstd -dc | tar x -C /tmp/ortcuda
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
timeout 120 "$BIN/gpu-tests" --test-threads 1 > "$OUT/gpu-tests.txt" 2>&1

# 2. Models to serve: the shipped NADE models, and Bernoulli twins of the same sizes (one
#    optimiser step of the best recipes: speed does not depend on training).
models=/tmp/gpu-session-models
rm -rf "$models" && mkdir -p "$models"
cp -r models/lstm-nade models/rwkv-nade "$models/"
for recipe in lstm-best rwkv-best; do
    "$BIN/trainer" train --recipe "recipes/$recipe.toml" --data "$BIN/nottingham" \
        --out "/tmp/gpu-session-runs/$recipe" --max-steps 1 --device "$DEVICE" > /dev/null 2>&1
    "$BIN/trainer" export "/tmp/gpu-session-runs/$recipe" -o "$models/$recipe" --force
done

# 3. Serving, CUDA provider and CPU provider.
for provider in "$DEVICE" cpu; do
    BENCH_DEVICE="$provider" BENCH_STREAMS=1,8,64,256 BENCH_NAIVE_UP_TO=8 \
        timeout 200 "$BIN/batching" "$models" > "$OUT/serve-$provider.txt" 2>&1
    [ "$DEVICE" = cpu ] && break
done

# 4. Training speed against batch size (first epoch of the NADE recipes).
for recipe in lstm-nade rwkv-nade; do
    for batch in $BATCHES; do
        run="/tmp/gpu-session-runs/$recipe-b$batch"
        timeout 120 "$BIN/trainer" train --recipe "recipes/$recipe.toml" --data "$BIN/nottingham" \
            --out "$run" --batch-size "$batch" --stop-after-epoch 1 --device "$DEVICE" > /dev/null 2>&1
        echo "$recipe batch $batch: $(tail -1 "$run/metrics.csv" 2>/dev/null)" >> "$OUT/train-speed.txt"
    done
done
ls -l "$OUT"
