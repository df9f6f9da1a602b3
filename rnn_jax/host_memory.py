"""Keep freed host memory for reuse: on Linux CPUs, training steps with large buffers up to 28 % shorter.

XLA's CPU runtime allocates every temporary buffer of a compiled program afresh at each call and frees
it at the end. glibc's ``malloc`` serves large requests (from 128 KiB, adjusted as it goes) with fresh
pages from the kernel and gives them back on ``free``, so every call of a training step touches new
pages, and each first touch is a page fault that zero-fills 4 KiB. In a recurrent network's step the
scan's per-step stores into its ``(T, B, H)`` buffers all land on new pages. Measured on this
project's 2-core CPU (``python -m benchmarks.host_memory``: one fresh process per policy,
alternating, medians of 4 rounds): the GRU classifier's Adam step (B=64, T=100,
H=128) 65.0 -> 47.1 ms with 8960 -> 1807 page faults per step, the LSTM classifier's 76.1 -> 55.4 ms,
the GRU character model's (B=32, H=256) 89.4 -> 73.4 ms; Flax's same steps 64.0 -> 49.3, 81.1 -> 59.2
and 102.9 -> 93.1 ms. Steps whose buffers are small (an Elman classifier, a short encoder-decoder) fault
little either way and do not change. It speeds up every framework in the process alike. It does not
help where single buffers approach 64 MiB (a GRU layer at B=64, H=512 holds several of 39 MiB): XLA's
threads allocate from glibc's per-thread arenas, whose heaps are capped at 64 MiB; limiting glibc to
one arena removed those faults but slowed smaller steps (benchmarks/README.md, "Host memory").

:func:`reuse_host_memory` tells glibc to serve large requests from its heap and to keep freed heap
memory (``mallopt`` of ``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``, ``M_TOP_PAD``). The price: the
process keeps its peak heap size instead of returning memory to the system between calls. It is
process-wide and cannot be undone, so the library never calls it on import; the experiment scripts
call it at start (``--host_memory=default`` turns it off). Where the C library is not glibc (macOS,
Windows, musl), it does nothing and returns False. The same effect without code, for any program:
``MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=2147483647 MALLOC_TOP_PAD_=268435456``.
"""

from __future__ import annotations

import ctypes
import sys

__all__ = ["reuse_host_memory", "host_memory_state", "use_policy", "POLICIES"]

# mallopt parameter numbers (glibc <malloc.h>)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_MMAP_THRESHOLDS = (1 << 30, 1 << 25)  # glibc builds that cap the threshold accept 32 MiB
_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int
_TOP_PAD = 1 << 28

_state: dict = {"reuse": False, "mmap_threshold": None}

POLICIES = ("reuse", "default")  # the choices of the scripts' --host_memory flag


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols: the C library it runs on
        libc.gnu_get_libc_version.restype = ctypes.c_char_p  # absent outside glibc
        libc.mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        libc.mallopt.restype = ctypes.c_int
        return libc if libc.gnu_get_libc_version() else None
    except (OSError, AttributeError):
        return None


def reuse_host_memory() -> bool:
    """Keep freed host memory in the heap for the next call instead of returning it to the kernel
    (see the module docstring). Returns True if applied (glibc), False otherwise. Idempotent.

    There is no way back within the process: glibc's own policy adapts its mmap threshold as it goes,
    which setting any value switches off. To compare both, run two processes
    (``python -m benchmarks.host_memory``).

    Returns:
      True if applied (glibc), False otherwise.

    Examples:
      >>> rnn_jax.host_memory.reuse_host_memory() in (True, False)
      True
    """
    if _state["reuse"]:
        return True
    libc = _glibc()
    if libc is None:
        return False
    threshold = next((t for t in _MMAP_THRESHOLDS if libc.mallopt(_M_MMAP_THRESHOLD, t) == 1), None)
    if threshold is None:
        return False
    ok = libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD) == 1
    ok = libc.mallopt(_M_TOP_PAD, _TOP_PAD) == 1 and ok
    _state.update(reuse=ok, mmap_threshold=threshold)
    return ok


def host_memory_state() -> dict:
    """``{"reuse": bool, "mmap_threshold": bytes or None}``: what this process runs with (for run records).

    Returns:
      ``{"reuse": bool, "mmap_threshold": int or None}``.

    Examples:
      >>> sorted(rnn_jax.host_memory.host_memory_state())
      ['mmap_threshold', 'reuse']
    """
    return dict(_state)


def use_policy(policy: str) -> dict:
    """``"reuse"``: :func:`reuse_host_memory`; ``"default"``: leave the C library's own policy. For
    scripts that own their process (``--host_memory``). Returns :func:`host_memory_state`.

    Args:
      policy: ``"reuse"`` or ``"default"``.

    Returns:
      :func:`host_memory_state`'s dict after the policy is applied.

    Examples:
      >>> rnn_jax.host_memory.use_policy("default")["reuse"] in (True, False)
      True
    """
    if policy not in POLICIES:
        raise ValueError(f"policy: expected one of {POLICIES}, got {policy!r}")
    if policy == "reuse":
        reuse_host_memory()
    return host_memory_state()
