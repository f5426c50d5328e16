#!/usr/bin/env bash
# The test suite: every crate's unit and integration tests, on the bundled data.
# Installs what it needs first (libtorch for the trainer, ONNX Runtime for the export parity
# tests, the Python readers for the interop tests, actionlint for the workflow files, a
# SoundFont and sox for the audio tests, Chromium for the web page's test), idempotently.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$PIANOROLL_ROOT"

ensure_python_readers
ensure_actionlint
ensure_audio
ensure_browser
ensure_libtorch
ensure_onnxruntime
export PIANOROLL_REQUIRE_PYTHON=1

# Release mode shares one build of the dependencies with the binaries (polars is slow to
# compile).
cargo test --workspace --release "$@"
