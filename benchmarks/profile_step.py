"""Where does one training step's time go? A phase-by-phase timeline of a ``benchmarks.train_step`` step.

    python -m benchmarks.profile_step --model classifier --cell gru --lib rnn_jax
    python -m benchmarks.profile_step --model classifier --cell gru --lib flax

Traces ``--steps`` calls of the jitted step with ``jax.profiler``, reads the trace back
(``jax.profiler.ProfileData``) and, for the step with the median wall time, lists the compiled
program's top-level operations in start order: the ``while`` loops (the recurrences) as single
entries (always listed), everything outside them on its own line (operations under ``--min-ms`` are
summed, not listed). Matrix products that XLA:CPU runs asynchronously are timed to their completion marker.
Operations of one step may overlap (XLA runs independent operations concurrently), so durations
need not add up to the wall time. Prints the table and writes
``results/profile_step_MODEL_CELL_LIB.json``. A profile slows the step it observes and one step is
noisy: ratios between libraries come from ``benchmarks.train_step``, not from here.
"""
from __future__ import annotations

import argparse
import glob
import statistics
import tempfile

import jax

from benchmarks import _harness
from benchmarks import train_step as ts

SKIP = ("$", "Pjit", "Common", "ThunkExecutor", "Threadpool", "ParseArguments", "Handle input", "Wait for",
        "Execute", "PjRt")


def events(trace_dir: str) -> list[tuple[int, int, str]]:
    path = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)[0]
    data = jax.profiler.ProfileData.from_file(path)
    return [(ev.start_ns, ev.start_ns + ev.duration_ns, ev.name)
            for plane in data.planes for line in plane.lines for ev in line.events]


def step_timeline(evs, min_ms: float) -> dict:
    """The median-wall step's top-level operations (see the module docstring). A step is what ran
    between the ends of two consecutive waits for completion; its wall time runs from its first
    operation's start to its last operation's end."""
    waits = sorted(b for a, b, n in evs if n.startswith("ThunkExecutor::Execute (wait"))
    windows = list(zip([min(a for a, b, n in evs)] + waits[:-1], waits))
    ops_of = [sorted((a, b, n) for a, b, n in evs if lo < a <= hi and not n.startswith(SKIP)) for lo, hi in windows]
    bounds = [(min(a for a, _, _ in o), max(b for _, b, _ in o)) for o in ops_of]
    walls = [b - a for a, b in bounds]
    k = walls.index(sorted(walls)[len(walls) // 2])
    (w0, w1), mine = bounds[k], ops_of[k]
    loops = [(a, b) for a, b, n in mine if n.startswith("while")]
    ends = {}
    for a, b, n in mine:
        if n.startswith("end: "):
            ends.setdefault(n[5:], []).append(b)
    ops, small = [], 0.0
    for a, b, n in mine:
        if n.startswith("end: "):
            continue
        if any(la <= a and b <= lb and (la, lb) != (a, b) for la, lb in loops):
            continue  # inside a recurrence: counted in its loop
        if n.startswith("dot"):  # an asynchronous product: to its completion marker
            b = max([b] + [e for e in ends.get(n, []) if e >= a][:1])
        ms = (b - a) / 1e6
        if ms < min_ms and not n.startswith("while"):  # the loops are always listed
            small += ms
            continue
        ops.append({"op": n, "start_ms": (a - w0) / 1e6, "ms": ms})
    in_loops = sum(o["ms"] for o in ops if o["op"].startswith("while"))
    return {"wall_ms": (w1 - w0) / 1e6, "walls_ms": [w / 1e6 for w in walls], "loops_ms": in_loops,
            "ops": ops, "small_ops_ms": small}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--model", default="classifier", choices=sorted(ts.SIZES), help="the train_step model to profile")
    p.add_argument("--cell", default="gru", choices=ts.CELLS, help="its recurrent cell")
    p.add_argument("--lib", default="rnn_jax", choices=("rnn_jax", "flax", "floor"),
                   help="the implementation: rnn_jax, Flax, or the matrix-product floor")
    p.add_argument("--steps", type=int, default=7, help="training steps profiled (an int >= 1)")
    p.add_argument("--min-ms", type=float, default=0.2, help="operations shorter than this (ms) are summed in one line")
    p.add_argument("--quick", action="store_true", help="train_step's small sizes")
    _harness.add_host_memory_flag(p)
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps: expected at least 1, got {args.steps}")
    _harness.apply_host_memory(args)
    s = (ts.QUICK if args.quick else ts.SIZES)[args.model]
    make = {"rnn_jax": ts.rnn_jax_step, "flax": ts.flax_step, "floor": ts.floor_step}[args.lib]
    run = make(args.model, args.cell, s, ts.data(args.model, s))
    for _ in range(3):
        run()
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            for _ in range(args.steps):
                run()
        tl = step_timeline(events(d), args.min_ms)
    print(f"{args.model} {args.cell} {args.lib}: median step {tl['wall_ms']:.2f} ms "
          f"(steps {', '.join(f'{w:.1f}' for w in tl['walls_ms'])}); while loops {tl['loops_ms']:.2f} ms")
    print(f"{'start ms':>9} {'ms':>7}  operation")
    for o in tl["ops"]:
        print(f"{o['start_ms']:9.2f} {o['ms']:7.2f}  {o['op']}")
    print(f"{'':9} {tl['small_ops_ms']:7.2f}  (operations under {args.min_ms} ms, summed)")
    payload = {"benchmark": "profile_step", "machine": _harness.machine(), "model": args.model, "cell": args.cell,
               "lib": args.lib, "sizes": s, "steps": args.steps, "median_step": tl,
               "median_of_steps_ms": statistics.median(tl["walls_ms"])}
    name = f"profile_step_{args.model}_{args.cell}_{args.lib}" + ("_quick" if args.quick else "")
    print("wrote", _harness.write_json(_harness.result_name(name, args), payload))
    return payload


if __name__ == "__main__":
    main()
