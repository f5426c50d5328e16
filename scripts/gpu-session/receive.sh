#!/usr/bin/env bash
# On the GPU machine, as the command of the call that carries one part of ONNX Runtime's CUDA
# provider (carry [".ortcuda/part-0N"]): copy it to /tmp/parts, which stays while the machine is
# held, because the next transfer replaces the whole .ortcuda/ folder of the working tree.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p /tmp/parts
shopt -s nullglob
parts=(.ortcuda/part-*)
[ ${#parts[@]} -gt 0 ] || { echo "receive.sh: no .ortcuda/part-* in this call's working tree" >&2; exit 1; }
cp "${parts[@]}" /tmp/parts/
ls -l /tmp/parts
