"""The JVP rule's tangent: hand-written per cell, or derived by the driver from ``jax.jvp`` of the step?

    python -m benchmarks.derived_tangent            # writes benchmarks/results/derived_tangent.json
    python -m benchmarks.derived_tangent --quick

A layer called on single sequences (so under ``jax.vmap``, the way per-example code runs) takes its
kernel's JVP rule (:mod:`rnn_jax.fused`), and ``jax.grad`` transposes it. Per cell and size, the
forward+backward time of ``jax.vmap`` over single sequences with the kernel's hand-written
``tangent_inputs``/``tangent`` and with the pair :func:`rnn_jax.fused.derived_tangent` makes from its
``step`` (the two equal to 1e-14 in float64, ``tests/test_fused.py``). Interleaved rounds in one
process, medians; ratio = derived / hand-written (above 1: the hand-written rule is kept, with this figure).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import jax
import jax.numpy as jnp

import rnn_jax as rj
from rnn_jax import fused

CELLS = {"elman": rj.elman, "lstm": rj.lstm, "gru": rj.gru, "indrnn": rj.indrnn}


def timed(f, *args, rounds: int) -> list:
    jax.block_until_ready(f(*args))
    out = []
    for _ in range(rounds):
        n, t0 = 0, time.perf_counter()
        while True:
            jax.block_until_ready(f(*args))
            n += 1
            if time.perf_counter() - t0 > 0.05:
                break
        out.append((time.perf_counter() - t0) / n * 1e3)
    return out


def case(name: str, B: int, T: int, H: int, rounds: int) -> dict:
    cell = CELLS[name](H)
    layer = rj.rnn(cell)
    p = layer.init(jax.random.key(0), H // 2)
    xs = jax.random.normal(jax.random.key(1), (B, T, H // 2), jnp.float32)
    lengths = jnp.full((B,), T)
    orig = fused.run

    def make(derived: bool):
        def loss(p, xs):
            ys, _ = jax.vmap(lambda x, n: layer.apply(p, x, n))(xs, lengths)
            return jnp.sum(ys ** 2)

        def traced(p, xs):
            fused.run = (lambda k, *a, **kw: orig(k._replace(tangent_inputs=None, tangent=None), *a, **kw)) \
                if derived else orig
            try:
                return jax.grad(loss)(p, xs)
            finally:
                fused.run = orig

        return jax.jit(traced)

    fs = {"hand": make(False), "derived": make(True)}
    samples = {k: [] for k in fs}
    for r in range(rounds):
        for k in (list(fs) if r % 2 == 0 else list(fs)[::-1]):
            samples[k] += timed(fs[k], p, xs, rounds=1)
    med = {k: statistics.median(v) for k, v in samples.items()}
    return {"cell": name, "B": B, "T": T, "H": H, "hand_ms": med["hand"], "derived_ms": med["derived"],
            "ratio": med["derived"] / med["hand"],
            "spread": max((max(v) - min(v)) / statistics.median(v) for v in samples.values())}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "derived_tangent.json"))
    args = ap.parse_args(argv)
    sizes = [(1, 100, 64), (8, 100, 64), (64, 100, 64), (8, 100, 256), (64, 100, 256)]
    if args.quick:
        sizes, args.rounds = [(2, 10, 8)], 2
    rows = []
    for name in CELLS:
        for B, T, H in sizes:
            row = case(name, B, T, H, args.rounds)
            rows.append(row)
            print(f"{name:7s} B={B:3d} T={T:4d} H={H:4d}  hand {row['hand_ms']:8.2f} ms  derived "
                  f"{row['derived_ms']:8.2f} ms  ratio {row['ratio']:.2f}  spread {row['spread']:.2f}", flush=True)
    with open(args.out, "w") as f:
        json.dump({"rounds": args.rounds, "device": jax.devices()[0].device_kind, "rows": rows}, f, indent=1)
    print("->", args.out)


if __name__ == "__main__":
    main()
