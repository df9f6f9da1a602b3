"""Shared test settings: float64 available, rank promotion forbidden, fresh keys per test."""
import os
import zlib

# Tests are compile-bound. XLA:CPU compiles a test's small programs about 4x faster at the lowest backend
# optimisation level and with its loop emitters instead of its MLIR fusion emitters (same operations, same
# numerics: every comparison below holds to its tolerance either way). Appended to the flags a run sets
# (a device count, for instance). Test processes that run an experiment or a benchmark at a user's
# settings override them.
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false"
os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()
# Experiments train for hundreds of steps: XLA's default optimisation level, loop emitters (compiles in
# half the time; their quick runs take 0.7-1.1x as long as with the defaults, measured).
EXPERIMENT_FLAGS = "--xla_cpu_use_fusion_emitters=false"

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")

import rnn_jax as rj  # noqa: E402
import rnn_jax.gradcheck  # noqa: E402,F401

# name -> factory(H) of every cell; Jordan's output size differs from H on purpose.
CELLS = {
    "elman_tanh": lambda H: rj.elman(H, "tanh"),
    "elman_relu": lambda H: rj.elman(H, "relu"),
    "elman_sigmoid": lambda H: rj.elman(H, "sigmoid"),
    "jordan": lambda H: rj.jordan(H, 3),
    "lstm": lambda H: rj.lstm(H),
    "gru": lambda H: rj.gru(H),
    "orthogonal": lambda H: rj.orthogonal_rnn(H),
}


@pytest.fixture
def key(request):
    """A key derived from the test's name: different per test, the same on every run."""
    seed = zlib.crc32(request.node.nodeid.encode())  # not hash(): Python salts it per process
    return jax.random.key(seed)


def run_main(module: str, argv: list, output: bool = False, fast_compile: bool = False, capsys=None):
    """``module.main(argv)`` as a user runs it, in float32: its returned dict, through JSON (and what it
    printed, with ``output=True``).

    By default in a fresh process with XLA's default optimisation level and ``EXPERIMENT_FLAGS``
    (tests/_run_main.py); a non-zero exit fails the test with the process's output. ``fast_compile``:
    in this process instead, with its flags (``FAST_COMPILE``: the lowest backend optimisation level), for
    runs that compile many small programs and train them briefly. Measured in a process of their own,
    default level against the lowest: bit_reverse 25 / 15 s, long_range's quick grid 18 / 13 s, the UCR
    classifier 25 / 22 s, translate 26 / 24 s, classify 20 / 20 s (and no process to start in this one);
    the runs that train longer keep the default level (generate 22 / 38 s, sentiment 35 / 82 s, char_lm's
    quick run 14 / 18 s, exploding 12 / 15 s, tagging 19 / 20 s, the orthogonal copy run 18 / 23 s).
    ``output=True`` with ``fast_compile`` needs the test's ``capsys``."""
    import json
    import subprocess
    import sys

    if fast_compile:
        import importlib

        with jax.enable_x64(False):
            result = importlib.import_module(module).main(list(argv))
        result = json.loads(json.dumps(result, default=float))
        return (result, capsys.readouterr().out) if output else result
    env = dict(os.environ, XLA_FLAGS=EXPERIMENT_FLAGS, JAX_ENABLE_X64="0")
    p = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "_run_main.py"), module, *argv],
                       env=env, capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-4000:])
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    result = json.loads(line[len("RESULT "):])
    return (result, p.stdout) if output else result


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def perturb(params, key, scale=0.3):
    """Random non-zero values for every leaf (biases start at zero; tests need them non-trivial)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(
        treedef, [l + scale * jax.random.normal(k, l.shape, l.dtype) for l, k in zip(leaves, keys)])


_TESTS_SINCE_CLEAR = [0]


@pytest.fixture(autouse=True)
def _fresh_compilation_caches():
    """Drop compiled programs every 40 tests: the suite compiles thousands of small programs, and keeping
    them all alive grows one process's memory for nothing (tests of one module, handed out one by one,
    may interleave with other modules' on a worker, so this does not follow module boundaries)."""
    yield
    _TESTS_SINCE_CLEAR[0] += 1
    if _TESTS_SINCE_CLEAR[0] >= 40:
        _TESTS_SINCE_CLEAR[0] = 0
        jax.clear_caches()


# The tests that run a whole experiment or benchmark in a fresh process take 10-45 s each, most others under
# 2 s: handed out first, they do not leave one worker finishing a long test while the other idles at the end.
_FIRST = ("test_experiments.py", "test_benchmarks.py", "test_distributed.py", "test_readme.py")


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: item.path.name not in _FIRST)  # stable: the order within each group is kept
