#!/usr/bin/env bash
# A small corpus for developing recipes (issue 26): a third of Nottingham's training pieces
# (every third file of data/nottingham/train in path order, starting with the first: 232 of 694)
# with the whole valid and test splits, built on the benchmark grid into $OUT_DIR/nottingham-third
# (default out/). Scores on its test split compare directly with models trained on all of
# Nottingham: only the training data differs.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$PIANOROLL_ROOT"
OUT="${OUT_DIR:-out}"
cargo build --release --quiet -p pipeline
source_folder=$(mktemp -d)
trap 'rm -rf "$source_folder"' EXIT
mkdir -p "$source_folder/train"
ln -s "$PIANOROLL_ROOT/data/nottingham/valid" "$source_folder/valid"
ln -s "$PIANOROLL_ROOT/data/nottingham/test" "$source_folder/test"
ls data/nottingham/train/*.mid | sort | awk 'NR % 3 == 1' | while read -r file; do
    ln -s "$PIANOROLL_ROOT/$file" "$source_folder/train/"
done
"$CARGO_TARGET_DIR/release/pipeline" build "$source_folder" -o "$OUT/nottingham-third" --force
