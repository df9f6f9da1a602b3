#!/usr/bin/env bash
# Lint, format check and type check of rnn_jax/ (settings in pyproject.toml), in .venv (made on first use).
# To fix what ruff can: ruff check --fix rnn_jax && ruff format rnn_jax
source "$(dirname "$0")/_venv.sh" lint
ruff check rnn_jax
ruff format --check rnn_jax
mypy
