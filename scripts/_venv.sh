# Sourced by scripts/*.sh: make (once) and enter the project's virtualenv, install the given extras.
# pip's own output goes to $VENV/pip.log and is shown only when the install fails.
# --no-compile: Python compiles a module to bytecode the first time it is imported, so only what runs is
# compiled (pip would compile all of torch and jax up front: a fresh install took 73 s with it, 24 s without).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=${RNN_JAX_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
if ! { python -m pip install --upgrade "pip>=23" && python -m pip install --no-compile -e ".[$1]"; } >"$VENV/pip.log" 2>&1; then
    cat "$VENV/pip.log"
    echo "installing rnn_jax[$1] failed; the log above is in $VENV/pip.log" >&2
    exit 1
fi
