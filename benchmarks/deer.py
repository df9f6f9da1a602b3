"""Parallel-in-time (DEER) evaluation against the sequential scan: when does it pay?

    python -m benchmarks.deer               # writes benchmarks/results/deer.json
    python -m benchmarks.deer --quick

A GRU over a batch of random sequences, float32; forward (outputs) and forward+backward
(loss = mean of squared outputs, gradient of every weight). Implementations: ``scan`` (the generic
unroller, ``rnn_jax.unroll``), ``newton`` and ``diagonal`` (``rnn_jax.parallel.deer``), timed in the
same process, interleaved round by round, medians; the Newton iteration counts are reported. On a CPU
the parallel form does more arithmetic than the scan (Jacobians, log T levels of products) on cores
that the scan already keeps busy, so expect it to lose; it is meant for accelerators
(``python -m benchmarks.accelerator``).
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import rnn_jax as rj
from benchmarks import _harness
from rnn_jax import parallel

GRID = [(16, 1000, 4, 8), (16, 1000, 4, 32), (16, 10000, 4, 8), (1, 10000, 4, 32)]  # (B, T, I, H)
QUICK = [(4, 200, 4, 8)]


def fns_for(B, T, I, H):
    cell = rj.gru(H)
    params = cell.init(jax.random.key(0), I)
    x = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float32)
    runs = {
        "scan": lambda p, x: rj.unroll(cell, p, x)[0],
        "newton": lambda p, x: parallel.deer(cell, p, x, method="newton")[0],
        "diagonal": lambda p, x: parallel.deer(cell, p, x, method="diagonal", max_iters=500)[0],
    }
    fns, iters, first = {}, {}, {}
    for name, run in runs.items():
        fwd = jax.jit(run)  # every function takes the batch (B, T, I)
        fb = jax.jit(jax.value_and_grad(lambda p, x, run=run: jnp.mean(run(p, x) ** 2)))
        for mode, f in (("fwd", fwd), ("fwd+bwd", fb)):
            fn = (lambda f=f: jax.block_until_ready(f(params, x)))
            first[(name, mode)] = _harness.timed_once(fn)
            fns[(name, mode)] = fn
        if name != "scan":
            info = jax.jit(lambda x, name=name: parallel.deer(cell, params, x, method=name, max_iters=500)[2])(x)
            iters[name] = {"max": int(info.iterations.max()), "mean": float(info.iterations.mean()),
                           "converged": bool(info.converged.all())}
    return fns, iters, first


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and few rounds: a smoke run")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per case, interleaved; the median is reported")
    _harness.add_host_memory_flag(p)
    args = p.parse_args(argv)
    _harness.apply_host_memory(args)
    rows = []
    print(f"{'B':>4}{'T':>7}{'H':>5} {'mode':<8}{'scan ms':>10}{'newton ms':>11}{'diag ms':>10}{'newton/scan':>12}"
          f"{'diag/scan':>10}  iterations (newton, diagonal)")
    for B, T, I, H in (QUICK if args.quick else GRID):
        fns, iters, first = fns_for(B, T, I, H)
        timed = _harness.interleaved(fns, args.rounds, inner="auto")
        for mode in ("fwd", "fwd+bwd"):
            ms = {n: 1e3 * timed[(n, mode)]["median_s"] for n in ("scan", "newton", "diagonal")}
            row = {"cell": "gru", "B": B, "T": T, "I": I, "H": H, "mode": mode,
                   **{f"{n}_ms": v for n, v in ms.items()},
                   **{f"{n}_first_call_s": first[(n, mode)] for n in ("scan", "newton", "diagonal")},
                   "newton_over_scan": ms["newton"] / ms["scan"], "diagonal_over_scan": ms["diagonal"] / ms["scan"],
                   "iterations": iters}
            rows.append(row)
            print(f"{B:>4}{T:>7}{H:>5} {mode:<8}{ms['scan']:>10.2f}{ms['newton']:>11.2f}{ms['diagonal']:>10.2f}"
                  f"{row['newton_over_scan']:>12.2f}{row['diagonal_over_scan']:>10.2f}  "
                  f"{iters['newton']['max']}, {iters['diagonal']['max']}", flush=True)
    out = {"benchmark": "deer", "machine": _harness.machine(), "dtype": "float32", "rounds": args.rounds,
           "rows": rows}
    print("wrote", _harness.write_json(_harness.result_name("deer_quick" if args.quick else "deer", args), out))
    return out


if __name__ == "__main__":
    main()
