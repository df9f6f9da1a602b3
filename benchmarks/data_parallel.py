"""What does data parallelism gain? One Adam step of the training-step benchmark's models (classifier,
character model, encoder-decoder; Elman, LSTM, GRU) with the batch on one device and split over two,
rnn_jax and Flax linen alike, in one process, interleaved, medians.

    python -m benchmarks.data_parallel          # writes benchmarks/results/data_parallel.json
    python -m benchmarks.tables data_parallel   # its table

The split is what ``rnn_jax.train.fit(..., mesh=make_mesh("data=2"))`` does: ``jax.jit`` on a batch
placed over a ``data`` mesh axis, the parameters replicated; the compiler partitions the program. Both
libraries get the same treatment (the same model code, the batch ``jax.device_put`` over the mesh).
Flax is also timed split by hand (``flax shard_map x2``): its loss inside ``jax.shard_map``, one
part of the batch per device, the mean of the two losses (exact here: every loss is a mean over equal
parts). Flax's ``nn.RNN`` needs ``check_vma=False`` there (its scan starts from a zero carry that the
checks reject); rnn_jax's models run under the default checks (tests/test_distributed.py).

On a CPU-only machine the devices are XLA's virtual CPU devices (``--xla_force_host_platform_device_count``,
set here to 2 unless XLA_FLAGS says otherwise). XLA:CPU runs one program's recurrence on one core, so
on a machine with two cores the second core is otherwise idle during the loops; on GPUs and several
hosts each device brings its own compute. Every split step is checked against the one-device step
(same loss to 1e-5) before it is timed.
"""
from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import argparse  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

from benchmarks import _harness  # noqa: E402
from benchmarks.train_step import CELLS, QUICK, SIZES, _jax_step, data, flax_loss, flax_step, rnn_jax_step  # noqa: E402

MAKERS = {"rnn_jax": rnn_jax_step, "flax": flax_step}


def flax_shard_map_step(model, cell, s, batch, mesh):
    """Flax's step with its loss computed per device inside ``jax.shard_map`` (``batch`` on ``mesh``)."""
    loss, params = flax_loss(model, cell, s, batch)
    split = tuple(P("data") for _ in batch)
    per_device = jax.shard_map(lambda p, *b: jax.lax.pmean(loss(p, *b), "data"), mesh=mesh,
                               in_specs=(P(), *split), out_specs=P(), check_vma=False)
    run = _jax_step(per_device, params)
    return lambda: run(*batch)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="tiny sizes, 2 rounds (a smoke test; writes data_parallel_quick.json)")
    p.add_argument("--rounds", type=int, default=None,
                   help="timed rounds per case, interleaved; the median is reported (None: the benchmark's own)")
    p.add_argument("--models", default=",".join(SIZES), help=f"comma-separated, among {', '.join(SIZES)}")
    p.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated, among {', '.join(CELLS)}")
    _harness.add_host_memory_flag(p)
    args = p.parse_args(argv)
    _harness.apply_host_memory(args)
    if jax.device_count() < 2:
        raise SystemExit(f"needs 2 devices, this process has {jax.device_count()} "
                         "(XLA_FLAGS=--xla_force_host_platform_device_count=2 on a CPU)")
    sizes = QUICK if args.quick else SIZES
    rounds = args.rounds or (2 if args.quick else 11)
    mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
    split = NamedSharding(mesh, P("data"))
    rows = []
    for model in args.models.split(","):
        s = sizes[model]
        for cell in args.cells.split(","):
            batch = data(model, s)
            on_two = tuple(jax.device_put(a, split) for a in batch)
            fns, first_loss, first_call_s = {}, {}, {}
            for lib, make in MAKERS.items():
                for n, b in ((1, batch), (2, on_two)):
                    key = f"{lib} x{n}"
                    fns[key] = make(model, cell, s, b)
                    t = time.perf_counter()
                    first_loss[key] = float(fns[key]())
                    first_call_s[key] = time.perf_counter() - t
                    fns[key]()  # the step's output state lies on the mesh: a second compilation
            key = "flax shard_map x2"
            fns[key] = flax_shard_map_step(model, cell, s, on_two, mesh)
            first_loss[key] = float(fns[key]())
            fns[key]()
            for one, two in (("rnn_jax x1", "rnn_jax x2"), ("flax x1", "flax x2"), ("flax x1", "flax shard_map x2")):
                a, b = first_loss[one], first_loss[two]
                if not abs(a - b) <= 1e-5 * max(1.0, abs(a)):
                    raise RuntimeError(f"{model} {cell}: {two}'s loss {b} differs from {one}'s {a}")
            timing = _harness.interleaved(fns, rounds, inner="auto", min_sample_s=0.15)
            ms = {k: 1e3 * v["median_s"] for k, v in timing.items()}
            row = {"model": model, "cell": cell, "sizes": s, "ms": ms, "first_call_s": first_call_s,
                   "rnn_jax_x2_vs_x1": ms["rnn_jax x2"] / ms["rnn_jax x1"],
                   "flax_x2_vs_x1": ms["flax x2"] / ms["flax x1"],
                   "rnn_jax_vs_flax_x1": ms["rnn_jax x1"] / ms["flax x1"],
                   "flax_shard_map_x2_vs_x1": ms["flax shard_map x2"] / ms["flax x1"],
                   "rnn_jax_vs_flax_x2": ms["rnn_jax x2"] / ms["flax x2"],
                   "rnn_jax_vs_flax_shard_map_x2": ms["rnn_jax x2"] / ms["flax shard_map x2"],
                   "rnn_jax_x2_vs_flax_x1": ms["rnn_jax x2"] / ms["flax x1"]}
            rows.append(row)
            print(f"{model:<11}{cell:<6}" + "".join(f"{k} {v:8.2f} ms  " for k, v in ms.items())
                  + f"rnn_jax x2/x1 {row['rnn_jax_x2_vs_x1']:.2f}  flax x2/x1 {row['flax_x2_vs_x1']:.2f}  "
                  f"rnn_jax/flax x2 {row['rnn_jax_vs_flax_x2']:.2f}  "
                  f"rnn_jax/flax shard_map x2 {row['rnn_jax_vs_flax_shard_map_x2']:.2f}", flush=True)
    payload = {"benchmark": "data_parallel", "machine": _harness.machine(), "devices": [str(d) for d in jax.devices()],
               "xla_flags": os.environ.get("XLA_FLAGS"), "dtype": "float32", "rounds": rounds, "quick": args.quick,
               "rows": rows}
    path = _harness.write_json("data_parallel_quick" if args.quick else _harness.result_name("data_parallel", args),
                               payload)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
