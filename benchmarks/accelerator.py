"""The throughput and parallel-in-time comparisons on a GPU, PyTorch's cuDNN path as the reference.

    python -m benchmarks.accelerator        # writes benchmarks/results/accelerator.json

Needs a JAX with GPU support (``pip install -U "jax[cuda12]"``) and a CUDA build of PyTorch for the
cuDNN column (without one, rnn_jax is compared with Flax only). On a machine without a GPU it says so
and exits with status 0. Same workloads and timing rules as ``benchmarks.throughput`` and
``benchmarks.deer``; PyTorch's timed calls end with ``torch.cuda.synchronize()``.
"""
from __future__ import annotations

import argparse
import sys

import jax

from benchmarks import _harness, deer, throughput

GRID = throughput.GRID + [(256, 100, 128, 512), (64, 1000, 128, 1024)]


def gpu_available() -> bool:
    try:
        return any(d.platform == "gpu" for d in jax.devices())
    except RuntimeError:
        return False


def torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per case, interleaved; the median is reported")
    _harness.add_host_memory_flag(p)
    args = p.parse_args(argv)
    _harness.apply_host_memory(args)
    if not gpu_available():
        print(f"no GPU visible to JAX (backend: {jax.default_backend()}); nothing to measure. "
              "Install jax[cuda12] on a machine with an NVIDIA GPU and run again.")
        return 0
    frameworks = ["rnn_jax", "scan", "flax"]
    torch = torch_cuda()
    if torch is not None:
        frameworks.append("torch")
    else:
        print("PyTorch with CUDA not available: comparing with Flax only")
    rows = []
    for cell in ("elman", "lstm", "gru"):
        for B, T, I, H in GRID:
            rows += throughput.bench_size(cell, B, T, I, H, args.rounds, frameworks, device="cuda")
            print(rows[-1], flush=True)
    deer_rows = []
    for B, T, I, H in deer.GRID + [(16, 100000, 4, 8)]:
        fns, iters, first = deer.fns_for(B, T, I, H)
        timed = _harness.interleaved(fns, args.rounds)
        for mode in ("fwd", "fwd+bwd"):
            ms = {n: 1e3 * timed[(n, mode)]["median_s"] for n in ("scan", "newton", "diagonal")}
            deer_rows.append({"B": B, "T": T, "I": I, "H": H, "mode": mode, **ms, "iterations": iters})
            print(deer_rows[-1], flush=True)
    out = {"benchmark": "accelerator", "machine": _harness.machine(), "devices": [str(d) for d in jax.devices()],
           "dtype": "float32", "rounds": args.rounds, "rows": rows, "deer_rows": deer_rows}
    throughput.print_table(out)
    print("wrote", _harness.write_json(_harness.result_name("accelerator", args), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
