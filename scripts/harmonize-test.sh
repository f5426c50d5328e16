#!/usr/bin/env bash
# How well models harmonise (README, "Harmonise a melody"): the top line of every Nottingham test
# piece (data/nottingham/test, 170 files) harmonised by each model, seed 0, temperature 1, the
# pieces written to $OUT_DIR/harmonized/MODEL/; then `pipeline stats --music` of each model's
# pieces against the test split itself. "melody fit" is the share of frames of 2 or more pitch
# classes whose classes fit one major or minor triad: how often the chord fits the tune's note
# (core/src/music.rs). Prints the table of each model, and one JSON line per model at the end.
# Usage: bash scripts/harmonize-test.sh [MODELS_FOLDER [MODEL...]] (default: models/, all of it)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$PIANOROLL_ROOT"
MODELS="${1:-models}"
shift || true
prepare_model_measurement "$MODELS" "$@"

mkdir -p "$OUT/harmonized"
start_server "$OUT/harmonized/serve.log" --models "$MODELS"
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
summary="$OUT/harmonized/summary.jsonl"
: > "$summary"
for name in "${NAMES[@]}"; do
    [ -f "$MODELS/$name/model.json" ] || continue
    rm -rf "$OUT/harmonized/$name"
    mkdir -p "$OUT/harmonized/$name"
    # Eight requests at a time, so the server batches them.
    ls data/nottingham/test/*.mid | xargs -P 8 -I{} sh -c \
        '"$1" harmonize --addr "$2" --model "$3" --melody "$4" --seed 0 --temperature 1 \
            -o "$5/$(basename "$4")" > /dev/null' \
        _ "$SERVE" "$ADDR" "$name" {} "$OUT/harmonized/$name"
    echo "== $name: $(ls "$OUT/harmonized/$name" | wc -l) test melodies harmonised"
    "$PIPELINE" stats "$OUT/nottingham" --music "$OUT/harmonized/$name"
    music_summary "$name" "$OUT/harmonized/$name" >> "$summary"
done
cat "$summary"
