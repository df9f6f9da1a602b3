"""Worker for tests/test_distributed.py: trains a small GRU regression with rnn_jax.train.fit.

    python tests/_dp_worker.py --mesh none|data=4|data=2,model=2 --out params.npz [--ckpt DIR]
        [--coordinator 127.0.0.1:PORT --num_processes 2 --process_id I]

Every process computes the same global batch indices and loads only its slice (process_slice).
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--mesh", default="none")
    p.add_argument("--out", required=True)
    p.add_argument("--ckpt", default=None)
    p.add_argument("--coordinator", default=None)
    p.add_argument("--num_processes", type=int, default=1)
    p.add_argument("--process_id", type=int, default=0)
    p.add_argument("--steps", type=int, default=12)
    args = p.parse_args()

    from rnn_jax import distributed
    distributed.initialize(args.coordinator, args.num_processes, args.process_id)

    import jax
    import jax.numpy as jnp
    import rnn_jax as rj
    from rnn_jax import train

    n, B, T, I = 64, 16, 6, 3
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((n, T, I)).astype(np.float32)
    ys = np.cumsum(xs.sum(-1), axis=1)[..., None].astype(np.float32)
    model = rj.many_to_many(rj.rnn(rj.gru(8)), 1, input_size=I)
    params = model.init(jax.random.key(0))

    def loss_fn(params, batch):
        x, y = batch
        pred = model.apply(params, x)[0]
        return jnp.mean((pred - y) ** 2), {}

    idx = train.epoch_batches(n, B, jax.random.key(1))
    mine = distributed.process_slice(B)

    def batch_fn(step):
        i = idx(step)[mine]  # this process loads only its part of the global batch
        return xs[i], ys[i]

    mesh = None if args.mesh == "none" else distributed.make_mesh(args.mesh)
    res = train.fit(loss_fn, params, train.optimizer("adam", 1e-2), batch_fn, args.steps, mesh=mesh,
                    run_dir=args.ckpt, progress=False, checkpoint_every=args.steps)
    flat = {jax.tree_util.keystr(k): distributed.to_host(v)
            for k, v in jax.tree_util.tree_flatten_with_path(res.state.params)[0]}
    np.savez(args.out, **flat)
    print(f"process {jax.process_index()}/{jax.process_count()} devices {jax.device_count()} "
          f"final loss {res.history[-1]['loss']:.6f}", flush=True)


if __name__ == "__main__":
    main()
