"""PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU`` <-> rnn_jax layers.

PyTorch stores ``weight_ih_l{k}{_reverse}`` as ``(G*H, I)``; rnn_jax stores ``W_i`` as ``(I, G*H)``:
the conversion transposes. Gate orders agree (LSTM i, f, g, o; GRU r, z, n). ``nn.RNN``'s two
biases are summed into the Elman cell's one bias (``to_torch`` writes it to ``bias_ih`` and zeros
``bias_hh``). ``num_layers > 1`` becomes :func:`rnn_jax.stack`; ``bidirectional=True`` becomes
:func:`rnn_jax.bidirectional` with ``merge="concat"``, as PyTorch concatenates directions.

:func:`from_torch_state_dict` needs no PyTorch: it reads a state dict of arrays (for instance
loaded from a checkpoint with numpy), so weights trained in PyTorch can be used without it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax import _checks, cells, layers

__all__ = ["from_torch", "from_torch_state_dict", "to_torch", "MODES"]

MODES = ("RNN_TANH", "RNN_RELU", "LSTM", "GRU")


def _cell(mode, H):
    if mode == "LSTM":
        return cells.lstm(H, forget_bias=0.0)
    if mode == "GRU":
        return cells.gru(H)
    return cells.elman(H, activation=mode.split("_")[1].lower())


def _direction_params(sd, mode, name, bias):
    w_ih, w_hh = np.asarray(sd[f"weight_ih_{name}"]), np.asarray(sd[f"weight_hh_{name}"])
    zeros = np.zeros(w_ih.shape[0], w_ih.dtype)  # a module built with bias=False has none
    b_ih = np.asarray(sd[f"bias_ih_{name}"]) if bias else zeros
    b_hh = np.asarray(sd[f"bias_hh_{name}"]) if bias else zeros
    p = {"W_i": jnp.asarray(w_ih.T), "W_h": jnp.asarray(w_hh.T)}
    if mode.startswith("RNN"):
        p["b_i"] = jnp.asarray(b_ih + b_hh)
    else:
        p["b_i"], p["b_h"] = jnp.asarray(b_ih), jnp.asarray(b_hh)
    return p


def torch_layer(mode: str, hidden_size: int, num_layers: int = 1, bidirectional: bool = False) -> layers.Layer:
    """The rnn_jax layer with the structure of a PyTorch module of this configuration."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {MODES}, got {mode!r}")
    cell = _cell(mode, hidden_size)
    one = layers.bidirectional(layers.rnn(cell), layers.rnn(cell)) if bidirectional else layers.rnn(cell)
    return one if num_layers == 1 else layers.stack(*([one] * num_layers))


def from_torch_state_dict(
    state_dict, mode: str, hidden_size: int, num_layers: int = 1, bidirectional: bool = False, bias: bool = True
):
    """``(layer, params)`` from a PyTorch recurrent module's state dict (arrays or tensors on the CPU).

    ``mode`` is PyTorch's own name: ``"RNN_TANH"``, ``"RNN_RELU"``, ``"LSTM"`` or ``"GRU"``; ``bias``
    as the module's (False: zero biases). The keys must be exactly the module's: a missing or an extra
    key is an error naming it (no weight is ever invented), as is a weight of the wrong shape.

    Args:
      state_dict: the module's ``state_dict()`` (tensors or numpy arrays).
      mode: ``"RNN_TANH"``, ``"RNN_RELU"``, ``"LSTM"`` or ``"GRU"``.
      hidden_size: ``H``.
      num_layers: the number of stacked layers.
      bidirectional: whether the module is bidirectional.
      bias: whether the module has biases.

    Returns:
      ``(layer, params)``.

    Examples:
      >>> H, I = 4, 3
      >>> sd = {"weight_ih_l0": np.ones((3 * H, I)), "weight_hh_l0": np.zeros((3 * H, H)),
      ...       "bias_ih_l0": np.zeros(3 * H), "bias_hh_l0": np.zeros(3 * H)}
      >>> layer, p = rnn_jax.interop.torch.from_torch_state_dict(sd, "GRU", H)
      >>> p["W_i"].shape, layer.apply(p, jnp.ones((2, 5, I)))[0].shape
      ((3, 12), (2, 5, 4))
    """
    layer = torch_layer(mode, hidden_size, num_layers, bidirectional)
    sd = {k: np.asarray(v) for k, v in state_dict.items()}
    names = [f"l{k}{sfx}" for k in range(num_layers) for sfx in (("", "_reverse") if bidirectional else ("",))]
    kinds = ("weight_ih", "weight_hh") + (("bias_ih", "bias_hh") if bias else ())
    expected = {f"{kind}_{n}" for n in names for kind in kinds}
    missing, extra = sorted(expected - set(sd)), sorted(set(sd) - expected)
    if missing or extra:
        raise ValueError(
            "state_dict: "
            + "; ".join(([f"missing {missing}"] if missing else []) + ([f"unexpected {extra}"] if extra else []))
            + f" for mode={mode}, num_layers={num_layers}, bidirectional={bidirectional}, bias={bias}"
        )
    per_layer = []
    for k in range(num_layers):
        if bidirectional:
            per_layer.append(
                {
                    "fwd": _direction_params(sd, mode, f"l{k}", bias),
                    "bwd": _direction_params(sd, mode, f"l{k}_reverse", bias),
                }
            )
        else:
            per_layer.append(_direction_params(sd, mode, f"l{k}", bias))
    params = per_layer[0] if num_layers == 1 else {"layers": tuple(per_layer), "gates": ()}
    first = sd[f"weight_ih_{names[0]}"].shape[1]
    _checks.check_params(_checks.expected_params(layer.init, first, jnp.float32), params, "state_dict")
    return layer, params


