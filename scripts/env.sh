# Sourced by the other scripts: where builds go and the project's Python environment.
# Safe to source repeatedly; installs only what is missing.

# Compiled output lives outside the clone so that later clones on the same machine (and CI)
# reuse it: polars alone takes many minutes to compile on two cores.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pianoroll/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

PIANOROLL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIANOROLL_VENV="${PIANOROLL_VENV:-$PIANOROLL_ROOT/.venv}"

# Python readers used by the interoperability tests (pyarrow, pandas, polars read the datasets).
ensure_python_readers() {
    local stamp="$PIANOROLL_VENV/.readers-installed"
    if [ ! -f "$stamp" ]; then
        echo "setup: creating $PIANOROLL_VENV with pyarrow, pandas and polars" >&2
        python3 -m venv "$PIANOROLL_VENV"
        "$PIANOROLL_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r "$PIANOROLL_ROOT/scripts/requirements-readers.txt"
        touch "$stamp"
    fi
    export PIANOROLL_PYTHON="$PIANOROLL_VENV/bin/python"
}
