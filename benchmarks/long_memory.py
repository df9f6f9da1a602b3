"""What one update of the T = 5000 adding runs costs: rnn_jax beside the same model written in Flax.

    python -m benchmarks.long_memory            # writes benchmarks/results/long_memory.json
    python -m benchmarks.long_memory --quick    # T = 200 (a smoke test)

The models of ``experiments.long_range`` at T = 5000: two IndRNN layers of 128 (ReLU, ``|u| <= 2^(1/T)``)
with a linear head, batch 50 (Li et al. 2018's recipe), and two minGRU layers of 128 with a linear head
(batch 50 too). Flax: the same cells written as ``nn.RNNCellBase`` subclasses under ``nn.RNN`` (Flax
has neither; PyTorch's ``nn.RNN`` has neither cell either, so it is not in this table). Each: the
mean-squared error on the last output and its gradient with respect to every weight,
``jax.jit(jax.value_and_grad(...))``, float32, the two frameworks interleaved in one process, medians.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks import _harness

B, H = 50, 128


def rnn_jax_model(cell: str, T: int):
    import rnn_jax as rj

    if cell == "indrnn":
        bound = 2.0 ** (1.0 / T)
        layer = rj.stack(rj.rnn(rj.indrnn(H, recurrent_max=bound)), rj.rnn(rj.indrnn(H, recurrent_max=bound)))
    else:
        layer = rj.stack(rj.rnn(rj.min_gru(H)), rj.rnn(rj.min_gru(H)))
    model = rj.many_to_one(layer, 1, input_size=2)
    return model.init(jax.random.key(0)), lambda p, x: model.apply(p, x)[:, 0]


def flax_model(cell: str, T: int):
    import flax.linen as nn

    bound = 2.0 ** (1.0 / T)

    class Cell(nn.RNNCellBase):  # what nn.RNN needs of a cell with a state of `features` units
        features: int

        def initialize_carry(self, rng, input_shape):
            return jnp.zeros(input_shape[:-1] + (self.features,))

        @property
        def num_feature_axes(self):
            return 1

    class IndRNNCell(Cell):
        @nn.compact
        def __call__(self, h, x):
            u = self.param("u", nn.initializers.uniform(bound), (self.features,))
            h = nn.relu(nn.Dense(self.features)(x) + jnp.clip(u, -bound, bound)[None] * h)
            return h, h

    class MinGRUCell(Cell):
        @nn.compact
        def __call__(self, h, x):
            g = nn.Dense(2 * self.features, use_bias=False)(x)
            z = jax.nn.sigmoid(g[..., :self.features])
            h = (1 - z) * h + z * g[..., self.features:]
            return h, h

    make = IndRNNCell if cell == "indrnn" else MinGRUCell

    class Model(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = nn.RNN(make(H))(nn.RNN(make(H))(x))
            return nn.Dense(1)(y[:, -1])[:, 0]

    model = Model()
    return model.init(jax.random.key(0), jnp.zeros((B, T, 2))), model.apply


def fns(cell: str, T: int):
    x = jax.random.normal(jax.random.key(1), (B, T, 2), jnp.float32)
    y = jnp.ones((B,), jnp.float32)
    out = {}
    for name, make in (("rnn_jax", rnn_jax_model), ("flax", flax_model)):
        params, apply = make(cell, T)
        f = jax.jit(jax.value_and_grad(lambda p, apply=apply: jnp.mean((apply(p, x) - y) ** 2)))
        out[name] = (lambda f=f, params=params: jax.block_until_ready(f(params)))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--rounds", type=int, default=5)
    _harness.add_host_memory_flag(p)
    args = p.parse_args(argv)
    _harness.apply_host_memory(args)
    T = 200 if args.quick else 5000
    rows = []
    for cell in ("indrnn", "min_gru"):
        f = fns(cell, T)
        first = {k: _harness.timed_once(fn) for k, fn in f.items()}
        timed = _harness.interleaved(f, args.rounds)
        row = {"cell": cell, "T": T, "B": B, "H": H, "layers": 2,
               **{f"{k}_ms": 1e3 * v["median_s"] for k, v in timed.items()},
               **{f"{k}_first_call_s": v for k, v in first.items()}}
        row["rnn_jax_vs_flax"] = row["rnn_jax_ms"] / row["flax_ms"]
        rows.append(row)
        print(f"{cell:<8} T={T}  rnn_jax {row['rnn_jax_ms']:.1f} ms  flax {row['flax_ms']:.1f} ms  "
              f"ratio {row['rnn_jax_vs_flax']:.2f}", flush=True)
    name = _harness.result_name("long_memory" + ("_quick" if args.quick else ""), args)
    print("->", _harness.write_json(name, {"benchmark": "long_memory", "machine": _harness.machine(),
                                           "rounds": args.rounds, "rows": rows}))
    return None


if __name__ == "__main__":
    main()
