"""The size grid: every built-in cell's layer, forward+backward, at every size, beside Flax and PyTorch.

    python -m benchmarks.grid                    # the whole grid; writes benchmarks/results/grid.json
    python -m benchmarks.grid --quick            # a few sizes (a smoke test, ~1 min)
    python -m benchmarks.grid --host_memory=reuse    # every framework under rnn_jax.reuse_host_memory()
    python -m benchmarks.grid --cells=gru --B=1  # a slice of it

Cells: Elman (tanh), LSTM, GRU (beside Flax's ``nn.RNN`` of ``SimpleCell/LSTMCell/GRUCell`` and PyTorch's
``nn.RNN/LSTM/GRU``), minGRU, IndRNN and LRU (rnn_jax alone: neither peer has them), each in its default
form. Sizes: B in {1, 8, 32, 64} x T in {100, 1000} x H in {64, 128, 256, 512}, I = H / 2; a size whose
gate products alone would take more than ~2 s a call on this machine (``MAX_GFLOP`` of forward+backward
work) is left out. Each size: ``loss = mean(ys ** 2)`` and its gradient with respect to every weight,
``jax.jit(jax.value_and_grad(...))`` (PyTorch: ``backward()``), float32, the frameworks timed in one
process, interleaved round by round after a warm-up; medians over rounds.

The grid is also what :mod:`benchmarks.compare` runs in two checkouts (``--worker``: rnn_jax alone, one
JSON line per size on stdout; it imports nothing from this checkout but rnn_jax, so it runs against any
commit's library).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

PEERS = ("elman", "lstm", "gru")          # the cells Flax and PyTorch have
CELLS = PEERS + ("min_gru", "indrnn", "lru")
BATCHES, LENGTHS, HIDDEN = (1, 8, 32, 64), (100, 1000), (64, 128, 256, 512)
QUICK = [("elman", 1, 100, 64), ("gru", 1, 1000, 128), ("lstm", 8, 100, 128), ("gru", 32, 100, 256),
         ("min_gru", 8, 100, 64), ("indrnn", 1, 1000, 64), ("lru", 8, 100, 64)]
GATES = {"elman": 1, "lstm": 4, "gru": 3}
MAX_GFLOP = 30.0  # forward+backward gate products; ~2 s a call at the 15 GFLOP/s one core sustains here


def gflop(cell, B, T, H):
    """Forward+backward GFLOP of the gate products (``3 x 2 B T G H (I + H)``; elementwise cells: 0)."""
    I = H // 2
    return 6 * B * T * GATES.get(cell, 0) * H * (I + H) / 1e9


def sizes(cells=CELLS, batches=BATCHES, lengths=LENGTHS, hidden=HIDDEN, max_gflop=MAX_GFLOP):
    """Every ``(cell, B, T, H)`` of the grid kept under ``max_gflop``."""
    return [(c, B, T, H) for c in cells for H in hidden for T in lengths for B in batches
            if gflop(c, B, T, H) <= max_gflop]


def _timed(fns: dict, rounds: int, min_sample_s: float = 0.05) -> dict:
    """Median seconds per call of each zero-argument function: each round calls every function once
    untimed, then enough times to fill ``min_sample_s``; the order rotates from round to round."""
    counts = {}
    for k, fn in fns.items():
        t = time.perf_counter()
        fn()
        counts[k] = max(1, min(50, int(min_sample_s / max(time.perf_counter() - t, 1e-6))))
    times, keys = {k: [] for k in fns}, list(fns)
    for r in range(rounds):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            fns[k]()
            t = time.perf_counter()
            for _ in range(counts[k]):
                fns[k]()
            times[k].append((time.perf_counter() - t) / counts[k])
    return {k: statistics.median(v) for k, v in times.items()}


def rnn_jax_fn(cell, x, H):
    import rnn_jax as rj

    layer = rj.rnn(getattr(rj, cell)(H))
    params = layer.init(jax.random.key(0), x.shape[-1])
    f = jax.jit(jax.value_and_grad(lambda p, x: jnp.mean(jnp.abs(layer.apply(p, x)[0]) ** 2)))
    return lambda: jax.block_until_ready(f(params, x))


def floor_fn(cell, x, H):
    """The products-only floor of a gated layer's forward+backward: the T forward products ``(B, H) @ (H,
    G*H)``, the T backward products ``(B, G*H) @ (G*H, H)`` and the input and weight-gradient products
    over all steps, with one tanh per step and nothing else: what no kernel built on XLA's products can
    beat."""
    from jax import lax

    B, T, I = x.shape
    G = GATES[cell]
    k1, k2 = jax.random.split(jax.random.key(0))
    W_i = jax.random.normal(k1, (I, G * H), x.dtype) / I ** 0.5
    W_h = jax.random.normal(k2, (H, G * H), x.dtype) / H ** 0.5

    @jax.jit
    def f(W_i, W_h, x):
        xs = jnp.swapaxes(x, 0, 1)                       # (T, B, I)
        gx = xs @ W_i                                    # the input products, all steps at once
        W_hT = W_h.T

        def fwd(h, g):
            h = jnp.tanh((g + h @ W_h).reshape(B, G, H).sum(1))  # every column of the product is read
            return h, h

        _, hs = lax.scan(fwd, jnp.zeros((B, H), x.dtype), gx)

        def bwd(d, h):
            dz = jnp.tile(d * h, (1, G))
            return dz @ W_hT, dz

        _, dZ = lax.scan(bwd, jnp.zeros((B, H), x.dtype), hs, reverse=True)
        dZ2 = dZ.reshape(-1, G * H)
        return hs.reshape(-1, H).T @ dZ2, xs.reshape(-1, I).T @ dZ2, dZ2 @ W_i.T

    return lambda: jax.block_until_ready(f(W_i, W_h, x))


def flax_fn(cell, x, H):
    import flax.linen as nn

    model = nn.RNN({"elman": nn.SimpleCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[cell](H))
    variables = model.init(jax.random.key(0), x)
    f = jax.jit(jax.value_and_grad(lambda v, x: jnp.mean(model.apply(v, x) ** 2)))
    return lambda: jax.block_until_ready(f(variables, x))


def torch_fn(cell, x, H):
    import torch

    torch.manual_seed(0)
    module = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell](x.shape[-1], H,
                                                                                   batch_first=True)
    xt = torch.tensor(np.asarray(x))

    def fb():
        module.zero_grad(set_to_none=True)
        loss = (module(xt)[0] ** 2).mean()
        loss.backward()
        return loss.item()

    return fb


MAKERS = {"rnn_jax": rnn_jax_fn, "flax": flax_fn, "torch": torch_fn, "floor": floor_fn}


def bench(cell, B, T, H, frameworks, rounds):
    """One size: ``{framework: milliseconds}`` (medians), the frameworks interleaved."""
    x = jax.random.normal(jax.random.key(1), (B, T, H // 2), jnp.float32)
    fws = [fw for fw in frameworks if fw == "rnn_jax" or cell in PEERS and (fw != "floor" or cell in GATES)]
    fns = {fw: MAKERS[fw](cell, x, H) for fw in fws}
    first = {}
    for fw, fn in fns.items():
        t = time.perf_counter()
        fn()
        first[fw] = time.perf_counter() - t
    ms = {fw: 1e3 * s for fw, s in _timed(fns, rounds).items()}
    row = {"cell": cell, "B": B, "T": T, "I": H // 2, "H": H, **{f"{fw}_ms": v for fw, v in ms.items()},
           **{f"{fw}_first_call_s": v for fw, v in first.items()}}
    for fw in fws:
        if fw not in ("rnn_jax", "floor"):
            row[f"rnn_jax_vs_{fw}"] = ms["rnn_jax"] / ms[fw]
    if "floor" in ms and "torch" in ms:
        row["floor_vs_torch"] = ms["floor"] / ms["torch"]
    return row


def _select(args):
    if args.quick:
        picked = QUICK
    else:
        ints = lambda s: tuple(int(v) for v in s.split(","))  # noqa: E731
        picked = sizes(tuple(args.cells.split(",")), ints(args.B), ints(args.T), ints(args.H), args.max_gflop)
    unknown = sorted({c for c, *_ in picked} - set(CELLS))
    if unknown:
        raise SystemExit(f"--cells: expected some of {','.join(CELLS)}, got {','.join(unknown)}")
    return picked


def parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="the QUICK sizes only")
    p.add_argument("--cells", default=",".join(CELLS), help=f"some of {','.join(CELLS)}")
    p.add_argument("--B", default=",".join(map(str, BATCHES)), help="batch sizes")
    p.add_argument("--T", default=",".join(map(str, LENGTHS)), help="sequence lengths")
    p.add_argument("--H", default=",".join(map(str, HIDDEN)), help="hidden sizes (I = H / 2)")
    p.add_argument("--rounds", type=int, default=5, help="interleaved timing rounds per size")
    p.add_argument("--max_gflop", type=float, default=MAX_GFLOP,
                   help=f"leave out sizes whose forward+backward gate products exceed this (default {MAX_GFLOP:g})")
    p.add_argument("--frameworks", default="rnn_jax,flax,torch",
                   help="some of rnn_jax,flax,torch,floor (floor: the products-only floor of the gated cells)")
    p.add_argument("--host_memory", choices=("default", "reuse"), default="default",
                   help="default: a process as a user starts it; reuse: rnn_jax.reuse_host_memory() "
                        "first (applies to every framework in the process alike)")
    p.add_argument("--worker", action="store_true", help="rnn_jax alone, one JSON line per size (for compare)")
    p.add_argument("--out", default=None, help="JSON file (default benchmarks/results/grid[_reuse][_quick].json)")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    picked = _select(args)
    if args.host_memory == "reuse":
        import rnn_jax as rj

        rj.reuse_host_memory()
    if args.worker:  # for benchmarks.compare: nothing but rnn_jax and the standard library
        for cell, B, T, H in picked:
            print(json.dumps(bench(cell, B, T, H, ("rnn_jax",), args.rounds)), flush=True)
        return None
    from benchmarks import _harness

    frameworks = tuple(args.frameworks.split(","))
    if "torch" in frameworks:
        import torch

        torch.set_num_threads(len(os.sched_getaffinity(0)))
    rows = []
    print(f"{'cell':<8}{'B':>4}{'T':>6}{'H':>5}{'rnn_jax ms':>12}{'/ flax':>9}{'/ torch':>9}", flush=True)
    for cell, B, T, H in picked:
        row = bench(cell, B, T, H, frameworks, args.rounds)
        rows.append(row)
        fmt = lambda k: f"{row[k]:>9.2f}" if k in row else f"{'-':>9}"  # noqa: E731
        print(f"{cell:<8}{B:>4}{T:>6}{H:>5}{row['rnn_jax_ms']:>12.2f}{fmt('rnn_jax_vs_flax')}"
              f"{fmt('rnn_jax_vs_torch')}", flush=True)
    name = "grid" + ("_reuse" if args.host_memory == "reuse" else "") + ("_quick" if args.quick else "")
    payload = {"benchmark": "grid", "machine": _harness.machine(), "host_memory": args.host_memory,
               "rounds": args.rounds, "max_gflop": MAX_GFLOP, "rows": rows, "summary": summary(rows)}
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(payload, f, indent=2)
        path = args.out
    else:
        path = _harness.write_json(name, payload)
    print(json.dumps(payload["summary"], indent=1))
    print(f"-> {path}")
    return payload


def summary(rows):
    """For each peer: how many sizes rnn_jax is slower at, the worst ratio and its size, the median ratio."""
    out = {}
    for peer in ("flax", "torch"):
        key = f"rnn_jax_vs_{peer}"
        have = [r for r in rows if key in r]
        if not have:
            continue
        worst = max(have, key=lambda r: r[key])
        out[peer] = {"sizes": len(have), "slower_at": sum(r[key] > 1.0 for r in have),
                     "median_ratio": statistics.median(r[key] for r in have), "worst_ratio": worst[key],
                     "worst_at": {k: worst[k] for k in ("cell", "B", "T", "H")},
                     "slower": [{k: r[k] for k in ("cell", "B", "T", "H", key)} for r in have if r[key] > 1.0]}
    return out


if __name__ == "__main__":
    main()
