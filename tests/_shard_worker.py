"""Worker for tests/test_distributed.py: models split over two devices, in float64.

    XLA_FLAGS=--xla_force_host_platform_device_count=2 JAX_ENABLE_X64=1 python tests/_shard_worker.py [CELL ...]

Prints one JSON line: for every cell, the largest difference between each model run inside
``jax.shard_map`` (one part of the batch per device) and the same model on the whole batch, and, for a
data-parallel training step (``jax.jit`` on a batch split over the devices), the collective operations
of its compiled program and the largest difference of its gradients from the single-device ones.
"""
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P  # noqa: E402

import rnn_jax as rj  # noqa: E402

CELLS = {"elman": lambda: rj.elman(5), "lstm": lambda: rj.lstm(5), "gru": lambda: rj.gru(5),
         "jordan": lambda: rj.jordan(5, 2)}


def diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main(cells):
    assert jax.device_count() == 2 and jnp.zeros(()).dtype == jnp.float64
    mesh = Mesh(np.array(jax.devices()), ("data",))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 7, 3))
    L = np.array([7, 3, 5, 2], np.int32)
    src = rng.integers(0, 9, (4, 8)).astype(np.int32)
    tgt = rng.integers(2, 7, (4, 5)).astype(np.int32)
    y = rng.integers(0, 2, 4).astype(np.int32)
    xb = rng.standard_normal((40, 7, 3))  # 20 rows per device: packed steps (rnn_jax.fused)
    Lb = rng.integers(0, 8, 40).astype(np.int32)
    yb = rng.integers(0, 2, 40).astype(np.int32)
    split, whole = P("data"), P()

    def sharded(f, args, specs, out):
        return diff(jax.jit(jax.shard_map(f, mesh=mesh, in_specs=specs, out_specs=out))(*args), jax.jit(f)(*args))

    def grad_of(apply):  # inside shard_map: autodiff sums the per-device gradients of shared weights
        return lambda p, *a: jax.grad(lambda p: jnp.sum(jnp.sin(apply(p, *a))))(p)

    res = {"shard_map": {}, "data_parallel": {}}
    for name in cells:
        make = CELLS[name]
        one = rj.many_to_one(rj.rnn(make()), 2, input_size=3)
        seq = rj.many_to_many(rj.stack(rj.bidirectional(rj.rnn(make()), rj.rnn(make())),
                                       rj.rnn(make())), 2, input_size=3)
        ed = rj.encoder_decoder(rj.rnn(make()), make(), tgt_vocab=7, bos=0, eos=1, src_vocab=9, src_embed_size=4,
                                embed_size=4)
        layer = rj.rnn(make())
        mm = rj.many_to_many(layer, 2, input_size=3)
        p1, p2, p3, p4 = (m.init(jax.random.key(i), jnp.float64) for i, m in enumerate((one, seq, ed, mm)))
        seq_out = lambda p, x, L: seq.apply(p, x, L)[0]  # noqa: E731

        def from_constant(p, x, L):  # a given initial state that is the same on every device
            s0 = jax.tree.map(lambda a: jnp.full(x.shape[:1] + a.shape, 0.3, a.dtype), layer.initial_state(x.dtype))
            return mm.apply(p, x, L, s0)[0]

        tf = lambda p, s, l, t: ed.apply(p, s, l, t)  # noqa: E731
        d = {
            "many_to_one": sharded(one.apply, (p1, x, L), (whole, split, split), split),
            "many_to_one_grad": sharded(grad_of(one.apply), (p1, x, L), (whole, split, split), whole),
            "stack_bidirectional": sharded(seq_out, (p2, x, L), (whole, split, split), split),
            "stack_bidirectional_grad": sharded(grad_of(seq_out), (p2, x, L), (whole, split, split), whole),
            "given_initial_state": sharded(from_constant, (p4, x, L), (whole, split, split), split),
            "given_initial_state_grad": sharded(grad_of(from_constant), (p4, x, L), (whole, split, split), whole),
            "encoder_decoder_grad": sharded(grad_of(tf), (p3, src, L, tgt), (whole, split, split, split), whole),
            "greedy_decoding": sharded(lambda p, s, l: ed.generate(p, s, l, max_len=5), (p3, src, L),
                                       (whole, split, split), split),
            "packed_many_to_one": sharded(one.apply, (p1, xb, Lb), (whole, split, split), split),
            "packed_many_to_one_grad": sharded(grad_of(one.apply), (p1, xb, Lb), (whole, split, split), whole),
        }
        res["shard_map"][name] = d

        if name == "jordan":
            continue

        def loss(p, b):
            return rj.losses.softmax_cross_entropy(one.apply(p, b[0], b[1]), b[2], reduction="mean")

        step = jax.jit(jax.grad(loss))
        params = jax.device_put(p1, NamedSharding(mesh, whole))
        kinds = "all-gather|all-reduce|all-to-all|collective-permute|reduce-scatter"
        res["data_parallel"][name] = {}
        for what, batch in (("", (x, L, y)), ("packed_", (xb, Lb, yb))):
            on_mesh = tuple(jax.device_put(a, NamedSharding(mesh, split)) for a in batch)
            hlo = step.lower(params, on_mesh).compile().as_text()
            res["data_parallel"][name].update({
                what + "collectives": sorted(set(re.findall(rf"\s({kinds})(?:-start)?\(", hlo))),
                what + "grad": diff(step(params, on_mesh), step(p1, batch))})
    print(json.dumps(res))


if __name__ == "__main__":
    main(sys.argv[1:] or list(CELLS))
