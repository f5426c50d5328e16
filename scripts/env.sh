# Sourced by the other scripts: where builds go and the project's Python environment.
# Safe to source repeatedly; installs only what is missing.

# Compiled output lives outside the clone so that later clones on the same machine (and CI)
# reuse it: polars alone takes many minutes to compile on two cores.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pianoroll/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

PIANOROLL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PIANOROLL_VENV="${PIANOROLL_VENV:-$PIANOROLL_ROOT/.venv}"

# Python readers used by the interoperability tests (pyarrow, pandas and polars read the
# datasets, mido the MIDI files we write). Reinstalled only when the requirements change.
ensure_python_readers() {
    local requirements="$PIANOROLL_ROOT/scripts/requirements-readers.txt"
    local stamp="$PIANOROLL_VENV/.readers-installed"
    local want
    want="$(sha256sum "$requirements" | cut -d' ' -f1)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        echo "setup: installing the Python readers into $PIANOROLL_VENV" >&2
        [ -x "$PIANOROLL_VENV/bin/python" ] || python3 -m venv "$PIANOROLL_VENV"
        "$PIANOROLL_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
            -r "$requirements"
        echo "$want" > "$stamp"
    fi
    export PIANOROLL_PYTHON="$PIANOROLL_VENV/bin/python"
}
