"""What does data parallelism over a device mesh cost or gain here? Training steps per second of the same
GRU model at the same global batch on meshes of 1, 2 and 4 devices.

    python -m benchmarks.data_parallel          # writes benchmarks/results/data_parallel.json

On a CPU-only machine the devices are XLA's virtual CPU devices
(``--xla_force_host_platform_device_count``, set here to 4 unless XLA_FLAGS says otherwise): they share
the machine's cores, so the table measures the overhead of splitting the batch and reducing the
gradients, and the parallelism XLA finds across virtual devices. It does not predict the speed-up on
several GPUs or hosts, where each device has its own compute.
"""
from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import argparse  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import rnn_jax as rj  # noqa: E402
from benchmarks import _harness  # noqa: E402
from rnn_jax import train  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--T", type=int, default=100)
    p.add_argument("--H", type=int, default=128)
    p.add_argument("--rounds", type=int, default=9)
    _harness.add_host_memory_flag(p)
    args = p.parse_args(argv)
    _harness.apply_host_memory(args)
    B, T, I, H = args.batch, args.T, 32, args.H
    model = rj.many_to_many(rj.rnn(rj.gru(H)), 1, input_size=I)
    params = model.init(jax.random.key(0))
    xs = np.random.default_rng(0).standard_normal((B, T, I)).astype(np.float32)
    ys = xs.sum(-1, keepdims=True)

    def loss_fn(params, batch):
        x, y = batch
        return jnp.mean((model.apply(params, x)[0] - y) ** 2), {}

    tx = train.optimizer("adam", 1e-3)
    fns, counts = {}, [n for n in (1, 2, 4) if n <= jax.device_count()]
    for n in counts:
        mesh = Mesh(np.array(jax.devices()[:n]), ("data",))
        step = train.make_step(loss_fn, tx)
        rep, split = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
        state = [jax.device_put(train.init_state(params, tx), rep)]
        batch = jax.device_put((xs, ys), split)

        def run(step=step, state=state, batch=batch):
            state[0], m = step(state[0], batch)
            m["loss"].block_until_ready()

        run()
        fns[f"data={n}"] = run
    timed = _harness.interleaved(fns, args.rounds, inner=3)
    base = timed["data=1"]["median_s"]
    rows = [{"mesh": k, "devices": int(k.split("=")[1]), "step_ms": 1e3 * v["median_s"],
             "steps_per_s": 1 / v["median_s"], "speedup_vs_1": base / v["median_s"]} for k, v in timed.items()]
    out = {"benchmark": "data_parallel", "machine": _harness.machine(), "devices": [str(d) for d in jax.devices()],
           "xla_flags": os.environ.get("XLA_FLAGS"), "B": B, "T": T, "I": I, "H": H, "cell": "gru",
           "dtype": "float32", "rounds": args.rounds, "rows": rows}
    path = _harness.write_json(_harness.result_name("data_parallel", args), out)
    print(f"GRU H={H}, T={T}, global batch {B}, Adam; {jax.device_count()} {jax.default_backend()} devices")
    print(f"{'mesh':<8}{'step ms':>10}{'steps/s':>10}{'vs 1':>8}")
    for r in rows:
        print(f"{r['mesh']:<8}{r['step_ms']:>10.2f}{r['steps_per_s']:>10.1f}{r['speedup_vs_1']:>8.2f}")
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
