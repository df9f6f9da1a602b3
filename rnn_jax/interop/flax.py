"""Flax linen ``SimpleCell`` / ``LSTMCell`` / ``GRUCell`` <-> rnn_jax cells.

Flax keeps one Dense per gate (kernels ``(I, H)``), with the bias on the recurrent Dense for LSTM
(``hi, hf, hg, ho``), on the input Dense for ``SimpleCell`` (``i``) and on ``ir, iz, in, hn`` for GRU.
rnn_jax joins the gate blocks along the last axis (LSTM i, f, g, o; GRU r, z, n). The LSTM carry is
``(c, h)`` in Flax and ``LSTMState(h, c)`` here: see :func:`lstm_carry_from_flax`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rnn_jax import cells
from rnn_jax.cells import LSTMState

__all__ = ["from_flax", "to_flax", "lstm_carry_from_flax"]

_LSTM = ("i", "f", "g", "o")
_GRU = ("r", "z", "n")


def _kind(module):
    import flax.linen as nn

    for kind, cls in (("simple", nn.SimpleCell), ("lstm", nn.LSTMCell), ("gru", nn.GRUCell)):
        if isinstance(module, cls):
            return kind
    raise ValueError(f"module: expected flax.linen SimpleCell, LSTMCell or GRUCell, got {type(module).__name__}")


def _check_default_gates(module):
    if module.gate_fn is not jax.nn.sigmoid or module.activation_fn is not jnp.tanh:
        raise ValueError("module: only the default gate_fn (sigmoid) and activation_fn (tanh) convert exactly")


def from_flax(module, variables):
    """Convert a Flax linen cell and its ``variables`` (``{"params": ...}`` or the params) into
    ``(cell, params)`` with equal step outputs.

    Args:
      module: a ``flax.linen`` ``SimpleCell``, ``LSTMCell`` or ``GRUCell`` (default gate functions).
      variables: its variables, ``{"params": ...}`` or the params.

    Returns:
      ``(cell, params)``: an :func:`rnn_jax.elman`, :func:`rnn_jax.lstm` or :func:`rnn_jax.gru` cell and its
      params.

    Examples:
      >>> import flax.linen as nn
      >>> m = nn.GRUCell(features=4)
      >>> v = m.init(jax.random.key(0), m.initialize_carry(jax.random.key(0), (3,)), jnp.ones(3))
      >>> cell, p = rnn_jax.interop.from_flax(m, v)
      >>> x = jnp.arange(3.0)
      >>> h_flax, _ = m.apply(v, jnp.zeros(4), x)
      >>> bool(jnp.allclose(cell.step(p, jnp.zeros(4), x)[0], h_flax, atol=1e-6))
      True
    """
    kind = _kind(module)
    p = variables.get("params", variables)
    H = module.features
    cat = lambda names: jnp.concatenate([p[n]["kernel"] for n in names], axis=-1)  # noqa: E731
    if kind == "simple":
        if module.residual:
            raise ValueError("module: SimpleCell(residual=True) has no rnn_jax equivalent")
        cell = cells.elman(H, activation=module.activation_fn)
        return cell, {"W_i": p["i"]["kernel"], "W_h": p["h"]["kernel"], "b_i": p["i"]["bias"]}
    _check_default_gates(module)
    if kind == "lstm":
        W_i = cat(["i" + g for g in _LSTM])
        b_h = jnp.concatenate([p["h" + g]["bias"] for g in _LSTM])
        return cells.lstm(H, forget_bias=0.0), {
            "W_i": W_i,
            "W_h": cat(["h" + g for g in _LSTM]),
            "b_i": jnp.zeros_like(b_h),
            "b_h": b_h,
        }
    zero = jnp.zeros((H,), p["hn"]["bias"].dtype)
    return cells.gru(H), {
        "W_i": cat(["ir", "iz", "in"]),
        "W_h": cat(["hr", "hz", "hn"]),
        "b_i": jnp.concatenate([p["ir"]["bias"], p["iz"]["bias"], p["in"]["bias"]]),
        "b_h": jnp.concatenate([zero, zero, p["hn"]["bias"]]),
    }


def to_flax(module, params):
    """rnn_jax params of the matching cell -> Flax ``{"params": ...}`` for ``module``.

    Biases that Flax lacks are folded into one it has (they are added together in both), so the
    steps agree up to float rounding.

    Args:
      module: the Flax cell to fill.
      params: params of the matching rnn_jax cell.

    Returns:
      ``{"params": ...}`` for ``module.apply``.

    Examples:
      >>> import flax.linen as nn
      >>> p = rnn_jax.lstm(4).init(jax.random.key(0), 3)
      >>> v = rnn_jax.interop.to_flax(nn.LSTMCell(features=4), p)
      >>> sorted(v["params"])
      ['hf', 'hg', 'hi', 'ho', 'if', 'ig', 'ii', 'io']
    """
    kind = _kind(module)
    split = lambda a, n: jnp.split(a, n, axis=-1)  # noqa: E731
    if kind == "simple":
        return {"params": {"i": {"kernel": params["W_i"], "bias": params["b_i"]}, "h": {"kernel": params["W_h"]}}}
    _check_default_gates(module)
    if kind == "lstm":
        Wi, Wh, b = split(params["W_i"], 4), split(params["W_h"], 4), split(params["b_i"] + params["b_h"], 4)
        out = {"i" + g: {"kernel": w} for g, w in zip(_LSTM, Wi)}
        out.update({"h" + g: {"kernel": w, "bias": bb} for g, w, bb in zip(_LSTM, Wh, b)})
        return {"params": out}
    Wi, Wh = split(params["W_i"], 3), split(params["W_h"], 3)
    bi, bh = split(params["b_i"], 3), split(params["b_h"], 3)
    out = {
        "ir": {"kernel": Wi[0], "bias": bi[0] + bh[0]},
        "iz": {"kernel": Wi[1], "bias": bi[1] + bh[1]},
        "in": {"kernel": Wi[2], "bias": bi[2]},
        "hr": {"kernel": Wh[0]},
        "hz": {"kernel": Wh[1]},
        "hn": {"kernel": Wh[2], "bias": bh[2]},
    }
    return {"params": out}


def lstm_carry_from_flax(carry) -> LSTMState:
    """Flax's LSTM carry ``(c, h)`` -> ``LSTMState(h, c)``.

    Args:
      carry: Flax's ``(c, h)``.

    Returns:
      :class:`rnn_jax.LSTMState` ``(h, c)``.

    Examples:
      >>> s = rnn_jax.interop.flax.lstm_carry_from_flax((jnp.zeros(4), jnp.ones(4)))
      >>> s.h.tolist()
      [1.0, 1.0, 1.0, 1.0]
    """
    c, h = carry
    return LSTMState(h, c)
