#!/usr/bin/env bash
# The main job on the bundled data: Nottingham MIDI → piano-roll datasets and their statistics,
# one piece rendered back to MIDI and PNG, then small LSTM and RWKV models trained on CPU for three
# epochs, compared, and sampled. Installs and builds what it needs first, idempotently.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$PIANOROLL_ROOT"

ensure_libtorch
OUT="${OUT_DIR:-out}"
cargo build --release --quiet -p pipeline -p trainer
PIPELINE="$CARGO_TARGET_DIR/release/pipeline"
TRAINER="$CARGO_TARGET_DIR/release/trainer"

"$PIPELINE" build data/nottingham -o "$OUT/nottingham" --force
"$PIPELINE" build data/nottingham -o "$OUT/nottingham-seed" --preset seed --force
"$PIPELINE" stats "$OUT/nottingham"

mkdir -p "$OUT/examples"
"$PIPELINE" render "$OUT/nottingham" --piece test/ashover_simple_chords_11 \
    -o "$OUT/examples/ashover_11.mid" --png "$OUT/examples/ashover_11.png"

# Small models, three epochs each: a demonstration of the flow, not the benchmark results (those
# need the full presets on a GPU; see README).
rm -rf "$OUT/runs"
"$TRAINER" train --model lstm --data "$OUT/nottingham" --out "$OUT/runs/lstm-small" \
    --hidden 64 --layers 1 --epochs 3 --lr 3e-3 --warmup-steps 10
"$TRAINER" train --model rwkv --data "$OUT/nottingham" --out "$OUT/runs/rwkv-small" \
    --embd 32 --layers 2 --epochs 3 --lr 3e-3 --warmup-steps 10
"$TRAINER" compare "$OUT/runs/lstm-small" "$OUT/runs/rwkv-small" -o "$OUT/runs/compare.png"
for run in lstm-small rwkv-small; do
    "$TRAINER" sample "$OUT/runs/$run" --steps 128 --temperature 1.0 --seed 1 \
        --primer data/nottingham/test/ashover_simple_chords_11.mid \
        -o "$OUT/examples/$run.mid" --png "$OUT/examples/$run.png"
    # The model folders the server runs (ONNX, no libtorch needed to use them).
    "$TRAINER" export "$OUT/runs/$run" -o "$OUT/models/${run%-small}" --force
done

echo
echo "datasets: $OUT/nottingham (benchmark grid), $OUT/nottingham-seed (0.3 s frames)"
echo "runs:     $OUT/runs/ (compare.png: their learning curves)"
echo "models:   $OUT/models/ (model.onnx + model.json per model)"
echo "music:    $OUT/examples/ (a piece rendered back, and one continuation per model, .mid + .png)"
