"""The bit-reversal problems of the seed lecture "Recurrent Neural Network" (problems 1-4).

Every problem is enumerated exhaustively and returned as a :class:`BitTask` of arrays:
``xs (N, T, I)`` inputs, ``ys (N, T, O)`` 0/1 targets, ``mask (N, T, O)`` (1 where a target counts)
and ``lengths (N,)`` valid timesteps.

1. flip one bit: T = 1, I = O = 1.
2. flip a 10-bit vector at once: T = 1, I = O = 10; ``variable=True`` takes every vector of 1 to 10
   bits, padded to 10 with the value -1 (the seed's padding), the padded outputs masked.
3. flip a sequence of bits over time: T = 10, I = O = 1, ``y_t = 1 - x_t``.
4. flip a bit when the current input equals the previous output: T = 10, I = O = 1,
   ``y_t = 1 - x_t if x_t == y_{t-1} else x_t`` with ``y_{-1} = 0``. Note that both branches give
   ``y_t = 1 - y_{t-1}``: the target alternates 1, 0, 1, ... whatever the input, so the network must
   learn to ignore ``x`` and remember its own last output (what a Jordan network feeds back).
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import jax
import numpy as np

PAD = -1.0
PROBLEMS = ("1", "2-fixed", "2-variable", "3", "4")


class BitTask(NamedTuple):
    """A bit-reversal problem, enumerated.

    Attributes:
      xs: ``(N, T, I)`` float32 inputs.
      ys: ``(N, T, O)`` 0/1 targets.
      mask: ``(N, T, O)``, 1 where a target counts.
      lengths: ``(N,)`` valid steps.

    Examples:
      >>> task = rnn_jax.data.bits.problem("3")
      >>> task.xs.shape, task.take([0, 1]).ys.shape
      ((1024, 10, 1), (2, 10, 1))
    """

    xs: np.ndarray  # (N, T, I) float32
    ys: np.ndarray  # (N, T, O) float32 in {0, 1}
    mask: np.ndarray  # (N, T, O) float32 in {0, 1}
    lengths: np.ndarray  # (N,) int32

    def take(self, idx) -> "BitTask":
        return BitTask(*(a[idx] for a in self))


def _all_bits(n: int) -> np.ndarray:
    return np.array(list(itertools.product([0, 1], repeat=n)), np.float32)  # (2^n, n)


def problem(name: str, bits: int = 10) -> BitTask:
    """The whole task: every possible input once.

    Args:
      name: ``"1"``, ``"2-fixed"``, ``"2-variable"``, ``"3"`` or ``"4"``.
      bits: the vector's or sequence's length (problems 2-4).

    Returns:
      A :class:`BitTask`.

    Examples:
      >>> task = rnn_jax.data.bits.problem("4", bits=4)
      >>> task.xs[5, :, 0].tolist(), task.ys[5, :, 0].tolist()      # the target alternates whatever x is
      ([0.0, 1.0, 0.0, 1.0], [1.0, 0.0, 1.0, 0.0])
    """
    if name == "1":
        x = _all_bits(1)[:, None, :]  # (2, 1, 1)
        return BitTask(x, 1 - x, np.ones_like(x), np.ones(2, np.int32))
    if name == "2-fixed":
        x = _all_bits(bits)[:, None, :]  # (1024, 1, 10)
        return BitTask(x, 1 - x, np.ones_like(x), np.ones(len(x), np.int32))
    if name == "2-variable":
        rows, masks = [], []
        for n in range(1, bits + 1):
            b = _all_bits(n)
            rows.append(np.concatenate([b, np.full((len(b), bits - n), PAD, np.float32)], 1))
            masks.append(np.concatenate([np.ones_like(b), np.zeros((len(b), bits - n), np.float32)], 1))
        x, m = np.concatenate(rows)[:, None, :], np.concatenate(masks)[:, None, :]
        return BitTask(x, np.where(m > 0, 1 - x, 0.0).astype(np.float32), m, np.ones(len(x), np.int32))
    if name == "3":
        x = _all_bits(bits)[:, :, None]  # (1024, 10, 1)
        return BitTask(x, 1 - x, np.ones_like(x), np.full(len(x), bits, np.int32))
    if name == "4":
        x = _all_bits(bits)[:, :, None]
        y = np.zeros_like(x)
        prev = np.zeros(len(x), np.float32)
        for t in range(bits):
            xt = x[:, t, 0]
            prev = np.where(xt == prev, 1 - xt, xt)
            y[:, t, 0] = prev
        return BitTask(x, y, np.ones_like(x), np.full(len(x), bits, np.int32))
    raise ValueError(f"name: expected one of {PROBLEMS}, got {name!r}")


def split(
    task: BitTask, key: jax.Array, test_fraction: float = 0.3, valid_fraction: float = 0.15
) -> tuple[BitTask, BitTask, BitTask]:
    """A random train / validation / test split of the enumerated inputs, disjoint. With fewer than 4
    examples (problem 1 has two) nothing can be held out: every example trains, and the validation and
    test parts are empty (no accuracy on unseen examples can be reported for such a problem).

    Args:
      task: a :class:`BitTask`.
      key: a ``jax.random.key`` for the shuffle.
      test_fraction: the test part's share.
      valid_fraction: the validation part's share.

    Returns:
      ``(train, valid, test)``, three :class:`BitTask`.

    Examples:
      >>> train, valid, test = rnn_jax.data.bits.split(rnn_jax.data.bits.problem("3"), jax.random.key(0))
      >>> len(train.xs), len(valid.xs), len(test.xs)
      (563, 154, 307)
    """
    n = len(task.xs)
    if n < 4:
        return task, task.take(np.arange(0)), task.take(np.arange(0))
    perm = np.asarray(jax.random.permutation(key, n))
    k = int(round(n * test_fraction))
    v = int(round(n * valid_fraction))
    return task.take(perm[k + v :]), task.take(perm[k : k + v]), task.take(perm[:k])
