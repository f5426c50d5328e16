#!/usr/bin/env bash
# Everything a GPU session needs, prepared here (the GPU machine has no Rust toolchain and no
# network): the release binaries (serve, trainer, the serving benchmark, the GPU tests), the
# benchmark dataset, and ONNX Runtime's CUDA provider in parts small enough to carry.
#
#   bash scripts/gpu-session/prepare.sh
#
# Then, with the device tool, back to back (the machine goes back after about 30 s idle, and
# with it /tmp): one call per part, carry [".ortcuda/part-0N"], command
# `bash scripts/gpu-session/receive.sh` (it copies the part to /tmp/parts: a transfer replaces
# the whole .ortcuda/ folder there, so the parts sent before would be gone); then the measuring
# calls, carry [".gpu"] each, split so each fits a call's limit (each benchmark part has 200 s;
# far less is used on a GPU): `PARTS="tests serve" bash scripts/gpu-session/measure.sh`
# (timeout 540 s), then `PARTS="serve-direct serve-fixed" ...` (timeout 420 s), then
# serve-nographs, train-batched and train-speed if time is left. Both folders are git-ignored. A call carries 64 MiB with the working tree (about 15 MiB), hence
# parts of 40 MiB. The GPU machine has xz but no zstd: the parts are xz.
set -euo pipefail
source "$(dirname "$0")/../env.sh"
cd "$PIANOROLL_ROOT"

ensure_libtorch
ensure_onnxruntime
cargo build --release --quiet -p pipeline -p trainer -p serve
# The test and bench executables: cargo prints where it built them.
executable() {
    cargo "$@" --no-run --message-format=json 2>/dev/null |
        python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])' | tail -1
}
gpu_tests="$(executable test --release -p trainer --test gpu)"
serve_step_tests="$(executable test --release -p serve --test step)"
batching="$(executable bench -p serve --bench batching)"

rm -rf .gpu && mkdir -p .gpu
for binary in "$CARGO_TARGET_DIR/release/serve" "$CARGO_TARGET_DIR/release/trainer"; do
    cp "$binary" .gpu/
done
cp "$gpu_tests" .gpu/gpu-tests
cp "$serve_step_tests" .gpu/serve-step-tests
cp "$batching" .gpu/batching
strip .gpu/*
"$CARGO_TARGET_DIR/release/pipeline" build data/nottingham -o .gpu/nottingham --force
PART_MB=40 bash "$PIANOROLL_ROOT/../shared/tools/ort-cuda-parts.sh" .ortcuda
# measure.sh checks the parts it finds in /tmp/parts against these sums.
cp .ortcuda/SHA256SUMS .gpu/ortcuda-SHA256SUMS
du -sh .gpu .ortcuda
echo "device calls: $(cd .ortcuda && ls part-* | wc -l) with carry [.ortcuda/part-0N] and" \
    "'bash scripts/gpu-session/receive.sh', then carry [.gpu] and the measure.sh calls in this file's header"
size=$(du -sm .gpu | cut -f1)
[ "$size" -le 48 ] || echo "warning: .gpu is ${size} MiB; with the working tree a call carries 64 MiB" >&2
