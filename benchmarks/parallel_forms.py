"""Parallel (lax.associative_scan) against sequential (lax.scan) evaluation of the cells that are diagonal
linear recurrences, side by side.

    python -m benchmarks.parallel_forms [--quick] [--rounds 7]

A jitted forward+backward (value and gradient of a sum of squares) of ``rnn(cell)`` (the sequential scan)
and ``rnn(cell, parallel="linear")`` for minGRU and minLSTM at B = 16, I = H = 128, T in {100, 1000,
10000} (``--quick``: T in {100, 1000}, H = 32), float32, interleaved rounds, medians. Both forms compute
the same values; the script checks the losses agree before timing. Writes
``results/parallel_forms.json`` (``parallel_forms_quick.json``).
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import rnn_jax as rj
from benchmarks import _harness

B = 16
CELLS = {"min_gru": rj.min_gru, "min_lstm": rj.min_lstm}


def programs(name, T, H):
    cell = CELLS[name](H)
    params = cell.init(jax.random.key(0), H)
    xs = jax.random.normal(jax.random.key(1), (B, T, H))
    out, losses = {}, {}
    for label, layer in (("sequential", rj.rnn(cell)), ("parallel", rj.rnn(cell, parallel="linear"))):
        f = jax.jit(jax.value_and_grad(lambda p, x, layer=layer: jnp.mean(layer.apply(p, x)[0] ** 2)))
        losses[label] = float(jax.block_until_ready(f(params, xs))[0])
        out[label] = lambda f=f: jax.block_until_ready(f(params, xs))
    assert abs(losses["parallel"] - losses["sequential"]) <= 1e-4 * abs(losses["sequential"]), (name, T, losses)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rounds", type=int, default=None)
    args = ap.parse_args(argv)
    Ts, H = ((100, 1000), 32) if args.quick else ((100, 1000, 10_000), 128)
    rounds = args.rounds or (2 if args.quick else 7)
    rows = []
    print(f"{'cell':<10}{'T':>7}{'sequential ms':>15}{'parallel ms':>13}{'parallel / sequential':>23}")
    for name in CELLS:
        for T in Ts:
            t = _harness.interleaved(programs(name, T, H), rounds)
            seq, par = t["sequential"]["median_s"], t["parallel"]["median_s"]
            rows.append({"cell": name, "T": T, "H": H, "sequential_ms": 1e3 * seq, "parallel_ms": 1e3 * par,
                         "parallel_over_sequential": par / seq})
            print(f"{name:<10}{T:>7}{1e3 * seq:>15.2f}{1e3 * par:>13.2f}{par / seq:>23.2f}", flush=True)
    out = {"benchmark": "parallel_forms", "machine": _harness.machine(), "dtype": "float32", "mode": "fwd+bwd",
           "B": B, "I": H, "H": H, "rounds": rounds, "quick": args.quick, "rows": rows}
    print("wrote", _harness.write_json("parallel_forms_quick" if args.quick else "parallel_forms", out))
    return out


if __name__ == "__main__":
    main()
