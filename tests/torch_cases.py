"""PyTorch parity cases: one configuration grid, run in PyTorch (live or stored) and in rnn_jax.

Each case: a module config, a padded batch with lengths (PyTorch reads it packed with
``pack_padded_sequence``), and a scalar loss of the outputs and final states with fixed random
weights. Compared: outputs, final h (and c), and the gradient of the loss with respect to every
weight, in PyTorch's state-dict naming.
"""
import itertools

import jax
import jax.numpy as jnp
import numpy as np

import rnn_jax as rj

B, T, I, H = 3, 7, 4, 5
LENGTHS = np.array([7, 4, 1])

CASES = [dict(mode=m, num_layers=L, bidirectional=bi, batch_first=bool((L + bi) % 2))
         for m, L, bi in itertools.product(["RNN_TANH", "RNN_RELU", "LSTM", "GRU"], [1, 2], [False, True])]


def case_id(c):
    return f"{c['mode']}-L{c['num_layers']}-{'bi' if c['bidirectional'] else 'uni'}-{'bf' if c['batch_first'] else 'tf'}"


def inputs(case, seed=0):
    """x in rnn_jax layout (B, T, I), lengths (B,), and loss weights for outputs and final states."""
    rng = np.random.default_rng(seed)
    D = 2 if case["bidirectional"] else 1
    x = rng.standard_normal((B, T, I)).astype(np.float32)
    w_out = rng.standard_normal((B, T, D * H)).astype(np.float32)
    w_h = rng.standard_normal((case["num_layers"] * D, B, H)).astype(np.float32)
    w_c = rng.standard_normal((case["num_layers"] * D, B, H)).astype(np.float32)
    return x, LENGTHS, w_out, w_h, w_c


def run_torch(case, seed=0):
    """Build the module (seeded), run it; returns (state_dict, results) as float32 numpy arrays."""
    import torch
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    torch.manual_seed(seed)
    cls = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}.get(case["mode"], torch.nn.RNN)
    kw = {"nonlinearity": case["mode"].split("_")[1].lower()} if cls is torch.nn.RNN else {}
    module = cls(I, H, num_layers=case["num_layers"], bidirectional=case["bidirectional"],
                 batch_first=case["batch_first"], **kw)
    x, lengths, w_out, w_h, w_c = inputs(case, seed)
    xt = torch.tensor(x if case["batch_first"] else x.transpose(1, 0, 2))
    packed = pack_padded_sequence(xt, torch.tensor(lengths), batch_first=case["batch_first"], enforce_sorted=False)
    out, state = module(packed)
    out, _ = pad_packed_sequence(out, batch_first=case["batch_first"], total_length=T)
    out = out if case["batch_first"] else out.transpose(0, 1)  # (B, T, D*H)
    h_n, c_n = state if case["mode"] == "LSTM" else (state, None)
    loss = (out * torch.tensor(w_out)).sum() + (h_n * torch.tensor(w_h)).sum()
    if c_n is not None:
        loss = loss + (c_n * torch.tensor(w_c)).sum()
    loss.backward()
    sd = {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}
    res = {"out": out.detach().numpy(), "h_n": h_n.detach().numpy()}
    if c_n is not None:
        res["c_n"] = c_n.detach().numpy()
    for name, p in module.named_parameters():
        res["grad." + name] = p.grad.numpy().copy()
    return sd, res


def _torch_finals(finals, case):
    """rnn_jax final states -> PyTorch's (num_layers * D, B, H) h_n (and c_n)."""
    per_layer = [finals] if case["num_layers"] == 1 else list(finals)
    states = [s for lay in per_layer for s in (lay if case["bidirectional"] else (lay,))]
    if case["mode"] == "LSTM":
        return jnp.stack([s.h for s in states]), jnp.stack([s.c for s in states])
    return jnp.stack(states), None


def run_jax(case, state_dict, seed=0):
    """rnn_jax on the same weights and inputs; returns results named as :func:`run_torch`'s."""
    layer, params = rj.interop.from_torch_state_dict(state_dict, case["mode"], H, case["num_layers"],
                                                     case["bidirectional"])
    x, lengths, w_out, w_h, w_c = inputs(case, seed)

    def loss_fn(params):
        out, finals = layer.apply(params, jnp.asarray(x), jnp.asarray(lengths))
        h_n, c_n = _torch_finals(finals, case)
        loss = jnp.sum(out * w_out) + jnp.sum(h_n * w_h)
        if c_n is not None:
            loss = loss + jnp.sum(c_n * w_c)
        return loss, (out, h_n, c_n)

    (loss, (out, h_n, c_n)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    res = {"out": out, "h_n": h_n}
    if c_n is not None:
        res["c_n"] = c_n
    # The gradients in PyTorch's naming: transposed weights; an Elman cell's one bias stands for both of
    # PyTorch's, so both receive its gradient.
    per_layer = [grads] if case["num_layers"] == 1 else list(grads["layers"])
    for k, g in enumerate(per_layer):
        for suffix, gd in ([("", g["fwd"]), ("_reverse", g["bwd"])] if case["bidirectional"] else [("", g)]):
            n = f"l{k}{suffix}"
            res[f"grad.weight_ih_{n}"] = gd["W_i"].T
            res[f"grad.weight_hh_{n}"] = gd["W_h"].T
            res[f"grad.bias_ih_{n}"] = gd["b_i"]
            res[f"grad.bias_hh_{n}"] = gd["b_i"] if case["mode"].startswith("RNN") else gd["b_h"]
    return res


def relative_error(a, b):
    """max |a - b| / max |b|: the error relative to the reference's scale."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
