"""Which input hoisting and scan unroll factor make the fused recurrences fastest?

    python -m benchmarks.choices            # hoist, fwd and fwd+bwd: results/choices.json
    python -m benchmarks.choices --unrolls 1,2,4,8 --hoist 1   # unroll: results/choices_unroll.json
    python -m benchmarks.choices --quick

Times ``jax.jit`` of the forward (loss = mean of squared outputs) and of forward+backward (gradient
of every weight) of ``rnn_jax.rnn(cell, hoist_input=..., unroll=...)`` called on a batch, all
settings of one size interleaved round by round, medians. The winners are what the fused
recurrences' ``hoist="auto"`` (:func:`rnn_jax.fused._hoist`) encodes for CPUs. (An earlier version
also timed a feature-major step layout, ``W_h^T @ h`` with states ``(H, B)``; it never won inside
the kernels and was deleted: the committed results/choices.json still holds those columns.)
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import rnn_jax as rj
from benchmarks import _harness
from benchmarks.throughput import GRID

CELLS = {"elman": rj.elman, "lstm": rj.lstm, "gru": rj.gru}


def name_of(setting):
    hoist, unroll, mode = setting
    return f"{'hoisted' if hoist else 'in-loop'}/u{unroll}/{mode}"


def settings_fns(cell_name, B, T, I, H, settings):
    x = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float32)
    fns = {}
    for setting in settings:
        hoist, unroll, mode = setting
        layer = rj.rnn(CELLS[cell_name](H), unroll=unroll, hoist_input=hoist)
        params = layer.init(jax.random.key(0), I)
        loss = (lambda p, x, layer=layer: jnp.mean(layer.apply(p, x)[0] ** 2))
        f = jax.jit(jax.value_and_grad(loss) if mode == "fwd+bwd" else loss)
        jax.block_until_ready(f(params, x))
        fns[name_of(setting)] = (lambda f=f, p=params: jax.block_until_ready(f(p, x)))
    return fns


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and few rounds: a smoke run")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per case, interleaved; the median is reported")
    p.add_argument("--cells", default="elman,lstm,gru", help=f"comma-separated, among {', '.join(CELLS)}")
    p.add_argument("--unrolls", default="1", help="comma-separated lax.scan unroll factors (ints >= 1)")
    p.add_argument("--hoist", default="1,0", help="1: hoisted, 0: in-loop")
    p.add_argument("--modes", default="fwd,fwd+bwd", help="comma-separated, among fwd, fwd+bwd")
    _harness.add_host_memory_flag(p)
    args = p.parse_args(argv)
    _harness.apply_host_memory(args)
    grid = [(1, 50, 16, 64), (16, 50, 32, 128)] if args.quick else GRID
    unrolls = [int(u) for u in args.unrolls.split(",")]
    hoists = [bool(int(h)) for h in args.hoist.split(",")]
    modes = args.modes.split(",")
    settings = [(h, u, m) for m in modes for h in hoists for u in unrolls]
    rows = []
    for cell in args.cells.split(","):
        for B, T, I, H in grid:
            timed = _harness.interleaved(settings_fns(cell, B, T, I, H, settings), args.rounds, inner="auto")
            for mode in modes:
                ms = {name_of(s)[:-len(mode) - 1]: 1e3 * timed[name_of(s)]["median_s"] for s in settings if s[2] == mode}
                best = min(ms, key=ms.get)
                rows.append({"cell": cell, "B": B, "T": T, "I": I, "H": H, "mode": mode, "ms": ms, "best": best})
                print(f"{cell:<6}{B:>4}{T:>6}{I:>5}{H:>5} {mode:<8}" + "  ".join(f"{k} {v:7.2f}" for k, v in ms.items())
                      + f"  best {best}", flush=True)
    out = {"benchmark": "choices", "machine": _harness.machine(), "dtype": "float32", "rounds": args.rounds,
           "rows": rows}
    name = "choices" if len(unrolls) == 1 else "choices_unroll"
    print("wrote", _harness.write_json(_harness.result_name(name + "_quick" if args.quick else name, args), out))
    return out


if __name__ == "__main__":
    main()
