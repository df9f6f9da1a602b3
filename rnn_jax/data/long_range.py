"""Long-range dependency tasks, generated as pure functions of a PRNG key.

* :func:`adding` (Hochreiter & Schmidhuber 1997; Le et al. 2015): ``x (T, 2)``: a number in [0, 1] and
  a marker; exactly two markers (one in each half). Target: the sum of the two marked numbers.
  Always predicting 1 gives MSE = Var(U + U') = 1/6 ~ 0.167 (the baseline).
* :func:`copy_memory` (Arjovsky et al. 2016): tokens ``(T + 20,)``: 10 symbols from {1..8}, ``T - 1``
  blanks (0), the delimiter 9, 10 blanks; the target is blanks, then the 10 symbols in the last 10 steps.
  A memoryless predictor (blanks, then uniform over 8) has cross-entropy
  ``10 ln 8 / (T + 20)`` per step (the baseline).
* :func:`temporal_order` (Hochreiter & Schmidhuber 1997, experiment 6a): tokens over
  {a, b, c, d, X, Y, B, E}; ``B`` first, ``E`` last, X or Y at ``t1 in [0.1T, 0.2T]`` and
  ``t2 in [0.5T, 0.6T]``, distractors a-d elsewhere; 4 classes XX, XY, YX, YY (chance 0.25).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

__all__ = ["adding", "copy_memory", "temporal_order", "ADDING_BASELINE", "copy_baseline", "ORDER_VOCAB"]

ADDING_BASELINE = 1.0 / 6.0
ORDER_VOCAB = 8  # a b c d X Y B E
COPY_VOCAB = 10  # 0 blank, 1..8 symbols, 9 delimiter


def copy_baseline(T: int) -> float:
    """The copy task's cross-entropy (nats per step) of the memoryless strategy: blanks until the

    delimiter, then a uniform guess among the 8 symbols for the 10 steps to recall.

    Args:
      T: the delay (the sequence is ``T + 20`` steps).

    Returns:
      ``10 log 8 / (T + 20)``.

    Examples:
      >>> round(rnn_jax.data.long_range.copy_baseline(100), 4)
      0.1733
    """

    return 10 * math.log(8) / (T + 20)


@functools.partial(jax.jit, static_argnames=("n", "T", "dtype"))  # one program per shape, not one per operation
def adding(key, n: int, T: int, dtype=jnp.float32):
    """``xs (n, T, 2)``, ``y (n,)`` of ``dtype``."""
    k1, k2, k3 = jax.random.split(key, 3)
    values = jax.random.uniform(k1, (n, T), dtype)
    half = T // 2
    i1 = jax.random.randint(k2, (n,), 0, half)
    i2 = jax.random.randint(k3, (n,), half, T)
    marks = jax.nn.one_hot(i1, T, dtype=dtype) + jax.nn.one_hot(i2, T, dtype=dtype)
    return jnp.stack([values, marks], -1), jnp.sum(values * marks, -1)


@functools.partial(jax.jit, static_argnames=("n", "T", "n_symbols"))
def copy_memory(key, n: int, T: int, n_symbols: int = 10):
    """``tokens (n, T + 2 * n_symbols)`` int32 input, ``targets`` of the same shape."""
    L = T + 2 * n_symbols
    sym = jax.random.randint(key, (n, n_symbols), 1, 9, dtype=jnp.int32)
    x = jnp.zeros((n, L), jnp.int32).at[:, :n_symbols].set(sym).at[:, T + n_symbols - 1].set(9)
    y = jnp.zeros((n, L), jnp.int32).at[:, L - n_symbols :].set(sym)
    return x, y


@functools.partial(jax.jit, static_argnames=("n", "T"))
def temporal_order(key, n: int, T: int):
    """``tokens (n, T)`` int32, ``labels (n,)`` in 0..3 (XX, XY, YX, YY)."""
    k1, k2, k3, k4 = jax.random.split(key, 4)
    x = jax.random.randint(k1, (n, T), 0, 4)  # distractors a..d
    t1 = jax.random.randint(k2, (n,), max(1, int(0.1 * T)), max(2, int(0.2 * T) + 1))
    t2 = jax.random.randint(k3, (n,), max(int(0.5 * T), 3), max(int(0.6 * T) + 1, 4))
    which = jax.random.randint(k4, (n, 2), 0, 2)  # 0 = X, 1 = Y
    rows = jnp.arange(n)
    x = x.at[rows, t1].set(4 + which[:, 0]).at[rows, t2].set(4 + which[:, 1])
    x = x.at[:, 0].set(6).at[:, -1].set(7)
    return x, 2 * which[:, 0] + which[:, 1]
