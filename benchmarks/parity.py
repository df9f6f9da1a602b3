"""How close are rnn_jax's outputs and gradients to PyTorch's and Flax's? (float32)

    python -m benchmarks.parity        # writes benchmarks/results/parity.json

PyTorch: the 16 configurations of tests/torch_cases.py (RNN tanh/relu, LSTM, GRU x 1-2 layers x
uni/bidirectional, packed variable lengths), fresh weights; the error is max |rnn_jax - PyTorch| /
max |PyTorch| over outputs and final states, and over every weight's gradient. Flax: nn.RNN over
SimpleCell, LSTMCell, GRUCell (B=4, T=50) after rnn_jax.interop.from_flax.
"""
from __future__ import annotations

import os
import sys

import jax
import jax.numpy as jnp

import rnn_jax as rj
from benchmarks import _harness

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def torch_rows(seed=3):
    from torch_cases import CASES, case_id, relative_error, run_jax, run_torch

    rows = []
    for case in CASES:
        sd, theirs = run_torch(case, seed)
        ours = run_jax(case, sd, seed)
        err = {k: relative_error(ours[k], theirs[k]) for k in theirs}
        rows.append({"case": case_id(case), "outputs_states": max(v for k, v in err.items() if not k.startswith("grad.")),
                     "gradients": max(v for k, v in err.items() if k.startswith("grad."))})
    return rows


def flax_rows(B=4, T=50, I=4, H=6):
    import flax.linen as nn

    rows = []
    for name, make in {"SimpleCell": lambda: nn.SimpleCell(H), "LSTMCell": lambda: nn.LSTMCell(H),
                       "GRUCell": lambda: nn.GRUCell(H)}.items():
        m, key = make(), jax.random.key(0)
        v = m.init(key, m.initialize_carry(key, (I,)), jnp.ones((I,), jnp.float32))
        xs = jax.random.normal(key, (B, T, I), jnp.float32)
        ref = nn.RNN(m).apply({"params": {"cell": v["params"]}}, xs)
        cell, p = rj.interop.from_flax(m, v)
        ys, _ = rj.rnn(cell).apply(p, xs)
        rows.append({"cell": name, "outputs": float(jnp.abs(ys - ref).max() / jnp.abs(ref).max())})
    return rows


def main():
    out = {"benchmark": "parity", "machine": _harness.machine(), "dtype": "float32"}
    try:
        out["torch"] = torch_rows()
        print(f"{'PyTorch case':<24}{'outputs/states':>16}{'gradients':>12}")
        for r in out["torch"]:
            print(f"{r['case']:<24}{r['outputs_states']:>16.2e}{r['gradients']:>12.2e}")
        print(f"{'worst':<24}{max(r['outputs_states'] for r in out['torch']):>16.2e}"
              f"{max(r['gradients'] for r in out['torch']):>12.2e}\n")
    except ImportError:
        print("torch not installed: PyTorch parity skipped (pip install -e '.[torch]')")
    out["flax"] = flax_rows()
    for r in out["flax"]:
        print(f"Flax {r['cell']:<12} outputs {r['outputs']:.2e}")
    print(f"wrote {_harness.write_json('parity', out)}")


if __name__ == "__main__":
    main()
