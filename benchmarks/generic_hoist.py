"""Does the generic scan gain from taking the input products of all timesteps before the loop?

    python -m benchmarks.generic_hoist [--rounds 15]

A training step (value and gradient of a sum of squares, jitted) of ``rnn_jax.rnn(cell, fused=False)``,
which takes ``x_t @ W_i`` inside the loop, against the same recurrence written with the input product of
all steps taken first, as one ``(T*B, I) x (I, G*H)`` product, and only the recurrent part in the scan.
Elman and LSTM cells, B = 32, T = 100, I = 64, H = 128, float32, interleaved rounds; medians. Writes
``results/generic_hoist.json``. The generic scan has no hoisting option since this measurement (its
figures are in benchmarks/README.md); a cell's kernel (``Cell.fused``) decides for itself.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import rnn_jax as rj
from benchmarks import _harness

B, T, I, H = 32, 100, 64, 128


def _elman_recurrent(p, h, gx):
    h = jnp.tanh(gx + h @ p["W_h"])
    return h, h


def _lstm_recurrent(p, state, gx):
    h, c = state
    i, f, g, o = jnp.split(gx + h @ p["W_h"] + p["b_h"], 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    h = jax.nn.sigmoid(o) * jnp.tanh(c)
    return rj.LSTMState(h, c), h


CELLS = {"elman": (lambda: rj.elman(H), _elman_recurrent), "lstm": (lambda: rj.lstm(H), _lstm_recurrent)}


def steps(name):
    make, recurrent = CELLS[name]
    cell = make()
    params = cell.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I))
    layer = rj.rnn(cell, fused=False)
    step = jax.vmap(recurrent, in_axes=(None, 0, 0))

    def in_loop(p, x):
        return jnp.sum(layer.apply(p, x)[0] ** 2)

    def hoisted(p, x):
        gx = jnp.swapaxes(x, 0, 1) @ p["W_i"] + p["b_i"]  # (T, B, G*H): one product
        state0 = jax.tree.map(lambda a: jnp.zeros((B,) + a.shape, a.dtype), cell.initial_state())
        _, ys = jax.lax.scan(lambda s, g: step(p, s, g), state0, gx)
        return jnp.sum(ys ** 2)

    out = {}
    for label, fn in (("in_loop", in_loop), ("hoisted", hoisted)):
        f = jax.jit(jax.value_and_grad(fn))
        jax.block_until_ready(f(params, xs))
        out[label] = lambda f=f: jax.block_until_ready(f(params, xs))
    ref, got = jax.jit(in_loop)(params, xs), jax.jit(hoisted)(params, xs)
    assert abs(float(ref - got)) <= 1e-4 * abs(float(ref)), (name, float(ref), float(got))  # the same recurrence
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--rounds", type=int, default=15, help="timed rounds per case, interleaved; the median is reported")
    args = ap.parse_args(argv)
    rows = []
    print(f"{'cell':<8}{'in loop ms':>12}{'hoisted ms':>12}{'hoisted / in loop':>20}")
    for name in CELLS:
        t = _harness.interleaved(steps(name), args.rounds)
        a, b = t["in_loop"]["median_s"], t["hoisted"]["median_s"]
        rows.append({"cell": name, "in_loop_ms": 1e3 * a, "hoisted_ms": 1e3 * b, "hoisted_over_in_loop": b / a})
        print(f"{name:<8}{1e3 * a:>12.2f}{1e3 * b:>12.2f}{b / a:>20.2f}", flush=True)
    out = {"benchmark": "generic_hoist", "machine": _harness.machine(), "dtype": "float32", "mode": "fwd+bwd",
           "B": B, "T": T, "I": I, "H": H, "rounds": args.rounds, "rows": rows}
    print("wrote", _harness.write_json("generic_hoist", out))
    return out


if __name__ == "__main__":
    main()
