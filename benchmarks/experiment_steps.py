"""How long does a training step of each experiment take, in this checkout and in another one?

    python -m benchmarks.experiment_steps --other=/path/to/older/checkout   # before/after, side by side
    python -m benchmarks.experiment_steps                                  # this checkout only

Runs each experiment's ``--quick`` mode (its real models, data and training loop at a small budget),
alternating between the checkouts experiment by experiment, and reads the training throughput the
loop logs (``steps_per_s`` in every ``metrics.jsonl`` row, first logged row dropped: it holds the
compile). Reports the median milliseconds per step of each run and the ratio. The same Python
environment runs both checkouts (each from its own folder, so each imports its own ``rnn_jax``).
Writes ``results/experiment_steps.json`` (``--name`` to write another file).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile

from benchmarks import _harness

EXPERIMENTS = ("bit_reverse", "exploding", "classify", "char_lm", "translate", "generate", "long_range", "sentiment")
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def step_ms(checkout: str, name: str, extra: list[str]) -> dict:
    """Run ``python -m experiments.NAME --quick`` in ``checkout``; median ms per step over its logs."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", f"experiments.{name}", "--quick", f"--out={out}"] + extra
        proc = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True)
        if proc.returncode:
            return {"error": proc.stderr[-800:]}
        per_run = {}
        for path in glob.glob(os.path.join(out, "**", "metrics.jsonl"), recursive=True):
            rows = [json.loads(line) for line in open(path)]
            rates = [r["steps_per_s"] for r in rows if r.get("kind") == "train" and "steps_per_s" in r][1:]
            if rates:
                parts = os.path.relpath(os.path.dirname(path), out).split(os.sep)  # NAME/<time>/[run]
                per_run[os.sep.join(parts[2:]) or name] = 1e3 / statistics.median(rates)
        return {"ms_per_step": per_run}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--other", default=None, help="another checkout to time side by side (e.g. a git worktree)")
    p.add_argument("--experiments", default=",".join(EXPERIMENTS),
                   help=f"comma-separated, among {', '.join(EXPERIMENTS)}")
    p.add_argument("--name", default="experiment_steps",
                   help="results/NAME.json (a comparison of its own keeps its own file)")
    args = p.parse_args(argv)
    rows = []
    for name in args.experiments.split(","):
        row = {"experiment": name, "this": step_ms(HERE, name, [])}
        if args.other:
            row["other"] = step_ms(args.other, name, [])
            a, b = row["this"].get("ms_per_step", {}), row["other"].get("ms_per_step", {})
            row["ratio_this_over_other"] = {k: a[k] / b[k] for k in a if k in b}
        rows.append(row)
        print(json.dumps(row), flush=True)
    payload = {"benchmark": "experiment_steps", "machine": _harness.machine(), "other": args.other, "rows": rows}
    print("wrote", _harness.write_json(args.name, payload))


if __name__ == "__main__":
    main()
