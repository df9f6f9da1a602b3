"""The examples in the docstrings run as written (doctest), with JAX's defaults (float32), each module in
a fresh process; ``rnn_jax``, ``jax`` and ``jnp`` are in scope, as they are in the examples."""
import importlib
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = ("rnn_jax.layers", "rnn_jax.models", "rnn_jax.regularization", "rnn_jax.train", "rnn_jax.losses",
           "rnn_jax.unroll", "rnn_jax.cells", "rnn_jax.gradcheck")
RUN = """
import doctest, importlib, sys
import jax, jax.numpy as jnp, rnn_jax
mod = importlib.import_module(sys.argv[1])
res = doctest.testmod(mod, extraglobs={"rnn_jax": rnn_jax, "jax": jax, "jnp": jnp}, optionflags=doctest.ELLIPSIS)
print(f"{res.attempted} examples, {res.failed} failed")
sys.exit(1 if res.failed or not res.attempted else 0)
"""


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    from conftest import FAST_COMPILE

    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "XLA_FLAGS")}
    env["XLA_FLAGS"] = FAST_COMPILE
    p = subprocess.run([sys.executable, "-c", RUN, module], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout[-4000:] + p.stderr[-2000:]


def test_every_listed_module_is_importable():
    for m in MODULES:
        importlib.import_module(m)
