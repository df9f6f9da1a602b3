"""n-gram Markov models of characters: the baseline the seeds contrast RNNs with.

An order-n model predicts a character from the previous n-1 characters; the seeds' point is that its
state space grows as V^(n-1), so it cannot keep a long context. Smoothing is interpolated
Witten-Bell (Witten & Bell 1991; Chen & Goodman 1998):

.. math::
    P_n(c \\mid h) = \\frac{C(h c) + N_{1+}(h \\cdot) \\, P_{n-1}(c \\mid h')}{C(h) + N_{1+}(h \\cdot)}

with ``h'`` the context shortened by its oldest character and ``P_0 = 1 / V``. Counting and lookup
are vectorised with numpy (n-grams encoded as base-V integers).
"""

from __future__ import annotations

import numpy as np

__all__ = ["NGram"]


def _codes(ids: np.ndarray, n: int, V: int) -> np.ndarray:
    """Base-V code of every n-gram ending at positions n-1 .. len-1."""
    out = np.zeros(len(ids) - n + 1, np.int64)
    for i in range(n):
        out = out * V + ids[i : len(ids) - n + 1 + i]
    return out


def _lookup(keys: np.ndarray, counts: np.ndarray, query: np.ndarray) -> np.ndarray:
    pos = np.clip(np.searchsorted(keys, query), 0, max(len(keys) - 1, 0))
    return np.where((len(keys) > 0) & (keys[pos] == query), counts[pos], 0) if len(keys) else np.zeros(len(query))


class NGram:
    """``NGram(order, V).fit(train_ids)``; ``bits_per_char(ids)`` on held-out text.

    Args:
      order: ``n``: each character is predicted from the ``n - 1`` before it.
      vocab_size: ``V``; ids are ints in ``[0, V)``.

    Examples:
      >>> text = np.array([0, 1, 2] * 200)                       # a period-3 text
      >>> lm = rnn_jax.ngram.NGram(3, 4).fit(text)
      >>> lm.bits_per_char(np.array([0, 1, 2] * 10)) < 0.1        # two characters of context suffice
      True
    """

    def __init__(self, order: int, vocab_size: int):
        if order < 1:
            raise ValueError(f"order: expected an int >= 1, got {order}")
        if vocab_size**order >= 2**62:
            raise ValueError(f"order: {order} too large for a vocabulary of {vocab_size} (codes overflow int64)")
        self.order, self.V = order, vocab_size
        self.tables: list = []

    def fit(self, ids: np.ndarray) -> "NGram":
        """Count every n-gram of ``ids`` up to the order.

        Args:
          ids: the training text, a 1-D int array.

        Returns:
          ``self``, with its count tables.
        """
        ids = np.asarray(ids, np.int64)
        self.tables = []
        for n in range(1, self.order + 1):
            grams, c_hc = np.unique(_codes(ids, n, self.V), return_counts=True)
            ctx = grams // self.V
            ctx_keys, c_h = np.unique(ctx, return_counts=False), None
            # C(h) = sum_c C(h c); N1+(h .) = number of distinct c after h
            order_idx = np.searchsorted(ctx_keys, ctx)
            c_h = np.bincount(order_idx, weights=c_hc, minlength=len(ctx_keys))
            n1 = np.bincount(order_idx, minlength=len(ctx_keys))
            self.tables.append((grams, c_hc, ctx_keys, c_h, n1))
        return self

    def log2_probs(self, ids: np.ndarray) -> np.ndarray:
        """log2 P(x_t | previous order-1 characters) for t = order-1 .. len-1.

        Args:
          ids: a 1-D int array.

        Returns:
          ``(len(ids) - order + 1,)`` log2 probabilities.
        """
        ids = np.asarray(ids, np.int64)
        n_pred = len(ids) - self.order + 1
        p = np.full(n_pred, 1.0 / self.V)
        for n, (grams, c_hc, ctx_keys, c_h, n1) in enumerate(self.tables, start=1):
            q = _codes(ids, n, self.V)[-n_pred:]
            num = _lookup(grams, c_hc, q)
            ctx = q // self.V
            ch, nn = _lookup(ctx_keys, c_h, ctx), _lookup(ctx_keys, n1, ctx)
            seen = ch > 0
            p = np.where(seen, (num + nn * p) / np.maximum(ch + nn, 1), p)
        return np.log2(p)

    def bits_per_char(self, ids: np.ndarray) -> float:
        """The model's cross-entropy on held-out text, in bits per character.

        Args:
          ids: held-out text, a 1-D int array.

        Returns:
          The mean of ``-log2 P`` over the predicted characters.
        """
        return float(-np.mean(self.log2_probs(ids)))
