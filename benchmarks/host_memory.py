"""Does keeping freed host memory (``rnn_jax.reuse_host_memory``) shorten training steps, and by how much?

    python -m benchmarks.host_memory            # writes benchmarks/results/host_memory.json
    python -m benchmarks.host_memory --quick    # small sizes, two rounds (smoke test)

The policy is process-wide and cannot be switched back (glibc's own policy adapts as it goes), so each
round starts two fresh processes, one per policy, in alternating order; each builds the
``benchmarks.train_step`` steps (rnn_jax and Flax, same sizes), times them interleaved and counts the
minor page faults per step (``getrusage``). Reported: per step, the median over rounds of each
process's median, and the ratio reuse/default. Both frameworks run under both policies: the policy
speeds up every JAX program in the process alike.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

from benchmarks import _harness

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASES = ("classifier:gru", "char_lm:gru", "seq2seq:gru", "classifier:elman", "classifier:lstm")


def parse_case(case: str, sizes: dict) -> tuple[str, str, dict]:
    """``model:cell`` or ``model:cell@K=V,...`` (sizes of ``benchmarks.train_step`` overridden)."""
    name, _, over = case.partition("@")
    model, cell = name.split(":")
    s = dict(sizes[model])
    for kv in filter(None, over.split(",")):
        k, v = kv.split("=")
        if k not in s:
            raise SystemExit(f"--cases: {case!r}: {model} has no size {k!r} (it has {', '.join(s)})")
        s[k] = int(v)
    return model, cell, s


def child(policy: str, cases: list[str], quick: bool, rounds: int) -> dict:
    """Run in a fresh process: time each case's rnn_jax and Flax steps under one policy."""
    from rnn_jax.host_memory import host_memory_state, reuse_host_memory

    if policy == "reuse" and not reuse_host_memory():
        raise SystemExit("reuse_host_memory() did not apply (not glibc?)")
    from benchmarks import train_step as ts

    sizes = ts.QUICK if quick else ts.SIZES
    out = {"host_memory": host_memory_state(), "cases": {}}
    for case in cases:
        model, cell, s = parse_case(case, sizes)
        batch = ts.data(model, s)
        fns = {"rnn_jax": ts.rnn_jax_step(model, cell, s, batch), "flax": ts.flax_step(model, cell, s, batch)}
        faults = {}
        for lib, fn in fns.items():
            fn()
            fn()
            start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            for _ in range(5):
                fn()
            faults[lib] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / 5
        timing = _harness.interleaved(fns, rounds, inner="auto")
        out["cases"][case] = {lib: {"ms": 1e3 * timing[lib]["median_s"], "faults_per_step": faults[lib]}
                              for lib in fns}
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and few rounds: a smoke run")
    p.add_argument("--rounds", type=int, default=None, help="process pairs (default 4; quick 1)")
    p.add_argument("--inner_rounds", type=int, default=None, help="interleaved rounds in each process (default 7)")
    p.add_argument("--cases", default=";".join(CASES),
                   help="model:cell[@K=V,...];... of benchmarks.train_step, sizes optionally overridden")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cases = args.cases.split(";")
    inner = args.inner_rounds or (2 if args.quick else 7)
    if args.child:
        print(json.dumps(child(args.child, cases, args.quick, inner)))
        return None
    rounds = args.rounds or (1 if args.quick else 4)
    runs = {"default": [], "reuse": []}
    for r in range(rounds):
        for policy in (("default", "reuse") if r % 2 == 0 else ("reuse", "default")):
            cmd = [sys.executable, "-m", "benchmarks.host_memory", f"--child={policy}", f"--cases={args.cases}",
                   f"--inner_rounds={inner}"] + (["--quick"] if args.quick else [])
            proc = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f"{policy} process failed:\n{proc.stderr[-2000:]}")
            runs[policy].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            print(f"round {r + 1}/{rounds} {policy}: " + "  ".join(
                f"{c} " + "/".join(f"{v['ms']:.1f}" for v in runs[policy][-1]["cases"][c].values())
                for c in cases), flush=True)
    rows = []
    for case in cases:
        for lib in ("rnn_jax", "flax"):
            med = {pol: statistics.median(run["cases"][case][lib]["ms"] for run in runs[pol]) for pol in runs}
            flt = {pol: statistics.median(run["cases"][case][lib]["faults_per_step"] for run in runs[pol])
                   for pol in runs}
            rows.append({"case": case, "lib": lib, "default_ms": med["default"], "reuse_ms": med["reuse"],
                         "reuse_over_default": med["reuse"] / med["default"],
                         "default_faults_per_step": flt["default"], "reuse_faults_per_step": flt["reuse"],
                         "default_ms_runs": [run["cases"][case][lib]["ms"] for run in runs["default"]],
                         "reuse_ms_runs": [run["cases"][case][lib]["ms"] for run in runs["reuse"]]})
    for r in rows:  # the rnn_jax row of each case carries rnn_jax/flax under both policies
        if r["lib"] == "rnn_jax":
            flax = next(f for f in rows if f["case"] == r["case"] and f["lib"] == "flax")
            r["rnn_jax_over_flax"] = {pol: r[f"{pol}_ms"] / flax[f"{pol}_ms"] for pol in runs}
    print(f"\n{'case':<18}{'lib':<9}{'default ms':>11}{'reuse ms':>10}{'reuse/def':>10}{'faults def':>12}{'faults reuse':>13}")
    for r in rows:
        print(f"{r['case']:<18}{r['lib']:<9}{r['default_ms']:>11.2f}{r['reuse_ms']:>10.2f}{r['reuse_over_default']:>10.2f}"
              f"{r['default_faults_per_step']:>12.0f}{r['reuse_faults_per_step']:>13.0f}")
    payload = {"benchmark": "host_memory", "machine": _harness.machine(), "rounds": rounds, "inner_rounds": inner,
               "quick": args.quick, "cases": cases, "rows": rows,
               "children": {pol: [run["host_memory"] for run in runs[pol]] for pol in runs}}
    if not args.quick:
        print("wrote", _harness.write_json("host_memory", payload))
    return payload


if __name__ == "__main__":
    main()
