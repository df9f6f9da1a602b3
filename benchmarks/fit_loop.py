"""What does ``fit``'s loop cost beyond its updates?

    python -m benchmarks.fit_loop                      # writes benchmarks/results/fit_loop.json
    python -m benchmarks.fit_loop --other=DIR          # also the same sizes with the rnn_jax of checkout DIR,
                                                       # in alternating processes (a change to fit against its parent)

Per size: ``fit`` for N updates with its default callbacks (log every 10, checkpoints off, no
evaluation, no progress), against the floor: the same jitted update (``rnn_jax.train.update``) called
N times in a bare Python loop that reads ``finite`` after each, as fit does. Microseconds per update,
median over rounds; fit's from its logged ``steps_per_s`` (each ``fit`` call compiles its update anew, and
its first update, which holds that, is left out of the rate), the bare loop's after a warm-up run. Sizes: the GRU
many-to-one at B=1 T=10 H=8 (dispatch-bound: the loop's own cost shows) and B=32 T=100 H=128.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

SIZES = [(1, 10, 8), (32, 100, 128)]
WORKER = r'''
import json, sys, time
import jax, jax.numpy as jnp, numpy as np
import rnn_jax as rj
from rnn_jax import train
B, T, H, N, rounds = map(int, sys.argv[1:6])
model = rj.many_to_one(rj.rnn(rj.gru(H)), 1, input_size=4)
xs = jax.random.normal(jax.random.key(0), (B, T, 4)); ys = xs.sum((1, 2))[:, None]
loss_fn = lambda p, b: (jnp.mean((model.apply(p, b[0]) - b[1]) ** 2), {})
tx = train.optimizer("adam", 1e-3)
p0 = model.init(jax.random.key(1))
fit = lambda: train.fit(loss_fn, p0, tx, lambda s: (xs, ys), N, log_every=10, checkpoint_every=10 ** 9, progress=False)
step = jax.jit(lambda st, b: train.update(loss_fn, tx, st, b)[:2], donate_argnums=0) if hasattr(train, "update") \
    else train.make_step(loss_fn, tx)
def bare():
    st = train.init_state(p0, tx)
    for s in range(N):
        st, m = step(st, (xs, ys))
        bool(m["finite"])
    return st
out = {"fit": [], "bare": []}
bare()
for _ in range(rounds):
    rates = [r["steps_per_s"] for r in fit().history if "steps_per_s" in r]  # the compiling update left out
    out["fit"].append(1e6 / float(np.median(rates)))
    t = time.perf_counter(); jax.block_until_ready(bare()); out["bare"].append((time.perf_counter() - t) / N * 1e6)
print(json.dumps(out))
'''


def run(root: str, size, n: int, rounds: int) -> dict:
    env = dict(os.environ, PYTHONPATH=root, XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
    p = subprocess.run([sys.executable, "-c", WORKER, *map(str, size), str(n), str(rounds)], env=env,
                       capture_output=True, text=True, check=True, cwd=root)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", default=None, help="a checkout whose rnn_jax to time beside this one")
    ap.add_argument("--sizes", default=None, help="B,T,H;B,T,H... (default: both sizes)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--processes", type=int, default=2, help="alternating processes per checkout")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "fit_loop.json"))
    args = ap.parse_args(argv)
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    roots = {"this": here} | ({"other": os.path.abspath(args.other)} if args.other else {})
    rows = []
    sizes = [tuple(map(int, z.split(","))) for z in args.sizes.split(";")] if args.sizes else SIZES
    for size in sizes:
        samples = {name: {"fit": [], "bare": []} for name in roots}
        for _ in range(args.processes):
            for name, root in roots.items():
                r = run(root, size, args.steps, args.rounds)
                for k in r:
                    samples[name][k] += r[k]
        row = {"B": size[0], "T": size[1], "H": size[2]}
        for name in roots:
            fit_us, bare_us = (sorted(samples[name][k])[len(samples[name][k]) // 2] for k in ("fit", "bare"))
            row[name] = {"fit_us": fit_us, "bare_us": bare_us, "loop_us": fit_us - bare_us,
                         "fit_range": [min(samples[name]["fit"]), max(samples[name]["fit"])]}
        rows.append(row)
        line = "  ".join(f"{n}: fit {row[n]['fit_us']:8.1f} us, bare {row[n]['bare_us']:8.1f} us, loop "
                         f"{row[n]['loop_us']:+7.1f} us" for n in roots)
        print(f"B={size[0]:3d} T={size[1]:4d} H={size[2]:4d}  {line}", flush=True)
    result = {"steps": args.steps, "rounds": args.rounds, "processes": args.processes, "other": args.other,
              "rows": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print("->", args.out)


if __name__ == "__main__":
    main()
