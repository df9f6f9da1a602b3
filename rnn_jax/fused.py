"""Fused batched recurrences with a hand-written backward pass (``jax.custom_vjp``).

The generic unroller (:mod:`rnn_jax.unroll`) runs ANY cell over one sequence and lets autodiff build
the backward pass; batches come from ``jax.vmap``. Autodiff of ``lax.scan`` accumulates every weight
gradient inside the reverse loop: at each step it adds an ``(H, G*H)`` outer product into a carried
buffer, so the backward pass moves ``T`` times the weight matrix through memory and runs ``T`` small
products where one large one would do.

This module does what cuDNN does, in JAX, for the Elman (tanh, ReLU, sigmoid), LSTM and GRU cells:

* the input projection of every timestep is ONE product ``(T*B, I) @ (I, G*H)``, taken time-major so
  that no large buffer is transposed;
* the forward loop does one ``(B, H) @ (H, G*H)`` product per step and keeps the gate activations;
* the backward loop (a reverse ``lax.scan``) computes only the state gradients: one
  ``(B, G*H) @ (G*H, H)`` product per step;
* the weight gradients are then single products over all timesteps,
  ``dW_h = sum_{t,b} h_{t-1} dz_t^T`` (an ``einsum`` over ``(T*B)``), and ``dW_i`` comes from
  differentiating the hoisted input product.

Variable lengths follow the unroller's semantics exactly (frozen carry and zero outputs past the
length; the final carry is the last valid one); reversal reads the valid prefix backwards. The
functions here take time-major arrays ``(T, B, ...)``; :func:`unroll_batch` is the batch-major entry
point used by :func:`rnn_jax.apply_batch`. Tests check values and gradients against the generic
unroller to 1e-10 in float64.
"""
from __future__ import annotations

from functools import partial
from typing import Optional

import jax
import jax.numpy as jnp
from jax import lax

from rnn_jax.cells import Cell, LSTMState

__all__ = ["unroll_batch", "elman_recurrence", "lstm_recurrence", "gru_recurrence", "flip_valid_batch",
           "FUSED_KINDS"]

