"""Worker for tests/test_distributed.py: a sweep of 2 learning rates x 2 seeds on a 4-device mesh
against the same four runs trained one by one. Prints the largest relative difference."""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import rnn_jax as rj  # noqa: E402
from rnn_jax import distributed, train  # noqa: E402

rng = np.random.default_rng(0)
xs = rng.standard_normal((16, 6, 3)).astype(np.float32)
ys = np.cumsum(xs.sum(-1), axis=1)[..., None].astype(np.float32)
model = rj.many_to_many(rj.rnn(rj.gru(8)), 1, input_size=3)


def loss_fn(params, batch):
    x, y = batch
    return jnp.mean((model.apply(params, x)[0] - y) ** 2), {}


settings = [{"learning_rate": 1e-2}, {"learning_rate": 3e-3}]
out_dir = sys.argv[1]
rows = train.sweep(loss_fn, model.init, optax.adam, settings, 2, lambda s: (xs, ys), 10,
                   mesh=distributed.make_mesh("data=4"), run_dir=out_dir, log_every=5)
worst = 0.0
for row in rows:
    one = train.fit(loss_fn, model.init(jax.random.key(row["seed"])), optax.adam(row["setting"]["learning_rate"]),
                    lambda s: (xs, ys), 10, progress=False, log_every=5)
    template = model.init(jax.random.key(0))
    saved, _ = train.load_checkpoint(os.path.join(out_dir, str(row["index"]), "params.msgpack"), template)
    for a, b in zip(jax.tree_util.tree_leaves(saved), jax.tree_util.tree_leaves(one.state.params)):
        worst = max(worst, float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max()))
print(json.dumps({"worst": worst, "n": len(rows), "devices": jax.device_count(),
                  "losses": [r["final_loss"] for r in rows]}))
