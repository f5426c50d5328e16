#!/usr/bin/env bash
# The benchmark comparison at full size: LSTM and RWKV, presets `fair` and `seed`, trained on the
# Nottingham benchmark grid and compared on the test split (earlier figures:
# docs/experiments/notebook.md).
# Meant for a GPU runner: the four runs take hours on a CPU.
#
#   bash scripts/benchmark-runs.sh                      # --device auto: CUDA when there is a GPU
#   DEVICE=cpu RUNS=out/bench bash scripts/benchmark-runs.sh
#   TRAIN_FLAGS="--epochs 30 --dropout 0.2" bash scripts/benchmark-runs.sh   # extra flags, every run
#
# Each run is resumable: after an interruption, run the script again and finished runs are kept,
# unfinished ones continue from their last checkpoint.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$PIANOROLL_ROOT"

ensure_libtorch
cargo build --release --quiet -p pipeline -p trainer -p serve
PIPELINE="$CARGO_TARGET_DIR/release/pipeline"
TRAINER="$CARGO_TARGET_DIR/release/trainer"
RUNS="${RUNS:-out/benchmark-runs}"
DATA="${DATA:-out/nottingham}"
read -r -a flags <<< "${TRAIN_FLAGS:-}"

[ -f "$DATA/manifest.json" ] || "$PIPELINE" build data/nottingham -o "$DATA"
for preset in fair seed; do
    for model in lstm rwkv; do
        run="$RUNS/$model-$preset"
        if [ -f "$run/results.json" ]; then
            echo "$run: finished earlier, kept"
        elif [ -f "$run/last.json" ]; then
            "$TRAINER" train --resume "$run" --device "${DEVICE:-auto}"
        else
            rm -rf "$run" # started but no epoch finished: nothing to resume
            "$TRAINER" train --model "$model" --preset "$preset" --data "$DATA" --out "$run" \
                --device "${DEVICE:-auto}" "${flags[@]}"
        fi
    done
done
"$TRAINER" compare "$RUNS"/lstm-fair "$RUNS"/rwkv-fair "$RUNS"/lstm-seed "$RUNS"/rwkv-seed \
    -o "$RUNS/compare.png"
echo "runs and their curves: $RUNS/ (compare.png: all four)"
