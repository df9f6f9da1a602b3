"""How long does a deep bidirectional model take to compile, with the kernels and with the generic scan?

    python -m benchmarks.compile_time            # writes benchmarks/results/compile_time.json
    python -m benchmarks.compile_time --quick    # one small model, one process each (smoke test)

A jitted training step (value and gradient of every weight) of ``stack(bidirectional(rnn(cell),
rnn(cell)), bidirectional(rnn(cell), rnn(cell)))`` with a linear head, a batch with lengths
(B=32, T=100, I=32, H=128, float32), for the GRU, LSTM and Elman cells: the layers' kernels
(``Cell.fused``, the default) and the generic scan (``fused=False``). Each row is measured in a fresh
process (no compilation cache shared between rows): the time to trace and lower (``jax.jit(f).lower``),
the time to compile (``.compile()``), and one run of the compiled step. ``--repeats`` processes per row,
the median reported.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from benchmarks import _harness

CELLS = ("gru", "lstm", "elman")
SIZES = {"B": 32, "T": 100, "I": 32, "H": 128}
QUICK = {"B": 4, "T": 10, "I": 3, "H": 8}

_CHILD = """
import json, sys, time
import jax, jax.numpy as jnp
import rnn_jax as rj
cell_name, fused, s = sys.argv[1], sys.argv[2] == "kernel", json.loads(sys.argv[3])
cell = getattr(rj, cell_name)
def layer():
    return rj.rnn(cell(s["H"]), fused=None if fused else False)
def bi():
    return rj.bidirectional(layer(), layer())
model = rj.many_to_one(rj.stack(bi(), bi()), 10, input_size=s["I"])
params = model.init(jax.random.key(0))
xs = jax.random.normal(jax.random.key(1), (s["B"], s["T"], s["I"]))
lengths = jnp.linspace(s["T"] // 2, s["T"], s["B"]).astype(jnp.int32)
y = jnp.arange(s["B"]) % 10
loss = lambda p: rj.losses.softmax_cross_entropy(model.apply(p, xs, lengths), y, reduction="mean")
t0 = time.perf_counter(); lowered = jax.jit(jax.value_and_grad(loss)).lower(params)
t1 = time.perf_counter(); compiled = lowered.compile()
t2 = time.perf_counter(); jax.block_until_ready(compiled(params)); t3 = time.perf_counter()
print(json.dumps({"lower_s": t1 - t0, "compile_s": t2 - t1, "first_run_s": t3 - t2}))
"""


def measure(cell: str, path: str, sizes: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", _CHILD, cell, path, json.dumps(sizes)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one small GRU model, one process per row: a smoke run")
    p.add_argument("--repeats", type=int, default=3, help="fresh processes per row; the median is reported")
    p.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated, among {', '.join(CELLS)}")
    p.add_argument("--out", default=None, help="the JSON file's name in benchmarks/results (None: compile_time)")
    args = p.parse_args(argv)
    sizes, cells, repeats = (QUICK, ["gru"], 1) if args.quick else (SIZES, args.cells.split(","), args.repeats)
    rows = []
    print("| cell | path | lower s | compile s | first run s |\n|---|---|---|---|---|")
    for cell in cells:
        for path in ("kernel", "generic"):
            runs = [measure(cell, path, sizes) for _ in range(repeats)]
            row = {"cell": cell, "path": path, "sizes": sizes, "runs": runs,
                   **{k: statistics.median(r[k] for r in runs) for k in ("lower_s", "compile_s", "first_run_s")}}
            rows.append(row)
            print(f"| {cell} | {path} | {row['lower_s']:.2f} | {row['compile_s']:.2f} | {row['first_run_s']:.3f} |",
                  flush=True)
    name = args.out or ("compile_time_quick" if args.quick else "compile_time")
    path = _harness.write_json(name, {"machine": _harness.machine(), "model": "stack(bi, bi) + head",
                                      "repeats": repeats, "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                      "rows": rows})
    print("wrote", path)


if __name__ == "__main__":
    main()
