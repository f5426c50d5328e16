#!/usr/bin/env bash
# Benchmarks. Speed of `pipeline build`: in-process throughput (files/s, MB/s) on the bundled set and on a
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

# Serving: continuous batching against a naive one-call-per-request loop (serve/benches/batching.rs),
# on the main job's small models and on full-size (preset fair, about 4.3 M parameters) models
# with one optimiser step of training: speed does not depend on how well a model is trained.
ensure_libtorch
ensure_onnxruntime
[ -d out/models ] || bash scripts/main.sh
cargo build --release --quiet -p trainer
TRAINER="$CARGO_TARGET_DIR/release/trainer"
rm -rf out/bench-runs out/bench-models
for model in lstm rwkv; do
    "$TRAINER" train --model "$model" --preset fair --data out/nottingham \
        --out "out/bench-runs/$model-fair" --max-steps 1
    "$TRAINER" export "out/bench-runs/$model-fair" -o "out/bench-models/$model-fair"
done
cargo bench -p serve --bench batching -- out/models
cargo bench -p serve --bench batching -- out/bench-models
