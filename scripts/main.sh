#!/usr/bin/env bash
# The main job on the bundled data: Nottingham MIDI → piano-roll dataset, its statistics, and one
# piece rendered back to MIDI and PNG. Builds what it needs first, idempotently.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$PIANOROLL_ROOT"

OUT="${OUT_DIR:-out}"
cargo build --release --quiet -p pipeline
PIPELINE="$CARGO_TARGET_DIR/release/pipeline"

"$PIPELINE" build data/nottingham -o "$OUT/nottingham" --force
"$PIPELINE" build data/nottingham -o "$OUT/nottingham-seed" --preset seed --force
"$PIPELINE" stats "$OUT/nottingham"

mkdir -p "$OUT/examples"
PIECE=test/ashover_simple_chords_11
"$PIPELINE" render "$OUT/nottingham" --piece "$PIECE" \
    -o "$OUT/examples/ashover_11.mid" --png "$OUT/examples/ashover_11.png"

echo
echo "datasets: $OUT/nottingham (benchmark grid), $OUT/nottingham-seed (0.3 s frames)"
echo "example:  $OUT/examples/ashover_11.mid and .png"
