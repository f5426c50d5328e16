#!/usr/bin/env bash
# What the GPU runner does after setting up (.github/workflows/gpu.yml): train the committed
# recipes, export them, serve the exported models on the chosen device and generate a piece
# from each over gRPC, then fail if a recipe's test NLL is worse than its record's (the run
# docs/experiments/recipes/current.txt names) by more than TOLERANCE nats per frame.
#
#   bash scripts/gpu-ci.sh                                   # the best recipes, on CUDA
#   DEVICE=cpu RECIPES="demo-lstm" OUT=out/gpu-ci-dry bash scripts/gpu-ci.sh   # the CPU dry run
#
# Runs are resumable: run the script again after an interruption and finished runs are kept.
# Everything it writes is under OUT (default out/gpu-ci): runs/, models/, compare.png,
# examples/, serve.log.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$PIANOROLL_ROOT"

DEVICE="${DEVICE:-cuda}"
RECIPES="${RECIPES:-lstm-nade-aug rwkv-nade-aug lstm-nade-batch16 lstm-nade-high rwkv-nade-high lstm-nade rwkv-nade lstm-best rwkv-best}"
# GPU kernels sum in other orders than the CPU the figures were recorded on, and a few
# hundredths of a nat per frame is what two seeds of one recipe differ by (README, results).
TOLERANCE="${TOLERANCE:-0.05}"
OUT="${OUT:-out/gpu-ci}"

# Each recipe's record, all found before anything is built or trained.
records=()
for recipe in $RECIPES; do
    record="$(awk -v recipe="$recipe" '$1 == recipe { print $2 }' docs/experiments/recipes/current.txt)"
    [ -n "$record" ] && [ -f "docs/experiments/recipes/$record/results.json" ] || {
        echo "recipe $recipe has no record (docs/experiments/recipes/current.txt names none, or its folder has no results.json)" >&2
        exit 2
    }
    records+=("docs/experiments/recipes/$record")
done

ensure_libtorch
ensure_onnxruntime
cargo build --release --quiet -p pipeline -p trainer -p serve
PIPELINE="$CARGO_TARGET_DIR/release/pipeline"
TRAINER="$CARGO_TARGET_DIR/release/trainer"
SERVE="$CARGO_TARGET_DIR/release/serve"

DATA="$OUT/nottingham"
[ -f "$DATA/manifest.json" ] || "$PIPELINE" build data/nottingham -o "$DATA"
mkdir -p "$OUT/runs" "$OUT/models" "$OUT/examples"
runs=()
for recipe in $RECIPES; do
    run="$OUT/runs/$recipe"
    runs+=("$run")
    if [ -f "$run/results.json" ]; then
        echo "$run: finished earlier, kept"
    elif [ -f "$run/last.json" ]; then
        "$TRAINER" train --resume "$run" --device "$DEVICE"
    else
        rm -rf "$run" # started, but no epoch finished: nothing to resume
        "$TRAINER" train --recipe "recipes/$recipe.toml" --data "$DATA" --out "$run" --device "$DEVICE"
    fi
    "$TRAINER" export "$run" -o "$OUT/models/$recipe" --force
done
"$TRAINER" compare "${runs[@]}" -o "$OUT/compare.png"

# Serve the exported models on the device (port 0: any free port; the log says which).
start_server "$OUT/serve.log" --models "$OUT/models" --device "$DEVICE"
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
"$SERVE" models --addr "$ADDR"
for recipe in $RECIPES; do
    "$SERVE" generate --addr "$ADDR" --model "$recipe" --frames 256 --seed 1 \
        --primer data/nottingham/test/ashover_simple_chords_11.mid \
        -o "$OUT/examples/$recipe.mid" --png "$OUT/examples/$recipe.png"
done
kill -INT "$SERVER"
wait "$SERVER"
trap - EXIT

# Each run's test NLL against its record's.
python3 - "$TOLERANCE" "${runs[@]}" "${records[@]}" <<'PY'
import json, sys
tolerance, folders = float(sys.argv[1]), sys.argv[2:]
runs, records = folders[: len(folders) // 2], folders[len(folders) // 2 :]
worse = []
for run, record in zip(runs, records):
    got = json.load(open(f"{run}/results.json"))["test"]["nll_per_frame"]
    want = json.load(open(f"{record}/results.json"))["test"]["nll_per_frame"]
    verdict = "ok" if got <= want + tolerance else "WORSE"
    print(f"{run}: test NLL {got:.4f}, recorded {want:.4f} ({record}), tolerance {tolerance}: {verdict}")
    if verdict != "ok":
        worse.append(run)
if worse:
    sys.exit(f"worse than recorded: {', '.join(worse)}")
PY
