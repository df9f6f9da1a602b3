"""Time and peak memory of forward+backward against sequence length T (to 10^6) and hidden size H.

    python -m benchmarks.scaling            # writes benchmarks/results/scaling.json (about 10 minutes)
    python -m benchmarks.scaling --quick

Workload: an Elman (tanh) layer, batch B = 16, input size 1, loss = mean over the batch of
sum_t ||h_t||^2, gradient of every weight, float32. The loss is summed inside the loop by
:func:`rnn_jax.unroll_reduce`, so no ``(B, T, H)`` output is ever held; ``remat=k`` checkpoints the carry
every ``k ~ sqrt(T)`` steps (nested scans), without it every step's activations are kept for the
backward pass. Each setting runs in a fresh process: peak memory is that process's maximum resident
set size (``ru_maxrss``), reported beside the resident size of the same process just before compiling
(Python, JAX, the inputs). Time: compile apart, then the median of ``--repeats`` calls (one call for
T >= 10^5).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys

from benchmarks import _harness

B, I = 16, 1
T_GRID = [(10 ** 3, 256), (10 ** 4, 256), (10 ** 5, 256), (10 ** 6, 256)]
H_GRID = [(10 ** 4, 64), (10 ** 4, 128), (10 ** 4, 512), (10 ** 4, 1024)]
NO_REMAT_MAX_T = 10 ** 5  # beyond: every step's activations (>= 16 GB at T = 10^6) exceed this machine


def child(T, H, remat, repeats):
    """Runs in a fresh process; prints one JSON line."""
    import resource
    import time

    import jax
    import jax.numpy as jnp
    import numpy as np

    import rnn_jax as rj

    remat = remat or False  # 0 on the command line: no rematerialisation
    cell = rj.elman(H)
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float32)

    def loss(p, xs):
        total = rj.unroll_reduce(cell, p, xs, lambda y, _: jnp.sum(y * y), remat=remat)[0]  # over the batch
        return total / xs.shape[0]

    fn = jax.jit(jax.value_and_grad(loss))
    jax.block_until_ready(xs)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    t = time.perf_counter()
    compiled = fn.lower(params, xs).compile()
    compile_s = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        v, g = compiled(params, xs)
        jax.block_until_ready(g)
        times.append(time.perf_counter() - t)
    assert np.isfinite(float(v))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = float(np.median(times))
    print(json.dumps({"T": T, "H": H, "B": B, "remat": remat, "compile_s": compile_s, "seconds": s,
                      "us_per_step": 1e6 * s / T, "rss_before_mib": rss_before, "peak_rss_mib": peak,
                      "repeats": repeats, "loss": float(v)}))


def run(T, H, remat, repeats):
    cmd = [sys.executable, "-m", "benchmarks.scaling", "--child", f"{T},{H},{int(remat)},{repeats}"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    if p.returncode != 0:
        lines = [l for l in (p.stderr or p.stdout).strip().splitlines() if "Error" in l or "error" in l]
        return {"T": T, "H": H, "B": B, "remat": remat, "error": (lines or ["exit %d" % p.returncode])[-1][:300]}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes and few rounds: a smoke run")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    _harness.add_host_memory_flag(ap)
    args = ap.parse_args(argv)
    _harness.apply_host_memory(args)
    if args.child:
        T, H, remat, repeats = (int(v) for v in args.child.split(","))
        return child(T, H, remat, repeats)
    t_grid = [(300, 64), (3000, 64)] if args.quick else T_GRID
    h_grid = [] if args.quick else H_GRID
    rows = []
    print(f"{'T':>8}{'H':>6}{'remat':>7}{'compile s':>11}{'run s':>9}{'us/step':>9}{'RSS before':>12}{'peak RSS':>10}")
    for T, H in t_grid + h_grid:
        for remat in (0, int(math.isqrt(T))):
            if remat == 0 and T > NO_REMAT_MAX_T:
                continue
            r = run(T, H, remat, 1 if T >= 10 ** 5 or args.quick else 3)
            rows.append(r)
            if "error" in r:
                print(f"{T:>8}{H:>6}{remat:>7}  failed: {r['error']}", flush=True)
            else:
                print(f"{T:>8}{H:>6}{remat:>7}{r['compile_s']:>11.2f}{r['seconds']:>9.2f}{r['us_per_step']:>9.1f}"
                      f"{r['rss_before_mib']:>10.0f}Mi{r['peak_rss_mib']:>8.0f}Mi", flush=True)
    out = {"benchmark": "scaling", "machine": _harness.machine(), "dtype": "float32", "cell": "elman tanh",
           "B": B, "I": I, "mode": "fwd+bwd", "rows": rows}
    print("wrote", _harness.write_json(_harness.result_name("scaling_quick" if args.quick else "scaling", args), out))
    return out


if __name__ == "__main__":
    main()
