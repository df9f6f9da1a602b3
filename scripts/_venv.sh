# Sourced by scripts/*.sh: make (once) and enter the project's virtualenv, install the given extras.
# pip's own output goes to $VENV/pip.log and is shown only when the install fails.
# Bytecode: pip's own compile step runs on one core (a fresh install with torch: 73 s); installing without
# it and compiling the venv on every core afterwards took 58 s. (Left to the first import instead, every
# process compiles what it imports again where PYTHONDONTWRITEBYTECODE is set.)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=${RNN_JAX_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
if ! { python -m pip install --upgrade "pip>=23" && python -m pip install --no-compile -e ".[$1]" \
        && { python -m compileall -q -j 0 "$VENV/lib" rnn_jax experiments benchmarks tests || true; }; } >"$VENV/pip.log" 2>&1; then
    cat "$VENV/pip.log"
    echo "installing rnn_jax[$1] failed; the log above is in $VENV/pip.log" >&2
    exit 1
fi
