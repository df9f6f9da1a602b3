"""Date normalisation, a translation task with real formats: dates written by ``babel`` (CLDR data, offline)
in many locales and styles, to be translated into ISO 8601 (``YYYY-MM-DD``).

    src: "Mittwoch, 14. Februar 1973"  "14/02/1973"  "14 févr. 1973"  "Feb 14, 1973"  ->  tgt: "1973-02-14"

Dates are drawn uniformly from 1950-01-01 .. 2049-12-31; train and test dates are disjoint. Tokens are
characters: the source vocabulary is every character of the training sources, the target vocabulary
``0-9`` and ``-``, plus ``<pad>=0``, ``<bos>=1``, ``<eos>=2`` in both.
"""

from __future__ import annotations

import datetime
from typing import NamedTuple

import numpy as np

__all__ = ["DateTask", "make", "LOCALES", "FORMATS", "PAD", "BOS", "EOS"]

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR", "sv_SE", "pl_PL", "ru_RU", "tr_TR")
FORMATS = ("short", "medium", "long", "full")
PAD = 0  # padding id
BOS = 1  # start-of-sequence id (the decoder's first input)
EOS = 2  # end-of-sequence id
SPECIALS = "\x00\x01\x02"  # placeholders for <pad>, <bos>, <eos> in the vocabulary strings


class DateTask(NamedTuple):
    """A date-normalisation translation task: dates written in many locales and formats -> ISO 8601.

    Attributes:
      src_vocab: the source characters (index = id).
      tgt_vocab: the target characters.
      src: ``(N, S)`` int32 source ids, padded.
      src_len: ``(N,)`` source lengths.
      tgt_in: ``(N, 11)``: BOS and the 10 characters of ``YYYY-MM-DD``.
      tgt_out: ``(N, 11)``: the 10 characters and EOS.
      src_text: the source strings.
      tgt_text: the target strings.
      styles: the ``(locale, format)`` each source was written in.

    Examples:
      >>> train, test = rnn_jax.data.dates.make(8, 4, seed=0)
      >>> train.src.shape[0], train.tgt_in.shape, len(train.tgt_text[0])
      (8, (8, 11), 10)
    """

    src_vocab: str
    tgt_vocab: str
    src: np.ndarray  # (N, S) int32, padded with PAD, no BOS/EOS
    src_len: np.ndarray  # (N,)
    tgt_in: np.ndarray  # (N, 11): BOS + 10 characters
    tgt_out: np.ndarray  # (N, 11): 10 characters + EOS
    src_text: list
    tgt_text: list
    styles: list  # (locale, format) each source was written in

    def take(self, idx) -> "DateTask":
        idx = np.asarray(idx)
        return DateTask(
            self.src_vocab,
            self.tgt_vocab,
            self.src[idx],
            self.src_len[idx],
            self.tgt_in[idx],
            self.tgt_out[idx],
            [self.src_text[i] for i in idx],
            [self.tgt_text[i] for i in idx],
            [self.styles[i] for i in idx],
        )


def _format(dates, rng, locales, formats):
    try:
        from babel.dates import format_date
    except ImportError:
        raise ImportError("the date task needs babel: pip install -e '.[experiments]'") from None
    out, styles = [], []
    for d in dates:
        loc = locales[rng.integers(len(locales))]
        fmt = formats[rng.integers(len(formats))]
        out.append(format_date(d, format=fmt, locale=loc))
        styles.append((loc, fmt))
    return out, styles


def _encode(texts, vocab, length):
    """Padded ids and lengths; characters outside ``vocab`` (unseen in training) are skipped."""
    table = {c: i for i, c in enumerate(vocab)}
    arr = np.full((len(texts), length), PAD, np.int32)
    lengths = np.zeros(len(texts), np.int32)
    for i, t in enumerate(texts):
        ids = [table[c] for c in t if c in table][:length]
        arr[i, : len(ids)] = ids
        lengths[i] = len(ids)
    return arr, lengths


def make(n_train: int, n_test: int, seed: int = 0, locales=LOCALES, formats=FORMATS) -> tuple[DateTask, DateTask]:
    """Train and test tasks with disjoint dates (test dates are never seen in training).

    Args:
      n_train: training examples.
      n_test: test examples (dates disjoint from the training dates).
      seed: the generator's seed.
      locales: the Babel locales dates are written in.
      formats: Babel's date formats.

    Returns:
      ``(train, test)``, two :class:`DateTask` sharing vocabularies.

    Examples:
      >>> train, test = rnn_jax.data.dates.make(100, 20, seed=1)
      >>> set(train.tgt_text).isdisjoint(test.tgt_text)
      True
    """
    rng = np.random.default_rng(seed)
    start = datetime.date(1950, 1, 1).toordinal()
    days = (datetime.date(2049, 12, 31).toordinal() - start) + 1
    if n_train + n_test > days:
        raise ValueError(f"n_train + n_test: at most {days} distinct dates, got {n_train + n_test}")
    picks = rng.choice(days, n_train + n_test, replace=False)
    dates = [datetime.date.fromordinal(start + int(p)) for p in picks]
    src_text, styles = _format(dates, rng, locales, formats)
    tgt_text = [d.isoformat() for d in dates]
    src_vocab = SPECIALS + "".join(sorted(set("".join(src_text[:n_train]))))
    tgt_vocab = SPECIALS + "-0123456789"
    S = max(len(t) for t in src_text)
    src, src_len = _encode(src_text, src_vocab, S)
    body, _ = _encode(tgt_text, tgt_vocab, 10)
    tgt_in = np.concatenate([np.full((len(dates), 1), BOS, np.int32), body], 1)
    tgt_out = np.concatenate([body, np.full((len(dates), 1), EOS, np.int32)], 1)
    task = DateTask(src_vocab, tgt_vocab, src, src_len, tgt_in, tgt_out, src_text, tgt_text, styles)
    return task.take(np.arange(n_train)), task.take(np.arange(n_train, n_train + n_test))
