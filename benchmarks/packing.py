"""What do packed steps save on a padded batch? The classifier's training step at three length spreads.

    python -m benchmarks.packing            # writes benchmarks/results/packing.json
    python -m benchmarks.packing --quick    # small sizes, two rounds (smoke test)

``benchmarks.train_step``'s many-to-one classifier (B=64, T=100, I=16, H=128, 10 classes, one Adam
step) for the Elman, LSTM and GRU cells, with lengths all ``T`` ("full"), drawn uniformly from
``[T/2, T]`` (train_step's own, "half") and from ``[1, T]`` ("any"), one sequence of length ``T`` in
each batch. Three steps, in one process, interleaved, medians: rnn_jax as it runs (packed steps,
:mod:`rnn_jax.fused`), rnn_jax with packing off (``rnn(cell, pack=False)``) and Flax linen. Each packed
step's first loss is checked against the unpacked one's before timing. ``valid`` is the fraction of the batch's ``B*T`` steps that lie within a length.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks import _harness
from benchmarks import train_step as ts
from rnn_jax import fused

SPREADS = {"full": lambda T: (T, T), "half": lambda T: (T // 2, T), "any": lambda T: (1, T)}


def data(s, spread, seed=0):
    """train_step's classifier batch ("half": exactly its own) with lengths drawn from the spread, the
    first one full."""
    x, lengths, y = ts.data("classifier", s, seed)
    if spread == "half":
        return x, lengths, y
    lo, hi = SPREADS[spread](s["T"])
    lengths = np.random.default_rng(seed + 1).integers(lo, hi + 1, s["B"]).astype(np.int32)
    lengths[0] = s["T"]
    return x, lengths, y


def steps(cell: str, s: dict, batch, path: str = "kernel") -> dict:
    """The three steps, each traced and run once (its first loss). ``path="generic"``: rnn_jax's generic
    scan (``fused=False``), packed with ``pack="always"``."""
    fns, first = {}, {}
    generic = path == "generic"
    for name, pack in (("packed", "always" if generic else True), ("unpacked", False)):
        fns[name] = ts.rnn_jax_step("classifier", cell, s, batch, pack=pack, fused=False if generic else None)
        first[name] = float(fns[name]())
    fns["flax"] = ts.flax_step("classifier", cell, s, batch)
    first["flax"] = float(fns["flax"]())
    if not np.isclose(first["packed"], first["unpacked"], rtol=1e-5):
        raise AssertionError(f"{cell}: packed first loss {first['packed']} != unpacked {first['unpacked']}")
    return fns


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and few rounds: a smoke run")
    p.add_argument("--rounds", type=int, default=None,
                   help="timed rounds per case, interleaved; the median is reported (None: the benchmark's own)")
    p.add_argument("--cells", default=",".join(ts.CELLS), help=f"comma-separated, among {', '.join(ts.CELLS)}")
    p.add_argument("--spreads", default=",".join(SPREADS),
                   help="comma-separated length spreads, among full (all T), half (T/2..T), any (1..T)")
    p.add_argument("--path", choices=("kernel", "generic"), default="kernel",
                   help="kernel: the cells' kernels, packed or not; generic: the generic scan (fused=False), packed "
                        "with pack='always' or not")
    _harness.add_host_memory_flag(p)
    args = p.parse_args(argv)
    _harness.apply_host_memory(args)
    s = dict(ts.QUICK["classifier"], B=fused.PACK_MIN_BATCH) if args.quick else ts.SIZES["classifier"]
    rounds = args.rounds or (2 if args.quick else 11)
    rows = []
    for cell in args.cells.split(","):
        for spread in args.spreads.split(","):
            batch = data(s, spread)
            t = time.perf_counter()
            fns = steps(cell, s, batch, args.path)
            timing = _harness.interleaved(fns, rounds, inner="auto")
            ms = {k: 1e3 * timing[k]["median_s"] for k in fns}
            row = {"cell": cell, "spread": spread, "sizes": s, "ms": ms,
                   "valid": float(np.sum(batch[1])) / (s["B"] * s["T"]),
                   "packed_vs_unpacked": ms["packed"] / ms["unpacked"], "packed_vs_flax": ms["packed"] / ms["flax"],
                   "unpacked_vs_flax": ms["unpacked"] / ms["flax"], "wall_s": time.perf_counter() - t}
            rows.append(row)
            print(f"{cell:<6}{spread:<5} valid {row['valid']:.2f}  " + "".join(f"{k} {v:7.2f} ms  " for k, v in ms.items())
                  + f"packed/unpacked {row['packed_vs_unpacked']:.2f}  packed/flax {row['packed_vs_flax']:.2f}  "
                  f"unpacked/flax {row['unpacked_vs_flax']:.2f}", flush=True)
    payload = {"benchmark": "packing", "path": args.path, "machine": _harness.machine(), "dtype": "float32",
               "rounds": rounds, "quick": args.quick, "rows": rows}
    base = "packing" + ("_generic" if args.path == "generic" else "") + ("_quick" if args.quick else "")
    path = _harness.write_json(_harness.result_name(base, args), payload)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