_ACT = {"tanh": jnp.tanh, "relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}
_DERIV = {  # g'(a) written with s = g(a)
    "tanh": lambda s: 1.0 - s * s,
    "relu": lambda s: (s > 0).astype(s.dtype),
    "sigmoid": lambda s: s * (1.0 - s),
}
FUSED_KINDS = ("elman_tanh", "elman_relu", "elman_sigmoid", "lstm", "gru")


def _shift(S, s0):
    """Rows ``s_{t-1}``: ``s0`` then ``S[:-1]`` (time-major)."""
    return jnp.concatenate([s0[None], S[:-1]], 0)


def _keep(m, new, old):
    """``new`` where the step is valid, else ``old`` (no mask: always ``new``)."""
    return new if m is None else jnp.where(m, new, old)


def _zero_unless(m, a):
    return a if m is None else jnp.where(m, a, jnp.zeros_like(a))


def _pass(m, d):
    """The part of a carry's cotangent that flows straight through an invalid (frozen) step."""
    return None if m is None else jnp.where(m, jnp.zeros_like(d), d)


def _add(a, b):
    return a if b is None else a + b


def _weight_grad(S_prev, dZ):
    """``sum_{t,b} S_prev[t,b]^T dZ[t,b]``: one product over all timesteps and examples."""
    return jnp.einsum("tbh,tbg->hg", S_prev, dZ)


# ----------------------------------------------------------------------------------------------------
# Elman: h_t = g(gx_t + h_{t-1} W_h)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def elman_recurrence(activation: str, unroll: int, W_h, gx, h0, mask):
    """Elman recurrence over time-major ``gx (T, B, H)`` (input projection, bias included).

    ``mask``: ``(T, B, 1)`` booleans or None. Returns ``(ys (T, B, H), h_T (B, H))``.
    """
    return _elman_fwd(activation, unroll, W_h, gx, h0, mask)[0]


def _elman_fwd(activation, unroll, W_h, gx, h0, mask):
    g = _ACT[activation]

    def step(h, inp):
        gx_t, m_t = inp
        h = _keep(m_t, g(gx_t + h @ W_h), h)
        return h, h

    hT, Hs = lax.scan(step, h0, (gx, mask), unroll=unroll)  # Hs: the carries
    ys = _zero_unless(mask, Hs)
    return (ys, hT), (W_h, Hs, h0, mask)


def _elman_bwd(activation, unroll, res, cts):
    W_h, Hs, h0, mask = res
    dys, dhT = cts
    deriv = _DERIV[activation]
    W_hT = W_h.T

    def step(dh, inp):
        dy, s, m_t = inp
        da = _zero_unless(m_t, (dy + dh) * deriv(s))  # dE/da_t
        return _add(da @ W_hT, _pass(m_t, dh)), da

    dh0, dA = lax.scan(step, dhT, (dys, Hs, mask), reverse=True, unroll=unroll)
    return _weight_grad(_shift(Hs, h0), dA), dA, dh0, None


elman_recurrence.defvjp(_elman_fwd, _elman_bwd)


# ----------------------------------------------------------------------------------------------------
# LSTM (i, f, g, o): z = gx_t + h W_h; c' = f c + i g; h' = o tanh(c')


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def lstm_recurrence(unroll: int, W_h, gx, carry0, mask):
    """LSTM recurrence over time-major ``gx (T, B, 4H)`` (input projection plus both biases).

    ``carry0``: ``LSTMState(h (B, H), c (B, H))``. Returns ``(ys (T, B, H), LSTMState)``.
    """
    return _lstm_fwd(unroll, W_h, gx, carry0, mask)[0]


def _lstm_fwd(unroll, W_h, gx, carry0, mask):
    H = W_h.shape[0]

    def step(carry, inp):
        h, c = carry
        gx_t, m_t = inp
        z = gx_t + h @ W_h
        i = jax.nn.sigmoid(z[..., :H])
        f = jax.nn.sigmoid(z[..., H:2 * H])
        g = jnp.tanh(z[..., 2 * H:3 * H])
        o = jax.nn.sigmoid(z[..., 3 * H:])
        c_new = f * c + i * g
        h_new = o * jnp.tanh(c_new)
        h, c = _keep(m_t, h_new, h), _keep(m_t, c_new, c)
        return (h, c), (h, c, i, f, g, o)

    (hT, cT), (Hs, Cs, I, F, G, O) = lax.scan(step, (carry0.h, carry0.c), (gx, mask), unroll=unroll)
    ys = _zero_unless(mask, Hs)
    return (ys, LSTMState(hT, cT)), (W_h, Hs, Cs, I, F, G, O, carry0, mask)


def _lstm_bwd(unroll, res, cts):
    W_h, Hs, Cs, I, F, G, O, carry0, mask = res
    dys, dcarryT = cts
    W_hT = W_h.T

    def step(dcarry, inp):
        dh_c, dc_c = dcarry
        dy, c, c_prev, i, f, g, o, m_t = inp
        dh = _zero_unless(m_t, dy + dh_c)  # cotangent of the new h
        tc = jnp.tanh(c)
        dc = _zero_unless(m_t, dc_c) + dh * o * (1.0 - tc * tc)  # cotangent of the new c
        dz = jnp.concatenate([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f),
                              dc * i * (1.0 - g * g), dh * tc * o * (1.0 - o)], axis=-1)
        dh_prev = _add(dz @ W_hT, _pass(m_t, dh_c))
        dc_prev = _add(dc * f, _pass(m_t, dc_c))
        return (dh_prev, dc_prev), dz

    C_prev = _shift(Cs, carry0.c)
    (dh0, dc0), dZ = lax.scan(step, (dcarryT.h, dcarryT.c), (dys, Cs, C_prev, I, F, G, O, mask),
                              reverse=True, unroll=unroll)
    return _weight_grad(_shift(Hs, carry0.h), dZ), dZ, LSTMState(dh0, dc0), None


lstm_recurrence.defvjp(_lstm_fwd, _lstm_bwd)


# ----------------------------------------------------------------------------------------------------
# GRU (r, z, n): gh = h W_h + b_h; r, z = sigma(gx + gh); n = tanh(gx_n + r gh_n); h' = (1-z) n + z h


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def gru_recurrence(unroll: int, W_h, b_h, gx, h0, mask):
    """GRU recurrence over time-major ``gx (T, B, 3H)`` (input projection with ``b_i``).

    Returns ``(ys (T, B, H), h_T (B, H))``.
    """
    return _gru_fwd(unroll, W_h, b_h, gx, h0, mask)[0]


