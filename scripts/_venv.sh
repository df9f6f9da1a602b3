# Sourced by scripts/*.sh: make (once) and enter the project's virtualenv, install the given extras.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
VENV=${RNN_JAX_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
# shellcheck disable=SC1091
. "$VENV/bin/activate"
python -m pip install -q --upgrade "pip>=23" >/dev/null
python -m pip install -q -e ".[$1]"
