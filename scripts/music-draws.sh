#!/usr/bin/env bash
# How far 12 real pieces land from the test split in the music statistics (README, "Music
# statistics"): the 173 valid pieces of data/nottingham in path order, draw i taking files
# i, i+14, i+28, ... and keeping the first 12, for i = 0..13 (14 disjoint draws of 12; the last
# 5 files are in no draw). Prints one JSON line a draw (`pipeline stats --music --json`), then
# the lowest and highest of each figure.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$PIANOROLL_ROOT"
cargo build --release --quiet -p pipeline
PIPELINE="$CARGO_TARGET_DIR/release/pipeline"
[ -d out/nottingham ] || "$PIPELINE" build data/nottingham -o out/nottingham >/dev/null
mapfile -t files < <(ls data/nottingham/valid/*.mid | sort)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
for i in $(seq 0 13); do
    mkdir "$work/$i"
    for j in $(seq 0 11); do cp "${files[$((i + 14 * j))]}" "$work/$i/"; done
    "$PIPELINE" stats out/nottingham --music "$work/$i" --json | python3 -c \
        'import json,sys; d=json.load(sys.stdin); s=d["samples"]; s["distance"]=d["pitch_class_set_distance"]; print(json.dumps(s))'
done | tee "$work/draws.jsonl"
python3 - "$work/draws.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
for key in rows[0]:
    values = [r[key] for r in rows if r[key] is not None]
    print(f"{key}: {min(values):.4g}–{max(values):.4g}" + (f" (median {statistics.median(values):.3f})" if key == "distance" else ""))
PY
