"""The linear forms (coefficients and outputs for all steps at once; the recurrence by lax.associative_scan
or by a sequential scan of the elementwise update) against the sequential scan of ``step``, for the cells
that are diagonal linear recurrences, side by side.

    python -m benchmarks.parallel_forms [--quick] [--rounds 7]

A jitted forward+backward (value and gradient of a sum of squares) of ``rnn(cell)`` (the scan of
``step``), ``rnn(cell, parallel="linear", linear_solver="associative")`` and ``linear_solver="scan"`` for
minGRU, minLSTM and LRU, and ``rnn(indrnn(H), parallel="diagonal")`` (DEER's exact Newton step for a
diagonal Jacobian) for IndRNN, at B = 16, I = H = 128, T in {100, 1000, 10000} (``--quick``: T = 100,
H = 32), float32, interleaved rounds, medians. All forms compute the same values; the script checks the
losses agree before timing. Writes
``results/parallel_forms.json`` (``parallel_forms_quick.json``).
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import rnn_jax as rj
from benchmarks import _harness

B = 16
CELLS = {"min_gru": rj.min_gru, "min_lstm": rj.min_lstm, "lru": rj.lru, "indrnn": rj.indrnn}
LINEAR = {"sequential": {}, "associative": dict(parallel="linear", linear_solver="associative"),
          "linear_scan": dict(parallel="linear", linear_solver="scan")}
# IndRNN is not linear; its Jacobian is diagonal, so DEER's diagonal method is its exact Newton step
FORMS = {"min_gru": LINEAR, "min_lstm": LINEAR, "lru": LINEAR,
         "indrnn": {"sequential": {}, "deer_diagonal": dict(parallel="diagonal")}}


def programs(name, T, H):
    cell = CELLS[name](H)
    params = cell.init(jax.random.key(0), H)
    xs = jax.random.normal(jax.random.key(1), (B, T, H))
    out, losses = {}, {}
    for label, kw in FORMS[name].items():
        layer = rj.rnn(cell, **kw)
        f = jax.jit(jax.value_and_grad(lambda p, x, layer=layer: jnp.mean(layer.apply(p, x)[0] ** 2)))
        losses[label] = float(jax.block_until_ready(f(params, xs))[0])
        out[label] = lambda f=f: jax.block_until_ready(f(params, xs))
    for label in FORMS[name]:
        assert abs(losses[label] - losses["sequential"]) <= 1e-4 * abs(losses["sequential"]), (name, T, losses)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and few rounds: a smoke run")
    ap.add_argument("--rounds", type=int, default=None,
                   help="timed rounds per case, interleaved; the median is reported (None: the benchmark's own)")
    args = ap.parse_args(argv)
    Ts, H = ((100,), 32) if args.quick else ((100, 1000, 10_000), 128)
    rounds = args.rounds or (2 if args.quick else 7)
    rows = []
    print(f"{'cell':<10}{'T':>7}  form: ms (/ sequential)")
    for name in CELLS:
        for T in Ts:
            t = _harness.interleaved(programs(name, T, H), rounds)
            seq = t["sequential"]["median_s"]
            row = {"cell": name, "T": T, "H": H}
            for form in FORMS[name]:
                row[f"{form}_ms"] = 1e3 * t[form]["median_s"]
                if form != "sequential":
                    row[f"{form}_over_sequential"] = t[form]["median_s"] / seq
            rows.append(row)
            print(f"{name:<10}{T:>7}  " + "   ".join(
                f"{form} {row[f'{form}_ms']:.2f}" + (f" ({row[f'{form}_over_sequential']:.2f})" if form != "sequential" else "")
                for form in FORMS[name]), flush=True)
    out = {"benchmark": "parallel_forms", "machine": _harness.machine(), "dtype": "float32", "mode": "fwd+bwd",
           "B": B, "I": H, "H": H, "rounds": rounds, "quick": args.quick, "rows": rows}
    print("wrote", _harness.write_json("parallel_forms_quick" if args.quick else "parallel_forms", out))
    return out


if __name__ == "__main__":
    main()
