"""Parity with PyTorch nn.RNN (tanh, relu), nn.LSTM, nn.GRU: multi-layer, bidirectional, variable lengths
(packed sequences), batch_first. Float32, relative error (max |diff| / max |ref|) at most 1e-5.

The stored cases (tests/data/torch_reference.npz, made by tests/make_torch_reference.py) run everywhere;
the live cases need torch and also check the round trip to_torch(from_torch(module)).
"""
import importlib.util
import os

import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from torch_cases import CASES, H, I, T, case_id, relative_error, run_jax, run_torch

TOL = 1e-5
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="torch not installed (pip install -e '.[torch]'); "
                                 "parity is still checked against the stored PyTorch reference vectors")
REF = os.path.join(os.path.dirname(__file__), "data", "torch_reference.npz")


def _compare(ours, theirs, cid):
    assert set(ours) == set(theirs), cid
    errs = {k: relative_error(ours[k], theirs[k]) for k in theirs}
    bad = {k: v for k, v in errs.items() if v > TOL}
    assert not bad, f"{cid}: {bad}"
    return errs


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_stored_reference(case):
    data = np.load(REF)
    cid = case_id(case)
    sd = {k.split("/", 2)[2]: data[k] for k in data.files if k.startswith(f"{cid}/sd/")}
    theirs = {k.split("/", 2)[2]: data[k] for k in data.files if k.startswith(f"{cid}/res/")}
    assert sd and theirs, f"{cid} missing from {REF}: run tests/make_torch_reference.py"
    _compare(run_jax(case, sd), theirs, cid)


@needs_torch
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_live(case):
    sd, theirs = run_torch(case, seed=1)
    _compare(run_jax(case, sd, seed=1), theirs, case_id(case))


@needs_torch
@pytest.mark.parametrize("mode", ["RNN_TANH", "LSTM", "GRU"])
def test_from_torch_module_and_back(mode):
    import torch

    cls = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}.get(mode, torch.nn.RNN)
    torch.manual_seed(0)
    module = cls(I, H, num_layers=2, bidirectional=True, batch_first=True)
    layer, params = rj.interop.from_torch(module)
    x = np.random.default_rng(0).standard_normal((2, T, I)).astype(np.float32)
    ys, _ = layer.apply(params, jnp.asarray(x))
    ref = module(torch.tensor(x))[0].detach().numpy()
    assert relative_error(ys, ref) <= TOL
    # params -> a fresh module -> the same outputs
    torch.manual_seed(1)
    other = cls(I, H, num_layers=2, bidirectional=True, batch_first=True)
    assert relative_error(other(torch.tensor(x))[0].detach().numpy(), ref) > 1e-2
    rj.interop.to_torch(params, other)
    assert relative_error(other(torch.tensor(x))[0].detach().numpy(), ref) <= TOL


@needs_torch
def test_from_torch_rejects_unsupported_modules():
    import torch

    with pytest.raises(ValueError, match="proj_size"):
        rj.interop.from_torch(torch.nn.LSTM(I, H, proj_size=2))
    with pytest.raises(ValueError, match="expected torch.nn.RNN"):
        rj.interop.from_torch(torch.nn.Linear(I, H))


@needs_torch
def test_to_torch_refuses_to_drop_biases_a_module_without_them_cannot_hold():
    import torch

    module = torch.nn.GRU(I, H, bias=False, batch_first=True)
    _, params = rj.interop.from_torch(module)
    np.testing.assert_array_equal(params["b_i"], 0)  # from a module without biases: zeros, invented nowhere
    rj.interop.to_torch(params, module)  # zero biases: nothing is lost
    nonzero = dict(params, b_i=params["b_i"] + 0.1)
    with pytest.raises(ValueError, match=r"params\['b_i'\]: non-zero biases, but the module was built with bias=False"):
        rj.interop.to_torch(nonzero, module)
