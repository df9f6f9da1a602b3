"""Shared timing harness: interleaved rounds, medians, machine facts, JSON out."""
from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time


def add_host_memory_flag(parser) -> None:
    from rnn_jax.host_memory import POLICIES

    parser.add_argument("--host_memory", choices=POLICIES, default="reuse",
                        help="reuse (what the experiments run with): rnn_jax.reuse_host_memory(); default: the C "
                             "library's own policy (every step faults its buffers in afresh). Applies to every "
                             "framework in the process alike.")


def apply_host_memory(args) -> None:
    """Call before the first computation (``--host_memory``, see :func:`add_host_memory_flag`)."""
    from rnn_jax.host_memory import use_policy

    use_policy(args.host_memory)


def result_name(base: str, args) -> str:
    """``base`` for runs with the experiments' host-memory policy, ``base_host_default`` without it, so
    that the two never overwrite each other."""
    return base if args.host_memory == "reuse" else f"{base}_host_default"


def machine() -> dict:
    import jax

    from rnn_jax.host_memory import host_memory_state

    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": sys.version.split()[0], "jax": jax.__version__,
            "backend": jax.default_backend(), "host_memory": host_memory_state()}
    try:
        import torch

        info.update(torch=torch.__version__, torch_threads=torch.get_num_threads())
    except ImportError:
        info["torch"] = None
    try:
        import flax

        info["flax"] = flax.__version__
    except ImportError:
        info["flax"] = None
    return info


def interleaved(fns: dict, rounds: int, inner=1, min_sample_s: float = 0.02) -> dict:
    """Each round calls every zero-argument ``fn`` in turn: once untimed (so that switching from another
    framework, whose worker threads may still be busy, is not charged), then ``inner`` timed calls.
    ``inner="auto"``: as many calls as make one timed sample last about ``min_sample_s`` (sub-millisecond
    calls timed one at a time are at the mercy of the scheduler). The order rotates from round to
    round, so that no function always follows the same neighbour. Returns the median (and min)
    seconds per call over rounds."""
    times = {k: [] for k in fns}
    keys = list(fns)
    if inner == "auto":
        counts = {}
        for k in keys:
            t = time.perf_counter()
            fns[k]()
            counts[k] = max(1, min(100, int(min_sample_s / max(time.perf_counter() - t, 1e-6))))
    else:
        counts = {k: inner for k in keys}
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            fn = fns[k]
            fn()
            t = time.perf_counter()
            for _ in range(counts[k]):
                fn()
            times[k].append((time.perf_counter() - t) / counts[k])
    return {k: {"median_s": statistics.median(v), "min_s": min(v), "runs": len(v)} for k, v in times.items()}


def write_json(name: str, payload: dict) -> str:
    """Write ``results/NAME.json`` (or into ``$RNN_JAX_BENCH_OUT`` when set)."""
    out_dir = os.environ.get("RNN_JAX_BENCH_OUT") or os.path.join(os.path.dirname(__file__), "results")
    path = os.path.join(out_dir, f"{name}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=2)
    return path


def matmul_ceiling(n: int = 1024, rounds: int = 7) -> float:
    """GFLOP/s of a float32 (n, n) @ (n, n) product in jitted JAX: the machine's practical ceiling."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    t = interleaved({"mm": lambda: f(a).block_until_ready()}, rounds)["mm"]["median_s"]
    return 2 * n ** 3 / t / 1e9


def timed_once(fn) -> float:
    """Seconds of one call (the first call of a jitted function: compile included)."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t
