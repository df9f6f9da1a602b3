#!/usr/bin/env bash
# The main job: train and evaluate the seed's bit-reversal problems end to end; results in runs/.
source "$(dirname "$0")/_venv.sh" experiments
python -m experiments.bit_reverse "$@"
