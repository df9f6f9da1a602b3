"""This checkout against another, on the size grid: every size where this one is slower.

    git worktree add ../parent HEAD~1                      # the commit to compare against
    python -m benchmarks.compare --other=../parent         # the whole grid, 3 rounds
    python -m benchmarks.compare --other=../parent --quick
    python -m benchmarks.compare --other=../parent --cells=gru,lstm --B=1,8

Each round runs :mod:`benchmarks.grid`'s worker (rnn_jax alone) once in a process of this checkout's
library and once in a process of the other's, alternating which goes first; the grid script is this
checkout's in both, so any commit can be compared, one that predates the grid too. Per size and
checkout: the median over rounds and the noise, the spread between rounds (max - min) over the
median. A size is listed as slower when this checkout's median exceeds the other's by more than 5 % and
more than the larger of the two noises. Writes ``benchmarks/results/compare_<name>.json`` (``--name``).
Contributors: every commit that touches the hot path (cells, fused, unroll, layers, models) runs this
against its parent and quotes the result.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from benchmarks import grid

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THRESHOLD = 0.05


def run_worker(root: str, grid_args: list) -> dict:
    """One process of the grid's worker against the library in ``root``: ``{size: ms}``."""
    env = dict(os.environ, PYTHONPATH=os.path.abspath(root))
    out = subprocess.run([sys.executable, os.path.join(HERE, "benchmarks", "grid.py"), "--worker", *grid_args],
                         env=env, capture_output=True, text=True, cwd=os.path.abspath(root))
    if out.returncode:
        raise SystemExit(f"the grid's worker failed in {root}:\n{out.stderr[-3000:]}")
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    return {(r["cell"], r["B"], r["T"], r["H"]): r["rnn_jax_ms"] for r in rows}


def verdicts(this: list, other: list, threshold: float = THRESHOLD) -> list:
    """Rows for every size in both: medians, noises, ratio, and ``slower`` (this checkout)."""
    rows = []
    for size in this[0]:
        if not all(size in r for r in this + other):
            continue
        a, b = [r[size] for r in this], [r[size] for r in other]
        ma, mb = statistics.median(a), statistics.median(b)
        noise = max((max(a) - min(a)) / ma, (max(b) - min(b)) / mb)
        ratio = ma / mb
        rows.append({"cell": size[0], "B": size[1], "T": size[2], "H": size[3], "this_ms": ma, "other_ms": mb,
                     "ratio": ratio, "noise": noise, "slower": ratio - 1 > max(threshold, noise),
                     "faster": 1 - ratio > max(threshold, noise)})
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--other", required=True, help="the other checkout's root (a git worktree, say)")
    p.add_argument("--rounds", type=int, default=3, help="processes per checkout (alternating)")
    p.add_argument("--name", default=None, help="results/compare_<name>.json (default: the other's folder name)")
    p.add_argument("--quick", action="store_true")
    for flag in ("cells", "B", "T", "H"):
        p.add_argument(f"--{flag}", default=None)
    p.add_argument("--timing_rounds", type=int, default=3, help="timing rounds inside each process")
    args = p.parse_args(argv)
    if not os.path.isdir(os.path.join(args.other, "rnn_jax")):
        raise SystemExit(f"--other: expected a checkout of rnn_jax (a folder with rnn_jax/ in it), got {args.other!r}")
    grid_args = ["--quick"] if args.quick else []
    grid_args += [f"--{k}={getattr(args, k)}" for k in ("cells", "B", "T", "H") if getattr(args, k)]
    grid_args += [f"--rounds={args.timing_rounds}"]
    this, other = [], []
    for r in range(args.rounds):
        order = [(HERE, this), (args.other, other)]
        for root, acc in (order if r % 2 == 0 else order[::-1]):
            acc.append(run_worker(root, grid_args))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    rows = verdicts(this, other)
    print(f"{'cell':<8}{'B':>4}{'T':>6}{'H':>5}{'this ms':>10}{'other ms':>10}{'ratio':>7}{'noise':>7}")
    for r in rows:
        mark = "  SLOWER" if r["slower"] else ("  faster" if r["faster"] else "")
        print(f"{r['cell']:<8}{r['B']:>4}{r['T']:>6}{r['H']:>5}{r['this_ms']:>10.2f}{r['other_ms']:>10.2f}"
              f"{r['ratio']:>7.2f}{r['noise']:>7.2f}{mark}")
    slower = [r for r in rows if r["slower"]]
    print(f"{len(slower)} of {len(rows)} sizes slower than {args.other} by more than the noise and "
          f"{THRESHOLD:.0%}; {sum(r['faster'] for r in rows)} faster")
    commit = lambda root: subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],  # noqa: E731
                                         capture_output=True, text=True).stdout.strip() or None
    payload = {"benchmark": "compare", "this": commit(HERE), "other": commit(args.other),
               "other_dir": os.path.abspath(args.other), "rounds": args.rounds, "threshold": THRESHOLD,
               "grid_args": grid_args, "rows": rows, "slower": len(slower)}
    from benchmarks import _harness

    payload["machine"] = _harness.machine()
    name = args.name or os.path.basename(os.path.abspath(args.other))
    print(f"-> {_harness.write_json(f'compare_{name}', payload)}")
    return payload


if __name__ == "__main__":
    main()
    sys.exit(0)
