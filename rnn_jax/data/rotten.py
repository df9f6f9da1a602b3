"""Rotten Tomatoes sentence polarity, the full set (Pang & Lee 2005), with graded human ratings.

The sentences ship inside the MIT-licensed ``vadersentiment`` 3.3.2 source archive (its
``additional_resources/hutto_ICWSM_2014.tar.gz``, the data of Hutto & Gilbert 2014): on first use the
archive is fetched from the package registry into the local cache (``$RNN_JAX_CACHE`` or
``~/.cache/rnn_jax``) with ``pip download --no-deps --no-binary :all: vadersentiment==3.3.2`` and
the one file needed is extracted.

``movieReviewSnippets_GroundTruth.txt`` has 10,605 lines ``id<TAB>rating<TAB>sentence``: the sentences
of Pang & Lee's sentence-polarity data with the mean rating of 20 human raters on -4..+4. The label
is the sign of the rating; the 37 sentences rated exactly 0 are dropped (10,568 remain: 5,242
positive, 5,326 negative).

References: C. J. Hutto and E. Gilbert (2014), "VADER: A Parsimonious Rule-based Model for Sentiment
Analysis of Social Media Text", ICWSM. B. Pang and L. Lee (2005), "Seeing stars: Exploiting class
relationships for sentiment categorization with respect to rating scales", ACL.
"""

from __future__ import annotations

import io
import os
import tarfile
from typing import NamedTuple

from rnn_jax.data._registry import cache_dir, download_sdist, tar_member, write_atomically

__all__ = ["fetch", "sentences", "Sentence"]

REQUIREMENT = "vadersentiment==3.3.2"
ARCHIVE = "vaderSentiment-3.3.2.tar.gz"
INNER = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"
FILE = "movieReviewSnippets_GroundTruth.txt"


class Sentence(NamedTuple):
    """A rated sentence.

    Attributes:
      text: the sentence.
      rating: the mean human rating, -4 .. +4.
      label: 1 positive, 0 negative (the rating's sign).

    Examples:
      >>> s = rnn_jax.data.rotten.sentences()[0]
      >>> s.label == int(s.rating > 0)
      True
    """

    text: str
    rating: float  # mean human rating, -4 .. +4
    label: int  # 1 positive, 0 negative


def fetch() -> str:
    """Path of the extracted ratings file (downloaded and extracted once).

    Returns:
      The file's path.

    Examples:
      >>> rnn_jax.data.rotten.fetch().endswith("movieReviewSnippets_GroundTruth.txt")
      True
    """
    root = os.path.join(cache_dir(), "vadersentiment")
    path = os.path.join(root, FILE)
    if os.path.exists(path):
        return path
    archive = download_sdist(REQUIREMENT, ARCHIVE, root)
    try:
        with tarfile.open(archive) as outer:
            inner = tar_member(outer, INNER)
        with tarfile.open(fileobj=io.BytesIO(inner)) as tar:
            data = tar_member(tar, f"hutto_ICWSM_2014/{FILE}")
    except (tarfile.TarError, KeyError, AttributeError) as e:
        os.remove(archive)
        raise RuntimeError(f"{archive} is corrupt or incomplete ({e}); removed it, run again to fetch it anew") from e
    write_atomically(path, data)
    return path


def sentences() -> list[Sentence]:
    """The 10,568 rated sentences with a non-zero rating, in file order.

    Returns:
      A list of :class:`Sentence`.

    Examples:
      >>> data = rnn_jax.data.rotten.sentences()
      >>> len(data), sum(s.label for s in data)
      (10568, 5242)
    """
    out = []
    with open(fetch(), encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 3:
                raise ValueError(f"{FILE} line {n}: expected 3 tab-separated fields, got {len(parts)}")
            rating = float(parts[1])
            if rating != 0:
                out.append(Sentence(parts[2].strip(), rating, int(rating > 0)))
    return out
