"""Does a change alter the compiled program? This checkout against another, program by program.

    python -m benchmarks.same_program --other=../parent        # writes results/same_program_<name>.json

A refactor that leaves every lowered program the same (StableHLO text, source locations stripped) cannot
change speed: the size grid's timings of such a pair differ by noise alone. For each cell of the size
grid, each way of running its layers can be asked for with keywords both checkouts take (the default,
``fused=False``, ``parallel="linear"`` for the linear cells, ``reverse=True``), and B in {1, 64}, plus
single sequences under ``jax.vmap`` (B = 64; the kernels' JVP rule): the
program of ``jax.value_and_grad`` of a loss of ``layer.apply`` with lengths, lowered in a fresh process
of each checkout. Lists every program that differs; a differing one is what the size grid must time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = r'''
import json, sys, hashlib, re
import jax, jax.numpy as jnp
import rnn_jax as rj
CELLS = {"elman": rj.elman, "lstm": rj.lstm, "gru": rj.gru, "min_gru": rj.min_gru, "indrnn": rj.indrnn,
         "lru": rj.lru}
LINEAR = ("min_gru", "lru")
out = {}
for name, make in CELLS.items():
    variants = {"default": {}, "scan": {"fused": False}, "reverse": {"reverse": True}}
    if name in LINEAR:
        variants["linear"] = {"parallel": "linear"}
    for variant, kw in variants.items():
        for B in (1, 64):
            layer = rj.rnn(make(64), **kw)
            p = layer.init(jax.random.key(0), 32)
            xs = jnp.ones((B, 50, 32)); lengths = jnp.full((B,), 50).at[0].set(30)
            f = jax.jit(jax.value_and_grad(lambda p, xs: jnp.sum(layer.apply(p, xs, lengths)[0] ** 2)))
            if variant == "default" and B == 64:  # also single sequences under vmap: the kernels' JVP rule
                g = jax.jit(jax.value_and_grad(lambda p, xs: jnp.sum(jax.vmap(
                    lambda x, n: layer.apply(p, x, n)[0])(xs, lengths) ** 2)))
                text = re.sub(r"loc\([^)]*\)", "", g.lower(p, xs).as_text())
                text = "\n".join(l for l in text.splitlines() if not l.startswith("#loc"))
                out[f"{name} vmapped B={B}"] = hashlib.sha256(text.encode()).hexdigest()
            text = re.sub(r"loc\([^)]*\)", "", f.lower(p, xs).as_text())
            text = "\n".join(l for l in text.splitlines() if not l.startswith("#loc"))
            out[f"{name} {variant} B={B}"] = hashlib.sha256(text.encode()).hexdigest()
print(json.dumps(out))
'''


def programs(root: str) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(root))
    p = subprocess.run([sys.executable, "-c", WORKER], env=env, capture_output=True, text=True,
                       cwd=os.path.abspath(root))
    if p.returncode:
        raise SystemExit(f"lowering failed in {root}:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--other", required=True, help="the other checkout's root (a git worktree, say)")
    ap.add_argument("--name", default=None, help="results/same_program_<name>.json (default: the other's folder)")
    args = ap.parse_args(argv)
    this, other = programs(HERE), programs(args.other)
    rows = [{"program": k, "same": this[k] == other.get(k)} for k in this]
    for r in rows:
        print(f"{r['program']:28s} {'same' if r['same'] else 'DIFFERS'}")
    differ = [r["program"] for r in rows if not r["same"]]
    print(f"{len(rows) - len(differ)} of {len(rows)} programs the same as in {args.other}"
          + (f"; time these with benchmarks.compare: {differ}" if differ else ""))
    name = args.name or os.path.basename(os.path.abspath(args.other))
    path = os.path.join(HERE, "benchmarks", "results", f"same_program_{name}.json")
    with open(path, "w") as f:
        json.dump({"other": args.other, "rows": rows, "differ": differ}, f, indent=1)
    print("->", path)


if __name__ == "__main__":
    main()
