"""Which step layout and scan unroll factor make the fused recurrences fastest, per cell and size?

    python -m benchmarks.choices            # writes benchmarks/results/choices.json
    python -m benchmarks.choices --quick

Times ``jax.jit`` of forward+backward (loss = mean of squared outputs, gradient of every weight) of
``rnn_jax.rnn(cell, layout=..., unroll=...)`` through ``apply_batch``, all settings of one size
interleaved round by round, medians. The winners are what :func:`rnn_jax.fused.choose_layout` and
:func:`rnn_jax.fused.choose_unroll` encode for CPUs.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import rnn_jax as rj
from benchmarks import _harness
from benchmarks.throughput import GRID

CELLS = {"elman": rj.elman, "lstm": rj.lstm, "gru": rj.gru}
LAYOUTS = ("batch", "feature")
UNROLLS = (1, 2, 4, 8)


def settings_fns(cell_name, B, T, I, H, settings):
    x = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float32)
    fns = {}
    for layout, unroll in settings:
        layer = rj.rnn(CELLS[cell_name](H), layout=layout, unroll=unroll)
        params = layer.init(jax.random.key(0), I)
        fb = jax.jit(jax.value_and_grad(lambda p, x, layer=layer: jnp.mean(rj.apply_batch(layer, p, x)[0] ** 2)))
        jax.block_until_ready(fb(params, x))
        fns[(layout, unroll)] = (lambda fb=fb, p=params: jax.block_until_ready(fb(p, x)))
    return fns


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--cells", default="elman,lstm,gru")
    args = p.parse_args(argv)
    grid = [(1, 50, 16, 64), (16, 50, 32, 128)] if args.quick else GRID
    settings = [(l, u) for l in LAYOUTS for u in UNROLLS]
    rows = []
    for cell in args.cells.split(","):
        for B, T, I, H in grid:
            timed = _harness.interleaved(settings_fns(cell, B, T, I, H, settings), args.rounds)
            ms = {f"{l}/u{u}": 1e3 * timed[(l, u)]["median_s"] for l, u in settings}
            best = min(ms, key=ms.get)
            rows.append({"cell": cell, "B": B, "T": T, "I": I, "H": H, "ms": ms, "best": best})
            print(f"{cell:<6}{B:>4}{T:>6}{I:>5}{H:>5}  " + "  ".join(f"{k} {v:7.2f}" for k, v in ms.items())
                  + f"  best {best}", flush=True)
    out = {"benchmark": "choices", "machine": _harness.machine(), "dtype": "float32", "mode": "fwd+bwd",
           "rounds": args.rounds, "rows": rows}
    print("wrote", _harness.write_json("choices_quick" if args.quick else "choices", out))
    return out


if __name__ == "__main__":
    main()
