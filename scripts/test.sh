#!/usr/bin/env bash
# Run the test suite in .venv (made and filled on first use).
# RNN_JAX_WITH_TORCH=1 also installs torch==2.13.0 (live PyTorch parity) and aeon (UCR/UEA data);
# without it they are skipped and PyTorch parity is checked against stored reference vectors.
extras=test
[ "${RNN_JAX_WITH_TORCH:-0}" = 1 ] && extras=test-torch
source "$(dirname "$0")/_venv.sh" "$extras"
python -m pytest -q "$@"
