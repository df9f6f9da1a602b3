"""Run by tests/test_host_memory.py in a fresh process: page faults per training step of a GRU
classifier (``(64, 100, 16)`` batch, 128 units), before and after ``reuse_host_memory()``, and the loss
both ways. Prints one JSON line."""
import json
import resource

import jax
import numpy as np

import rnn_jax as rj
from rnn_jax import host_memory

model = rj.many_to_one(rj.rnn(rj.gru(128)), 10, input_size=16)
params = model.init(jax.random.key(0))
rng = np.random.default_rng(0)
xs = rng.standard_normal((64, 100, 16)).astype(np.float32)
lengths = rng.integers(50, 101, 64)
labels = rng.integers(0, 10, 64)


@jax.jit
def step(p):
    loss, g = jax.value_and_grad(
        lambda p: rj.losses.softmax_cross_entropy(model.apply(p, xs, lengths), labels, reduction="mean"))(p)
    return loss, jax.tree.map(lambda a, b: a - 0.1 * b, p, g)


def faults_per_step(n=10):
    step(params)[0].block_until_ready()
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        loss = step(params)[0].block_until_ready()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start) / n, float(loss)


before, loss_before = faults_per_step()
applied = host_memory.reuse_host_memory()
again = host_memory.reuse_host_memory()
faults_per_step()  # the heap grows once to hold the step's buffers
after, loss_after = faults_per_step()
print(json.dumps({"applied": applied, "again": again, "before": before, "after": after,
                  "state": host_memory.host_memory_state(), "losses": [loss_before, loss_after]}))
