"""Word-level vocabularies and padded id arrays for token-sequence tasks."""

from __future__ import annotations

from collections import Counter

import numpy as np

__all__ = ["Vocab", "pad_ids"]

PAD, UNK = 0, 1


class Vocab:
    """Index 0 is padding, 1 the unknown token; other entries are items seen ``min_count`` times in training.

    Args:
      items: the training tokens, counted.
      min_count: the fewest occurrences a token needs to get its own id.

    Examples:
      >>> v = rnn_jax.data.words.Vocab("a b a c a b".split(), min_count=2)
      >>> v.itos, v.ids(["a", "c", "zzz"]), len(v)
      (['<pad>', '<unk>', 'a', 'b'], [2, 1, 1], 4)
    """

    def __init__(self, items, min_count: int = 2):
        counts = Counter(items)
        self.itos = ["<pad>", "<unk>"] + sorted(w for w, c in counts.items() if c >= min_count)
        self.stoi = {w: i for i, w in enumerate(self.itos)}

    @classmethod
    def from_words(cls, words) -> "Vocab":
        """A vocabulary of exactly ``words``, in that order, after ``<pad>`` (0) and ``<unk>`` (1)."""
        words = list(words)
        if len(set(words)) != len(words) or {"<pad>", "<unk>"} & set(words):
            raise ValueError("words: expected distinct words, none of them '<pad>' or '<unk>'")
        vocab = cls(())
        vocab.itos = ["<pad>", "<unk>"] + words
        vocab.stoi = {w: i for i, w in enumerate(vocab.itos)}
        return vocab

    def __len__(self) -> int:
        return len(self.itos)

    def ids(self, items) -> list[int]:
        return [self.stoi.get(w, UNK) for w in items]


def pad_ids(seqs: list[list[int]], length: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(N, L)`` int32 ids padded with 0, and ``(N,)`` lengths.

    Args:
      seqs: lists of ids.
      length: the padded length (longer sequences are cut), or None (the longest).

    Returns:
      ``(ids (N, L) int32, lengths (N,) int32)``.

    Examples:
      >>> ids, lengths = rnn_jax.data.words.pad_ids([[5, 6, 7], [8]])
      >>> ids.tolist(), lengths.tolist()
      ([[5, 6, 7], [8, 0, 0]], [3, 1])
    """
    L = length or max(len(s) for s in seqs)
    out = np.zeros((len(seqs), L), np.int32)
    lengths = np.zeros(len(seqs), np.int32)
    for i, s in enumerate(seqs):
        s = s[:L]
        out[i, : len(s)] = s
        lengths[i] = len(s)
    return out, lengths
