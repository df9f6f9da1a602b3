"""Real sequence-classification data that installs offline, as padded arrays with lengths.

* :func:`mnist1d`: MNIST-1D (Greydanus & Kobak 2020), generated locally by ``mnist1d.data.make_dataset``
  with the paper's default arguments: 4000 train / 1000 test sequences of 40 steps, 10 classes.
* :func:`ucr`: a UCR/UEA set shipped inside ``aeon`` (``JapaneseVowels``: 12 channels, lengths 7-29,
  9 speakers; ``GunPoint``: 1 channel, 150 steps, 2 classes), read from its ``.ts`` files.

Each returns a :class:`SequenceData` with ``x (N, T, C)`` float32 (zero-padded), ``lengths (N,)``
and integer ``y (N,)``, for the train and the test split. Inputs are standardised per channel with
the training split's statistics.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

from rnn_jax._ops import valid_steps

__all__ = ["SequenceData", "mnist1d", "ucr", "UCR_SETS"]

UCR_SETS = ("JapaneseVowels", "GunPoint")


class SequenceData(NamedTuple):
    """A classification set of padded sequences, split into training and test parts.

    Attributes:
      x: ``(N, T, C)`` float32, standardised with the training part's statistics, zero past the lengths.
      lengths: ``(N,)`` int32.
      y: ``(N,)`` int32 classes.
      x_test: the test part, the same layout.
      lengths_test: its lengths.
      y_test: its classes.
      n_classes: the number of classes.

    Examples:
      >>> d = rnn_jax.data.sequences.mnist1d()
      >>> d.x.shape, d.n_classes
      ((4000, 40, 1), 10)
    """

    x: np.ndarray  # (N, T, C) float32
    lengths: np.ndarray  # (N,) int32
    y: np.ndarray  # (N,) int32
    x_test: np.ndarray
    lengths_test: np.ndarray
    y_test: np.ndarray
    n_classes: int


def _need(package: str):
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError:
        raise ImportError(f"the data set needs the package {package!r}: pip install -e '.[experiments]'") from None


def _standardise(x, lengths, x_test, lengths_test):
    mask = valid_steps(lengths, x.shape[1], np)
    mean = x[mask].mean(0)
    std = x[mask].std(0) + 1e-6

    def norm(a, L):
        return np.where(valid_steps(L, a.shape[1], np)[..., None], (a - mean) / std, 0.0).astype(np.float32)

    return norm(x, lengths), norm(x_test, lengths_test)


def mnist1d(seed: int = 42) -> SequenceData:
    """MNIST-1D generated locally (never downloaded); ``seed`` is the generator's seed (the paper's is 42).

    Args:
      seed: the generator's seed.

    Returns:
      A :class:`SequenceData`: 4000 training and 1000 test sequences of 40 steps, 10 classes.

    Examples:
      >>> d = rnn_jax.data.sequences.mnist1d()
      >>> d.x_test.shape, sorted(set(d.y.tolist())) == list(range(10))
      ((1000, 40, 1), True)
    """
    data_mod = _need("mnist1d.data")
    args = data_mod.get_dataset_args()
    args.seed = seed
    d = data_mod.make_dataset(args)
    x, xt = np.asarray(d["x"], np.float32)[..., None], np.asarray(d["x_test"], np.float32)[..., None]
    L, Lt = np.full(len(x), x.shape[1], np.int32), np.full(len(xt), xt.shape[1], np.int32)
    x, xt = _standardise(x, L, xt, Lt)
    return SequenceData(x, L, np.asarray(d["y"], np.int32), xt, Lt, np.asarray(d["y_test"], np.int32), 10)


def _ts_path(name: str, split: str) -> str:
    aeon = _need("aeon")
    path = os.path.join(os.path.dirname(aeon.__file__), "datasets", "data", name, f"{name}_{split}.ts")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{name}: no shipped file {path}; expected one of {UCR_SETS}")
    return path


def _pad(series: list) -> tuple[np.ndarray, np.ndarray]:
    """List of (C, T_i) arrays -> (N, T_max, C) zero-padded, lengths."""
    lengths = np.array([s.shape[-1] for s in series], np.int32)
    C = series[0].shape[0]
    out = np.zeros((len(series), lengths.max(), C), np.float32)
    for i, s in enumerate(series):
        out[i, : s.shape[-1]] = np.asarray(s, np.float32).T
    return out, lengths


def ucr(name: str) -> SequenceData:
    """A UCR/UEA classification set from the files aeon ships (read with aeon's own ``.ts`` loader).

    Args:
      name: the set's name, e.g. ``"JapaneseVowels"`` (variable length) or ``"GunPoint"``.

    Returns:
      A :class:`SequenceData` (the set's own train / test split).

    Examples:
      >>> d = rnn_jax.data.sequences.ucr("JapaneseVowels")
      >>> d.x.shape[0], d.x.shape[2], int(d.lengths.min()), int(d.lengths.max()), d.n_classes
      (270, 12, 7, 26, 9)
    """
    if name not in UCR_SETS:
        raise ValueError(f"name: expected one of {UCR_SETS}, got {name!r}")
    from aeon.datasets import load_from_ts_file

    splits = []
    for split in ("TRAIN", "TEST"):
        X, y = load_from_ts_file(_ts_path(name, split))
        series = list(X) if isinstance(X, list) else [X[i] for i in range(len(X))]
        x, L = _pad(series)
        splits.append((x, L, np.asarray(y)))
    classes = sorted(set(splits[0][2].tolist()))
    to_int = {c: i for i, c in enumerate(classes)}
    (x, L, y), (xt, Lt, yt) = splits
    T = max(x.shape[1], xt.shape[1])
    x = np.pad(x, ((0, 0), (0, T - x.shape[1]), (0, 0)))
    xt = np.pad(xt, ((0, 0), (0, T - xt.shape[1]), (0, 0)))
    x, xt = _standardise(x, L, xt, Lt)
    return SequenceData(
        x,
        L,
        np.array([to_int[c] for c in y], np.int32),
        xt,
        Lt,
        np.array([to_int[c] for c in yt], np.int32),
        len(classes),
    )
