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
ensure_onnxruntime
MODELS="${1:-models}"
COUNT="${2:-12}"
shift 2 || shift $# || true
OUT="${OUT_DIR:-out}"
cargo build --release --quiet -p pipeline -p serve
PIPELINE="$CARGO_TARGET_DIR/release/pipeline"
SERVE="$CARGO_TARGET_DIR/release/serve"
[ -d "$OUT/nottingham" ] || "$PIPELINE" build data/nottingham -o "$OUT/nottingham" >/dev/null
if [ $# -gt 0 ]; then names=("$@"); else mapfile -t names < <(ls "$MODELS"); fi

mkdir -p "$OUT/samples"
start_server "$OUT/samples/serve.log" --models "$MODELS"
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
summary="$OUT/samples/summary.jsonl"
: > "$summary"
for name in "${names[@]}"; do
    [ -f "$MODELS/$name/model.json" ] || continue
    rm -rf "$OUT/samples/$name"
    "$SERVE" generate --addr "$ADDR" --model "$name" --frames 256 --temperature 1 --seed 0 \
        --count "$COUNT" -o "$OUT/samples/$name" > /dev/null
    echo "== $name: $(ls "$OUT/samples/$name" | wc -l) pieces sampled"
    "$PIPELINE" stats "$OUT/nottingham" --music "$OUT/samples/$name"
    "$PIPELINE" stats "$OUT/nottingham" --music "$OUT/samples/$name" --json | python3 -c \
        'import json,sys; d=json.load(sys.stdin); s=d["samples"]; s["model"]=sys.argv[1]; s["distance"]=d["pitch_class_set_distance"]; print(json.dumps(s))' \
        "$name" >> "$summary"
done
cat "$summary"
