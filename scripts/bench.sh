#!/usr/bin/env bash
# Speed of `pipeline build`: in-process throughput (files/s, MB/s) on the bundled set and on a
# generated 10,370-file corpus, then whole-process wall time with hyperfine when it is installed.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$PIANOROLL_ROOT"

cargo bench -p pipeline --bench build
cargo build --release --quiet -p pipeline
if command -v hyperfine >/dev/null; then
    out="$(mktemp -d)"
    hyperfine --warmup 3 --runs 30 \
        "$CARGO_TARGET_DIR/release/pipeline build data/nottingham -o $out/ds --force"
    rm -rf "$out"
else
    echo "hyperfine not installed (apt-get install hyperfine): skipping the whole-process timing"
fi