def _gru_fwd(unroll, W_h, b_h, gx, h0, mask):
    H = W_h.shape[0]

    def step(h, inp):
        gx_t, m_t = inp
        gh = h @ W_h + jnp.broadcast_to(b_h, gx_t.shape)
        r = jax.nn.sigmoid(gx_t[..., :H] + gh[..., :H])
        z = jax.nn.sigmoid(gx_t[..., H:2 * H] + gh[..., H:2 * H])
        hn = gh[..., 2 * H:]
        n = jnp.tanh(gx_t[..., 2 * H:] + r * hn)
        h = _keep(m_t, (1.0 - z) * n + z * h, h)
        return h, (h, r, z, n, hn)

    hT, (Hs, R, Z, N, HN) = lax.scan(step, h0, (gx, mask), unroll=unroll)
    ys = _zero_unless(mask, Hs)
    return (ys, hT), (W_h, Hs, R, Z, N, HN, h0, mask)


def _gru_bwd(unroll, res, cts):
    W_h, Hs, R, Z, N, HN, h0, mask = res
    dys, dhT = cts
    W_hT = W_h.T
    H_prev = _shift(Hs, h0)

    def step(dh_c, inp):
        dy, h_prev, r, z, n, hn, m_t = inp
        dh = _zero_unless(m_t, dy + dh_c)  # cotangent of the new h
        dan = dh * (1.0 - z) * (1.0 - n * n)
        dar = dan * hn * r * (1.0 - r)
        daz = dh * (h_prev - n) * z * (1.0 - z)
        dgh = jnp.concatenate([dar, daz, dan * r], axis=-1)
        dh_prev = _add(dgh @ W_hT + dh * z, _pass(m_t, dh_c))
        return dh_prev, (dgh, dan)

    dh0, (dGH, dAN) = lax.scan(step, dhT, (dys, H_prev, R, Z, N, HN, mask), reverse=True, unroll=unroll)
    H = W_h.shape[0]
    dGX = jnp.concatenate([dGH[..., :2 * H], dAN], axis=-1)
    return _weight_grad(H_prev, dGH), dGH.sum((0, 1)), dGX, dh0, None


gru_recurrence.defvjp(_gru_fwd, _gru_bwd)


# ----------------------------------------------------------------------------------------------------
# Batch-major entry point


def flip_valid_batch(xs, lengths):
    """Reverse the valid prefix of every sequence of time-major ``xs (T, B, ...)``; padding stays."""
    T = xs.shape[0]
    t = jnp.arange(T)[:, None]
    idx = jnp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # (T, B)
    idx = idx.reshape(idx.shape + (1,) * (xs.ndim - 2))
    return jnp.take_along_axis(xs, jnp.broadcast_to(idx, idx.shape[:2] + xs.shape[2:]), axis=0)


def unroll_batch(cell: Cell, params, xs: jax.Array, *, lengths: Optional[jax.Array] = None,
                 initial_carry=None, reverse: bool = False, unroll: int = 1):
    """Run a fusable cell (``cell.fused`` in :data:`FUSED_KINDS`) over a batch ``xs (B, T, I)``.

    Same results as ``jax.vmap`` of :func:`rnn_jax.unroll` (tested to 1e-10 in float64, values and
    gradients); returns ``(ys (B, T, H), final_carry)`` with batched carry leaves ``(B, H)``.
    """
    kind = cell.fused
    if kind not in FUSED_KINDS:
        raise ValueError(f"cell: {cell.name!r} has no fused recurrence (fused={kind!r}); "
                         f"use rnn_jax.unroll under jax.vmap")
    B, T, _ = xs.shape
    H = cell.hidden_size
    xs_tm = jnp.swapaxes(xs, 0, 1)  # (T, B, I): the small tensor is the one transposed
    if reverse:
        xs_tm = xs_tm[::-1] if lengths is None else flip_valid_batch(xs_tm, lengths)
    gx = cell.project(params, xs_tm)  # (T, B, G*H): every timestep in one product
    mask = None if lengths is None else (jnp.arange(T)[:, None] < lengths[None, :])[..., None]
    if initial_carry is None:
        initial_carry = jax.tree.map(lambda a: jnp.zeros((B,) + a.shape, a.dtype), cell.initial_carry(xs.dtype))
    if kind.startswith("elman"):
        ys, carry = elman_recurrence(kind[len("elman_"):], unroll, params["W_h"], gx, initial_carry, mask)
    elif kind == "lstm":
        gx = gx + jnp.broadcast_to(params["b_h"], gx.shape)
        ys, carry = lstm_recurrence(unroll, params["W_h"], gx, LSTMState(*initial_carry), mask)
    else:
        ys, carry = gru_recurrence(unroll, params["W_h"], params["b_h"], gx, initial_carry, mask)
    if reverse:
        ys = ys[::-1] if lengths is None else flip_valid_batch(ys, lengths)
    return jnp.swapaxes(ys, 0, 1), carry
