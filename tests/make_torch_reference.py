"""Regenerate tests/data/torch_reference.npz: PyTorch's outputs, states and gradients for every case in
tests/torch_cases.py, so that parity is tested without PyTorch installed.

    python tests/make_torch_reference.py        # needs torch==2.13.0 (pip install -e ".[torch]")
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from torch_cases import CASES, case_id, run_torch  # noqa: E402


def main():
    import torch

    arrays = {"torch_version": np.array(torch.__version__)}
    for case in CASES:
        sd, res = run_torch(case)
        cid = case_id(case)
        arrays.update({f"{cid}/sd/{k}": v for k, v in sd.items()})
        arrays.update({f"{cid}/res/{k}": v for k, v in res.items()})
    path = os.path.join(os.path.dirname(__file__), "data", "torch_reference.npz")
    np.savez_compressed(path, **arrays)
    print(f"wrote {len(CASES)} cases to {path} (torch {torch.__version__})")


if __name__ == "__main__":
    main()
