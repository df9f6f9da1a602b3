"""PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` <-> rnn_jax layers.

PyTorch stores ``weight_ih_l{k}{_reverse}`` as ``(G*H, I)``; rnn_jax stores ``W_i`` as ``(I, G*H)``:
the conversion transposes. Gate orders agree (LSTM i, f, g, o; GRU r, z, n). ``nn.RNN``'s two
biases are summed into the Elman cell's one bias (``to_torch`` writes it to ``bias_ih`` and zeros
``bias_hh``). ``num_layers > 1`` becomes :func:`rnn_jax.stack`; ``bidirectional=True`` becomes
:func:`rnn_jax.bidirectional` with ``merge="concat"``, as PyTorch concatenates directions.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from rnn_jax import cells, layers

__all__ = ["from_torch", "to_torch"]


def _describe(module):
    import torch.nn as tnn

    if isinstance(module, tnn.LSTM):
        if getattr(module, "proj_size", 0):
            raise ValueError(f"module: nn.LSTM with proj_size={module.proj_size} is not supported")
        return "lstm", 4
    if isinstance(module, tnn.GRU):
        return "gru", 3
    if isinstance(module, tnn.RNN):
        return "rnn_" + module.nonlinearity, 1
    raise ValueError(f"module: expected torch.nn.RNN, nn.LSTM or nn.GRU, got {type(module).__name__}")


def _cell(kind, H):
    if kind == "lstm":
        return cells.lstm(H, forget_bias=0.0)
    if kind == "gru":
        return cells.gru(H)
    return cells.elman(H, activation=kind.split("_")[1])


def _np(t):
    return t.detach().cpu().numpy()


def _direction_params(module, kind, layer, suffix):
    sd = dict(module.named_parameters())
    name = f"l{layer}{suffix}"
    w_ih, w_hh = _np(sd[f"weight_ih_{name}"]), _np(sd[f"weight_hh_{name}"])
    zeros = np.zeros(w_ih.shape[0], w_ih.dtype)
    b_ih = _np(sd[f"bias_ih_{name}"]) if module.bias else zeros
    b_hh = _np(sd[f"bias_hh_{name}"]) if module.bias else zeros
    p = {"W_i": jnp.asarray(w_ih.T), "W_h": jnp.asarray(w_hh.T)}
    if kind.startswith("rnn"):
        p["b_i"] = jnp.asarray(b_ih + b_hh)
    else:
        p["b_i"], p["b_h"] = jnp.asarray(b_ih), jnp.asarray(b_hh)
    return p


def _structure(module, kind):
    """The rnn_jax layer mirroring ``module``."""
    cell = _cell(kind, module.hidden_size)
    one = layers.bidirectional(layers.rnn(cell), layers.rnn(cell)) if module.bidirectional else layers.rnn(cell)
    return one if module.num_layers == 1 else layers.stack(*([one] * module.num_layers))


def _per_layer(module, params):
    """The list of per-layer params (one dict, or {"fwd", "bwd"}) inside ``params``."""
    return [params] if module.num_layers == 1 else list(params["layers"])


def from_torch(module):
    """Convert a PyTorch recurrent module into ``(layer, params)``.

    ``layer.apply(params, x)`` for ``x (T, I)`` equals ``module(x)`` (one sequence; with
    ``batch_first=True`` the module takes ``(B, T, I)``, use :func:`rnn_jax.apply_batch`). The final
    state is the layer's: for a stack, a tuple over layers; for bidirectional, ``(fwd, bwd)``; for
    LSTM an ``LSTMState(h, c)``.
    """
    kind, _ = _describe(module)
    per_layer = []
    for k in range(module.num_layers):
        if module.bidirectional:
            per_layer.append({"fwd": _direction_params(module, kind, k, ""),
                              "bwd": _direction_params(module, kind, k, "_reverse")})
        else:
            per_layer.append(_direction_params(module, kind, k, ""))
    params = per_layer[0] if module.num_layers == 1 else {"layers": tuple(per_layer), "gates": ()}
    return _structure(module, kind), params


def to_torch(params, module):
    """Write rnn_jax ``params`` (as produced by :func:`from_torch` for a module of this shape) into
    ``module`` in place; returns the module."""
    import torch

    kind, _ = _describe(module)
    expected = from_torch(module)[1]
    from rnn_jax import _checks
    _checks.check_params(expected, params)
    named = dict(module.named_parameters())
    with torch.no_grad():
        for k, lp in enumerate(_per_layer(module, params)):
            dirs = [("", lp["fwd"]), ("_reverse", lp["bwd"])] if module.bidirectional else [("", lp)]
            for suffix, p in dirs:
                name = f"l{k}{suffix}"

                def put(pname, value):
                    t = named[pname]
                    t.copy_(torch.as_tensor(np.asarray(value), dtype=t.dtype))

                put(f"weight_ih_{name}", np.asarray(p["W_i"]).T)
                put(f"weight_hh_{name}", np.asarray(p["W_h"]).T)
                if module.bias:
                    put(f"bias_ih_{name}", p["b_i"])
                    put(f"bias_hh_{name}", np.zeros_like(np.asarray(p["b_i"])) if kind.startswith("rnn") else p["b_h"])
    return module
