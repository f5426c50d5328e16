#!/usr/bin/env bash
# A second corpus for `--recipe auto` (issue 26): Bach's four-part chorales from music21's corpus
# (PyPI), written as MIDI (scripts/bach_chorales.py: 365 chorales, a fixed 60/20/20 split by file
# name) and built on a quarter-note grid, transposed to C, into $OUT_DIR/bach-chorales (default
# out/), like the JSB Chorales benchmark (whose own split ships in no package). The MIDI files
# are kept in $OUT_DIR/bach-chorales-midi.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$PIANOROLL_ROOT"
OUT="${OUT_DIR:-out}"
ensure_corpus_tools
cargo build --release --quiet -p pipeline
if [ ! -d "$OUT/bach-chorales-midi" ]; then
    rm -rf "$OUT/bach-chorales-midi.partial"
    "$PIANOROLL_VENV/bin/python" scripts/bach_chorales.py "$OUT/bach-chorales-midi.partial"
    mv "$OUT/bach-chorales-midi.partial" "$OUT/bach-chorales-midi"
fi
"$CARGO_TARGET_DIR/release/pipeline" build "$OUT/bach-chorales-midi" -o "$OUT/bach-chorales" \
    --frames-per-beat 1 --transpose c --force
