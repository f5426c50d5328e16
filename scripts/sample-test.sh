#!/usr/bin/env bash
# How close what models play alone is to the data (README, "Music statistics"): each model in the
# folder samples COUNT pieces of 256 frames (no primer, temperature 1, seeds 0..COUNT-1, through
# the server, as a user gets them), written to $OUT_DIR/samples/MODEL/; then `pipeline stats
# --music` of them against the Nottingham test split. Prints each model's table, and one JSON line
# per model at the end (the figures the README quotes: triads, distance, ...).
# Usage: bash scripts/sample-test.sh [MODELS_FOLDER [COUNT [MODEL...]]] (default: models/, 12, all)
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$PIANOROLL_ROOT"
MODELS="${1:-models}"
COUNT="${2:-12}"
shift 2 || shift $# || true
prepare_model_measurement "$MODELS" "$@"

mkdir -p "$OUT/samples"
start_server "$OUT/samples/serve.log" --models "$MODELS"
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
summary="$OUT/samples/summary.jsonl"
: > "$summary"
for name in "${NAMES[@]}"; do
    [ -f "$MODELS/$name/model.json" ] || continue
    rm -rf "$OUT/samples/$name"
    "$SERVE" generate --addr "$ADDR" --model "$name" --frames 256 --temperature 1 --seed 0 \
        --count "$COUNT" -o "$OUT/samples/$name" > /dev/null
    echo "== $name: $(ls "$OUT/samples/$name" | wc -l) pieces sampled"
    "$PIPELINE" stats "$OUT/nottingham" --music "$OUT/samples/$name"
    music_summary "$name" "$OUT/samples/$name" >> "$summary"
done
cat "$summary"
