"""How fast is the per-step recurrent product in each form that XLA:CPU compiles differently?

    python -m benchmarks.step_product            # writes benchmarks/results/step_product.json
    python -m benchmarks.step_product --quick    # small sizes, one round (smoke test)

A recurrence does one small product per step: ``(B, H) @ (H, G*H)`` forward, ``(B, G*H) @ (G*H, H)``
backward. XLA:CPU hands a row-major product to YNNPACK; the same product with its left operand
stored transposed (the state carried as ``h^T (H, B)``, contracted over its first axis) is not
eligible for YNNPACK (``IsDotSupportedByYnn`` rejects a non-canonical left operand) and runs on
XLA's own GEMM. The fused kernels use the row-major form; this script measures, per size, a bare
T-step ``lax.scan`` of ``tanh(product)`` in both forms (the state's transpose included in the
transposed form), interleaved, medians, and records which forms the compiled program gave to
YNNPACK. benchmarks/README.md ("How rnn_jax is made fast") says what the numbers decided.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from jax import lax

from benchmarks import _harness

SIZES = [(64, 128, 1, 100), (64, 128, 3, 100), (64, 128, 4, 100), (32, 256, 3, 100), (16, 128, 3, 200),
         (16, 256, 4, 100), (64, 512, 3, 50), (64, 512, 4, 50)]  # (B, H, G, T)
QUICK = [(4, 8, 3, 5)]
FIRST = (((0,), (0,)), ((), ()))  # contract the left operand's first axis


def loops(B, H, G, T):
    """``{name: (compiled program, args)}``: forward and backward products, row-major and transposed."""
    k = jax.random.split(jax.random.key(0), 3)
    W = jax.random.normal(k[0], (H, G * H), jnp.float32) / (2 * H ** 0.5)
    W_T = jnp.asarray(W.T)  # (G*H, H), stored: the backward product's right operand
    h0 = jax.random.normal(k[1], (B, H), jnp.float32)
    d0 = jax.random.normal(k[2], (B, G * H), jnp.float32)
    steps = jnp.zeros((T,))

    def fwd_rows(W, h0):
        return lax.scan(lambda h, _: (jnp.tanh(h @ W)[:, :H], None), h0, steps)[0]

    def fwd_transposed(W, h0):
        return lax.scan(lambda hT, _: (jnp.tanh(lax.dot_general(hT, W, FIRST))[:, :H].T, None), h0.T, steps)[0].T

    def bwd_rows(W_T, d0):
        return lax.scan(lambda d, _: (jnp.tile(jnp.tanh(d @ W_T), (1, G)), None), d0, steps)[0]

    def bwd_transposed(W_T, d0):
        step = lambda dT, _: (jnp.tile(jnp.tanh(lax.dot_general(dT, W_T, FIRST)), (1, G)).T, None)  # noqa: E731
        return lax.scan(step, d0.T, steps)[0].T

    forms = {"fwd_rows": (fwd_rows, (W, h0)), "fwd_transposed": (fwd_transposed, (W, h0)),
             "bwd_rows": (bwd_rows, (W_T, d0)), "bwd_transposed": (bwd_transposed, (W_T, d0))}
    return {name: (jax.jit(f).lower(*a).compile(), a) for name, (f, a) in forms.items()}


def uses_ynnpack(compiled) -> bool:
    return "__ynn_fusion" in compiled.as_text()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and few rounds: a smoke run")
    p.add_argument("--rounds", type=int, default=None,
                   help="timed rounds per case, interleaved; the median is reported (None: the benchmark's own)")
    _harness.add_host_memory_flag(p)
    args = p.parse_args(argv)
    _harness.apply_host_memory(args)
    rounds = args.rounds or (1 if args.quick else 11)
    rows = []
    for B, H, G, T in QUICK if args.quick else SIZES:
        fs = loops(B, H, G, T)
        outs = {name: f(*a) for name, (f, a) in fs.items()}
        for d in ("fwd", "bwd"):  # both forms compute the same recurrence
            err = float(jnp.max(jnp.abs(outs[f"{d}_rows"] - outs[f"{d}_transposed"])))
            if err > 1e-4:
                raise SystemExit(f"{d} forms differ by {err} at {(B, H, G, T)}")
        timing = _harness.interleaved({n: (lambda f=f, a=a: jax.block_until_ready(f(*a))) for n, (f, a) in fs.items()},
                                      rounds, inner="auto", min_sample_s=0.05)
        ms = {n: 1e3 * timing[n]["median_s"] for n in fs}
        row = {"B": B, "H": H, "G": G, "T": T, "ms": ms, "ynnpack": {n: uses_ynnpack(f) for n, (f, _) in fs.items()},
               "fwd_transposed_vs_rows": ms["fwd_transposed"] / ms["fwd_rows"],
               "bwd_transposed_vs_rows": ms["bwd_transposed"] / ms["bwd_rows"],
               "fwd_rows_gflops": 2 * T * B * H * G * H / ms["fwd_rows"] / 1e6}
        rows.append(row)
        print(f"B={B:<3} H={H:<4} G={G} T={T:<4}" + "".join(f"{n} {v:7.2f} ms  " for n, v in ms.items())
              + f"transposed/rows fwd {row['fwd_transposed_vs_rows']:.2f} bwd {row['bwd_transposed_vs_rows']:.2f}",
              flush=True)
    payload = {"benchmark": "step_product", "machine": _harness.machine(), "dtype": "float32", "rounds": rounds,
               "quick": args.quick, "rows": rows}
    path = _harness.write_json(_harness.result_name("step_product_quick" if args.quick else "step_product", args),
                               payload)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
