#!/usr/bin/env bash
# The main job on the bundled data: Nottingham MIDI → piano-roll datasets and their statistics,
# the published benchmark rolls imported as a second test set, one piece rendered back to MIDI,
# PNG and WAV, small LSTM and RWKV models trained on CPU for three epochs, compared, scored on both
# test sets, sampled and exported to ONNX, then the gRPC server started on those and on the
# shipped models (models/: the best LSTM-NADE and RWKV-NADE), a piece generated from each over
# gRPC (MIDI, PNG and WAV), and the server stopped.
# Installs and builds what it needs first, idempotently.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$PIANOROLL_ROOT"

ensure_libtorch
ensure_onnxruntime
ensure_audio
OUT="${OUT_DIR:-out}"
cargo build --release --quiet -p pipeline -p trainer -p serve
PIPELINE="$CARGO_TARGET_DIR/release/pipeline"
TRAINER="$CARGO_TARGET_DIR/release/trainer"
SERVE="$CARGO_TARGET_DIR/release/serve"

"$PIPELINE" build data/nottingham -o "$OUT/nottingham" --force
"$PIPELINE" build data/nottingham -o "$OUT/nottingham-seed" --preset seed --force
"$PIPELINE" stats "$OUT/nottingham"
"$PIPELINE" import-mat data/nottingham-bl2012/Nottingham.mat -o "$OUT/nottingham-published" --force

mkdir -p "$OUT/examples"
"$PIPELINE" render "$OUT/nottingham" --piece test/ashover_simple_chords_11 \
    -o "$OUT/examples/ashover_11.mid" --png "$OUT/examples/ashover_11.png" \
    --wav "$OUT/examples/ashover_11.wav"

# Small models, three epochs each (recipes/demo-*.toml): a demonstration of the flow, not the
# benchmark results (recipes/lstm-best.toml, recipes/rwkv-best.toml; see README).
rm -rf "$OUT/runs"
"$TRAINER" train --recipe recipes/demo-lstm.toml --data "$OUT/nottingham" --out "$OUT/runs/lstm-small"
"$TRAINER" train --recipe recipes/demo-rwkv.toml --data "$OUT/nottingham" --out "$OUT/runs/rwkv-small"
"$TRAINER" compare "$OUT/runs/lstm-small" "$OUT/runs/rwkv-small" -o "$OUT/runs/compare.png"
rm -rf "$OUT/models"
for run in lstm-small rwkv-small; do
    # The same weights on the published rolls (results.json holds the project grid's test).
    "$TRAINER" eval "$OUT/runs/$run" --split test --data "$OUT/nottingham-published"
    "$TRAINER" sample "$OUT/runs/$run" --steps 128 --temperature 1.0 --seed 1 \
        --primer data/nottingham/test/ashover_simple_chords_11.mid \
        -o "$OUT/examples/$run.mid" --png "$OUT/examples/$run.png"
    # The model folders the server runs (ONNX, no libtorch needed to use them).
    "$TRAINER" export "$OUT/runs/$run" -o "$OUT/models/${run%-small}" --force
done

# The shipped models (models/README.md) serve beside the small ones.
cp -r models/lstm-nade models/rwkv-nade "$OUT/models/"

# Serve the models (port 0: any free port; the log says which) and ask for music.
start_server "$OUT/serve.log" --models "$OUT/models"
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
"$SERVE" models --addr "$ADDR"
for model in lstm rwkv lstm-nade rwkv-nade; do
    "$SERVE" generate --addr "$ADDR" --model "$model" --frames 128 --seed 1 \
        --primer data/nottingham/test/ashover_simple_chords_11.mid \
        -o "$OUT/examples/$model-grpc.mid" --png "$OUT/examples/$model-grpc.png" \
        --wav "$OUT/examples/$model-grpc.wav"
done
# The same tune harmonised: its top line kept, the shipped LSTM-NADE writing the chords under it.
"$SERVE" harmonize --addr "$ADDR" --model lstm-nade --seed 1 \
    --melody data/nottingham/test/ashover_simple_chords_11.mid \
    -o "$OUT/examples/lstm-nade-harmonized.mid" --png "$OUT/examples/lstm-nade-harmonized.png"
kill -INT "$SERVER"
wait "$SERVER"
trap - EXIT

echo
echo "datasets: $OUT/nottingham (benchmark grid), $OUT/nottingham-seed (0.3 s frames),"
echo "          $OUT/nottingham-published (the published benchmark rolls)"
echo "runs:     $OUT/runs/ (compare.png: their learning curves)"
echo "models:   $OUT/models/ (model.onnx + model.json per model: lstm and rwkv trained here,"
echo "          lstm-nade and rwkv-nade shipped in models/)"
echo "music:    $OUT/examples/ (a piece rendered back; per model a continuation sampled by the"
echo "          trainer, NAME-small.mid, and one generated over gRPC, NAME-grpc.mid; each with a .png;"
echo "          lstm-nade-grpc.mid and rwkv-nade-grpc.mid come from the shipped models; the"
echo "          pieces over gRPC and the rendered one also as .wav, to listen to;"
echo "          lstm-nade-harmonized.mid: the test tune's melody with the model's chords)"
echo "server:   log in $OUT/serve.log"