def _config(module):
    import torch.nn as tnn

    if not isinstance(module, (tnn.RNN, tnn.LSTM, tnn.GRU)):
        raise ValueError(f"module: expected torch.nn.RNN, nn.LSTM or nn.GRU, got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError(f"module: nn.LSTM with proj_size={module.proj_size} is not supported")
    return module.mode, module.hidden_size, module.num_layers, module.bidirectional


def from_torch(module):
    """Convert a PyTorch recurrent module into ``(layer, params)``.

    ``layer.apply(params, x)`` for ``x (*batch, T, I)`` equals ``module(x)`` for a ``batch_first=True``
    module (and for ``x (T, I)`` one sequence). The final state is the layer's: for a stack, a tuple over layers;
    for bidirectional, ``(fwd, bwd)``; for LSTM an ``LSTMState(h, c)``.

    Args:
      module: a ``torch.nn.RNN``, ``LSTM`` or ``GRU`` (``batch_first=True``; any layers, directions).

    Returns:
      ``(layer, params)``.

    Examples:
      >>> import torch
      >>> m = torch.nn.LSTM(3, 4, num_layers=2, batch_first=True)
      >>> layer, p = rnn_jax.interop.from_torch(m)
      >>> x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype(np.float32)
      >>> ref = m(torch.from_numpy(x))[0].detach().numpy()
      >>> bool(np.allclose(layer.apply(p, jnp.asarray(x))[0], ref, atol=1e-5))
      True
    """
    mode, H, L, bi = _config(module)
    sd = {k: v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    return from_torch_state_dict(sd, mode, H, L, bi, bias=module.bias)


def to_torch(params, module):
    """Write rnn_jax ``params`` (of the structure :func:`from_torch` gives for ``module``) into
    ``module`` in place; returns the module.

    Args:
      params: rnn_jax params of the structure :func:`from_torch` gives for ``module``.
      module: the PyTorch module to write into.

    Returns:
      ``module``.

    Examples:
      >>> import torch
      >>> m = torch.nn.GRU(3, 4, batch_first=True)
      >>> layer, p = rnn_jax.interop.from_torch(m)
      >>> p = jax.tree.map(lambda a: 2 * a, p)
      >>> m = rnn_jax.interop.to_torch(p, m)
      >>> bool(np.allclose(m.weight_hh_l0.detach().numpy().T, p["W_h"]))
      True
    """
    import torch

    mode, H, L, bi = _config(module)
    _checks.check_params(from_torch(module)[1], params)
    named = dict(module.named_parameters())
    if not module.bias:  # a module without biases cannot hold non-zero ones: refuse to drop them
        for path, leaf in jax.tree_util.tree_leaves_with_path(params):
            if str(getattr(path[-1], "key", "")).startswith("b_") and np.any(np.asarray(leaf) != 0):
                raise ValueError(
                    f"params{jax.tree_util.keystr(path)}: non-zero biases, but the module was "
                    f"built with bias=False and has none; build it with bias=True"
                )
    per_layer = [params] if L == 1 else list(params["layers"])
    with torch.no_grad():
        for k, lp in enumerate(per_layer):
            for suffix, p in [("", lp["fwd"]), ("_reverse", lp["bwd"])] if bi else [("", lp)]:
                name = f"l{k}{suffix}"
                values = {
                    f"weight_ih_{name}": np.asarray(p["W_i"]).T,
                    f"weight_hh_{name}": np.asarray(p["W_h"]).T,
                    f"bias_ih_{name}": np.asarray(p["b_i"]),
                    f"bias_hh_{name}": (
                        np.zeros_like(np.asarray(p["b_i"])) if mode.startswith("RNN") else np.asarray(p["b_h"])
                    ),
                }
                for pname, value in values.items():
                    if pname in named:
                        named[pname].copy_(torch.tensor(np.array(value), dtype=named[pname].dtype))
    return module
