"""Fused batched recurrences with a hand-written backward pass (``jax.custom_vjp``).

The generic unroller (:mod:`rnn_jax.unroll`) runs ANY cell over one sequence and lets autodiff build
the backward pass; batches come from ``jax.vmap``. Autodiff of ``lax.scan`` accumulates every weight
gradient inside the reverse loop: at each step it adds an ``(H, G*H)`` outer product into a carried
buffer, so the backward pass moves ``T`` times the weight matrix through memory and runs ``T`` small
products where one large one would do.

This module does what cuDNN does, in JAX, for the Elman (tanh, ReLU, sigmoid), LSTM and GRU cells:

* the forward loop does one ``(B, H) @ (H, G*H)`` product per step and keeps the gate activations;
  the input product ``x_t W_i`` is either taken for all timesteps before the loop as ONE
  ``(T*B, I) @ (I, G*H)`` product (time-major, so no large buffer is transposed) or once per step
  inside it, whichever measured faster for the cell (:func:`choose_hoist`);
* the backward loop (a reverse ``lax.scan``) computes only the state gradients: one
  ``(B, G*H) @ (G*H, H)`` product per step;
* every weight gradient is then ONE product over all timesteps and examples:
  ``dW_h = sum_{t,b} h_{t-1} dz_t^T``, ``dW_i = sum_{t,b} x_t dz_t^T`` (``einsum`` over ``T*B`` rows),
  and the input gradient ``dX = dZ W_i^T`` likewise.

Variable lengths follow the unroller's semantics exactly (frozen carry and zero outputs past the
length; the final carry is the last valid one); reversal reads the valid prefix backwards. The
functions here take time-major arrays ``(T, B, ...)``; :func:`unroll_batch` is the batch-major entry
point used by :func:`rnn_jax.apply_batch`. Tests check values and gradients against the generic
unroller to 1e-10 in float64.
"""
from __future__ import annotations

from functools import partial
from typing import Optional, Union

import jax
import jax.numpy as jnp
from jax import lax

from rnn_jax._ops import shift_down
from rnn_jax.cells import Cell, LSTMState

__all__ = ["unroll_batch", "choose_layout", "choose_hoist", "elman_recurrence", "lstm_recurrence", "gru_recurrence",
           "flip_valid_batch", "FUSED_KINDS"]

_ACT = {"tanh": jnp.tanh, "relu": jax.nn.relu, "sigmoid": jax.nn.sigmoid}
_DERIV = {  # g'(a) written with s = g(a)
    "tanh": lambda s: 1.0 - s * s,
    "relu": lambda s: (s > 0).astype(s.dtype),
    "sigmoid": lambda s: s * (1.0 - s),
}
FUSED_KINDS = ("elman_tanh", "elman_relu", "elman_sigmoid", "lstm", "gru")


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


class _Layout:
    """Where the batch axis of a step's arrays lies.

    ``"batch"``: states ``(B, H)``, gates ``(B, G*H)``, step product ``h @ W_h``.
    ``"feature"``: states ``(H, B)``, gates ``(G*H, B)``, step product ``W_h^T @ h``; faster in a bare
    loop at batch 16 on the CPU measured, but not inside these kernels (benchmarks/README.md), so
    :func:`choose_layout` picks ``"batch"``.
    """

    def __init__(self, name):
        self.name = name
        self.fm = name == "feature"
        self.axis = 0 if self.fm else 1  # gate axis of a step's arrays

    def mats(self, W_h):
        """(forward matrix, backward matrix): both orientations of ``W_h`` made once, outside the loops."""
        return (W_h.T, W_h) if self.fm else (W_h, W_h.T)

    def mm(self, h, M):
        return M @ h if self.fm else h @ M

    def gate(self, z, k, H):
        return z[k * H:(k + 1) * H] if self.fm else z[:, k * H:(k + 1) * H]

    def cat(self, parts):
        return jnp.concatenate(parts, axis=self.axis)

    def weight_grad(self, S_prev, dZ):
        """``sum_{t,b} s_{t-1} dz_t^T``: one product over all timesteps and examples."""
        return jnp.einsum("thb,tgb->hg" if self.fm else "tbh,tbg->hg", S_prev, dZ)

    def bias_grad(self, dZ):
        return dZ.sum((0, 2) if self.fm else (0, 1))

    def bias(self, b, like):
        return jnp.broadcast_to(b[:, None] if self.fm else b, like.shape)

    def project_all(self, xs, W_i):
        """The input product of every timestep at once: ``(T*B, I) @ (I, G*H)``."""
        return jnp.einsum("tib,ig->tgb", xs, W_i) if self.fm else xs @ W_i

    def input_cotangent(self, dGX, W_i):
        """``dE/dx_t = dz_t W_i^T`` for every timestep at once."""
        return jnp.einsum("tgb,ig->tib", dGX, W_i) if self.fm else dGX @ W_i.T


def _inputs(L, W_i, xs, hoist, keep):
    """(what the forward loop scans over, its map to the step's input product ``gx_t``).

    ``hoist``: ``(for inference, for training)`` booleans; ``keep`` says which applies (the forward
    pass that keeps residuals for a backward pass is training). True: ``x W_i`` for all timesteps
    before the loop, one large product; False: one small product per step inside the loop (see
    :func:`choose_hoist` for when each wins).
    """
    if hoist[1 if keep else 0]:
        return L.project_all(xs, W_i), lambda u: u
    M = L.mats(W_i)[0]
    return xs, lambda u: L.mm(u, M)


def _input_grads(L, W_i, xs, dGX):
    """``(dW_i, dxs)``: each one product over all timesteps and examples."""
    return L.weight_grad(xs, dGX), L.input_cotangent(dGX, W_i)


_LAYOUTS = {"batch": _Layout("batch"), "feature": _Layout("feature")}


# ----------------------------------------------------------------------------------------------------
# Elman: h_t = g(gx_t + h_{t-1} W_h)


def _elman_run(activation, unroll, L, hoist, W_i, W_h, b, xs, h0, mask, keep):
    g = _ACT[activation]
    M = L.mats(W_h)[0]
    inputs, proj = _inputs(L, W_i, xs, hoist, keep)

    def step(h, inp):
        u_t, m_t = inp
        gx_t = proj(u_t)
        h = _keep(m_t, g(gx_t + L.mm(h, M) + L.bias(b, gx_t)), h)
        return h, h

    hT, Hs = lax.scan(step, h0, (inputs, mask), unroll=unroll)  # Hs: the carries
    out = (_zero_unless(mask, Hs), hT)
    return (out, (W_i, W_h, xs, Hs, h0, mask)) if keep else out


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def elman_recurrence(activation: str, unroll: int, layout: str, hoist: tuple, W_i, W_h, b, xs, h0, mask):
    """Elman layer over time-major inputs: ``h_t = g(x_t W_i + b + h_{t-1} W_h)``.

    Shapes per ``layout``: ``"batch"``: ``xs (T, B, I)``, ``h0 (B, H)``, ``mask (T, B, 1)`` booleans
    or None; ``"feature"``: ``xs (T, I, B)``, ``h0 (H, B)``, ``mask (T, 1, B)``. Returns
    ``(ys, h_T)`` in the same layout. ``hoist``: ``(inference, training)`` booleans, see :func:`_inputs`.
    """
    return _elman_run(activation, unroll, _LAYOUTS[layout], hoist, W_i, W_h, b, xs, h0, mask, keep=False)


def _elman_fwd(activation, unroll, layout, hoist, W_i, W_h, b, xs, h0, mask):
    return _elman_run(activation, unroll, _LAYOUTS[layout], hoist, W_i, W_h, b, xs, h0, mask, keep=True)


def _elman_bwd(activation, unroll, layout, hoist, res, cts):
    L = _LAYOUTS[layout]
    W_i, W_h, xs, Hs, h0, mask = res
    dys, dhT = cts
    deriv = _DERIV[activation]
    M = L.mats(W_h)[1]

    def step(dh, inp):
        dy, s, m_t = inp
        da = _zero_unless(m_t, (dy + dh) * deriv(s))  # dE/da_t
        return _add(L.mm(da, M), _pass(m_t, dh)), da

    dh0, dA = lax.scan(step, dhT, (dys, Hs, mask), reverse=True, unroll=unroll)
    dW_i, dxs = _input_grads(L, W_i, xs, dA)
    return dW_i, L.weight_grad(shift_down(Hs, h0), dA), L.bias_grad(dA), dxs, dh0, None


elman_recurrence.defvjp(_elman_fwd, _elman_bwd)


# ----------------------------------------------------------------------------------------------------
# LSTM (i, f, g, o): z = gx_t + h W_h; c' = f c + i g; h' = o tanh(c')


def _lstm_run(unroll, L, hoist, W_i, W_h, b, xs, carry0, mask, keep):
    H = W_h.shape[0]
    M = L.mats(W_h)[0]
    inputs, proj = _inputs(L, W_i, xs, hoist, keep)

    def step(carry, inp):
        h, c = carry
        u_t, m_t = inp
        gx_t = proj(u_t)
        z = gx_t + L.mm(h, M) + L.bias(b, gx_t)
        i = jax.nn.sigmoid(L.gate(z, 0, H))
        f = jax.nn.sigmoid(L.gate(z, 1, H))
        g = jnp.tanh(L.gate(z, 2, H))
        o = jax.nn.sigmoid(L.gate(z, 3, H))
        c_new = f * c + i * g
        h_new = o * jnp.tanh(c_new)
        h, c = _keep(m_t, h_new, h), _keep(m_t, c_new, c)
        return (h, c), ((h, c, i, f, g, o) if keep else h)

    (hT, cT), res = lax.scan(step, (carry0.h, carry0.c), (inputs, mask), unroll=unroll)
    Hs = res[0] if keep else res
    out = (_zero_unless(mask, Hs), LSTMState(hT, cT))
    return (out, (W_i, W_h, xs) + res + (carry0, mask)) if keep else out


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def lstm_recurrence(unroll: int, layout: str, hoist: tuple, W_i, W_h, b, xs, carry0, mask):
    """LSTM layer over time-major inputs (shapes as :func:`elman_recurrence`), bias
    ``b = b_i + b_h``. ``carry0``: ``LSTMState(h, c)``. Returns ``(ys, LSTMState)``."""
    return _lstm_run(unroll, _LAYOUTS[layout], hoist, W_i, W_h, b, xs, carry0, mask, keep=False)


def _lstm_fwd(unroll, layout, hoist, W_i, W_h, b, xs, carry0, mask):
    return _lstm_run(unroll, _LAYOUTS[layout], hoist, W_i, W_h, b, xs, carry0, mask, keep=True)


def _lstm_bwd(unroll, layout, hoist, res, cts):
    L = _LAYOUTS[layout]
    W_i, W_h, xs, Hs, Cs, I, F, G, O, carry0, mask = res
    dys, dcarryT = cts
    M = L.mats(W_h)[1]

    def step(dcarry, inp):
        dh_c, dc_c = dcarry
        dy, c, c_prev, i, f, g, o, m_t = inp
        dh = _zero_unless(m_t, dy + dh_c)  # cotangent of the new h
        tc = jnp.tanh(c)
        dc = _zero_unless(m_t, dc_c) + dh * o * (1.0 - tc * tc)  # cotangent of the new c
        dz = L.cat([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f),
                    dc * i * (1.0 - g * g), dh * tc * o * (1.0 - o)])
        dh_prev = _add(L.mm(dz, M), _pass(m_t, dh_c))
        dc_prev = _add(dc * f, _pass(m_t, dc_c))
        return (dh_prev, dc_prev), dz

    C_prev = shift_down(Cs, carry0.c)
    (dh0, dc0), dZ = lax.scan(step, (dcarryT.h, dcarryT.c), (dys, Cs, C_prev, I, F, G, O, mask),
                              reverse=True, unroll=unroll)
    dW_i, dxs = _input_grads(L, W_i, xs, dZ)
    return dW_i, L.weight_grad(shift_down(Hs, carry0.h), dZ), L.bias_grad(dZ), dxs, LSTMState(dh0, dc0), None


lstm_recurrence.defvjp(_lstm_fwd, _lstm_bwd)


# ----------------------------------------------------------------------------------------------------
# GRU (r, z, n): gh = h W_h + b_h; r, z = sigma(gx + gh); n = tanh(gx_n + r gh_n); h' = (1-z) n + z h


def _gru_run(unroll, L, hoist, W_i, W_h, b_i, b_h, xs, h0, mask, keep):
    H = W_h.shape[0]
    M = L.mats(W_h)[0]
    inputs, proj = _inputs(L, W_i, xs, hoist, keep)

    def step(h, inp):
        u_t, m_t = inp
        gx_t = proj(u_t)
        gx_t = gx_t + L.bias(b_i, gx_t)
        gh = L.mm(h, M) + L.bias(b_h, gx_t)
        r = jax.nn.sigmoid(L.gate(gx_t, 0, H) + L.gate(gh, 0, H))
        z = jax.nn.sigmoid(L.gate(gx_t, 1, H) + L.gate(gh, 1, H))
        hn = L.gate(gh, 2, H)
        n = jnp.tanh(L.gate(gx_t, 2, H) + r * hn)
        h = _keep(m_t, (1.0 - z) * n + z * h, h)
        return h, ((h, r, z, n, hn) if keep else h)

    hT, res = lax.scan(step, h0, (inputs, mask), unroll=unroll)
    Hs = res[0] if keep else res
    out = (_zero_unless(mask, Hs), hT)
    return (out, (W_i, W_h, xs) + res + (h0, mask)) if keep else out


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def gru_recurrence(unroll: int, layout: str, hoist: tuple, W_i, W_h, b_i, b_h, xs, h0, mask):
    """GRU layer over time-major inputs (shapes as :func:`elman_recurrence`), biases ``b_i`` and
    ``b_h``. Returns ``(ys, h_T)``."""
    return _gru_run(unroll, _LAYOUTS[layout], hoist, W_i, W_h, b_i, b_h, xs, h0, mask, keep=False)


def _gru_fwd(unroll, layout, hoist, W_i, W_h, b_i, b_h, xs, h0, mask):
    return _gru_run(unroll, _LAYOUTS[layout], hoist, W_i, W_h, b_i, b_h, xs, h0, mask, keep=True)


def _gru_bwd(unroll, layout, hoist, res, cts):
    L = _LAYOUTS[layout]
    W_i, W_h, xs, Hs, R, Z, N, HN, h0, mask = res
    dys, dhT = cts
    M = L.mats(W_h)[1]
    H_prev = shift_down(Hs, h0)

    def step(dh_c, inp):
        dy, h_prev, r, z, n, hn, m_t = inp
        dh = _zero_unless(m_t, dy + dh_c)  # cotangent of the new h
        dan = dh * (1.0 - z) * (1.0 - n * n)
        dar = dan * hn * r * (1.0 - r)
        daz = dh * (h_prev - n) * z * (1.0 - z)
        dgh = L.cat([dar, daz, dan * r])
        dh_prev = _add(L.mm(dgh, M) + dh * z, _pass(m_t, dh_c))
        return dh_prev, (dgh, dan)

    dh0, (dGH, dAN) = lax.scan(step, dhT, (dys, H_prev, R, Z, N, HN, mask), reverse=True, unroll=unroll)
    H = W_h.shape[0]
    dGX = jnp.concatenate([dGH[:, :2 * H] if L.fm else dGH[..., :2 * H], dAN], axis=1 if L.fm else 2)
    dW_i, dxs = _input_grads(L, W_i, xs, dGX)
    return dW_i, L.weight_grad(H_prev, dGH), L.bias_grad(dGX), L.bias_grad(dGH), dxs, dh0, None


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
                 initial_carry=None, reverse: bool = False, unroll: int = 1, layout: str = "auto",
                 hoist: Union[bool, str] = "auto"):
    """Run a fusable cell (``cell.fused`` in :data:`FUSED_KINDS`) over a batch ``xs (B, T, I)``.

    Same results as ``jax.vmap`` of :func:`rnn_jax.unroll` (tested to 1e-10 in float64, values and
    gradients); returns ``(ys (B, T, H), final_carry)`` with batched carry leaves ``(B, H)``.
    ``layout``: ``"batch"``, ``"feature"`` or ``"auto"`` (:func:`choose_layout`); ``hoist``: take the
    input product of all timesteps before the loop (True), inside it (False), or ``"auto"``
    (:func:`choose_hoist`).
    """
    kind = cell.fused
    if kind not in FUSED_KINDS:
        raise ValueError(f"cell: {cell.name!r} has no fused recurrence (fused={kind!r}); "
                         f"use rnn_jax.unroll under jax.vmap")
    B, T, _ = xs.shape
    H = cell.hidden_size
    if layout == "auto":
        layout = choose_layout(kind, B, H)
    if layout not in _LAYOUTS:
        raise ValueError(f"layout: expected 'auto', 'batch' or 'feature', got {layout!r}")
    if hoist == "auto":
        hoist = choose_hoist(kind, B, T, H)
    elif isinstance(hoist, bool):
        hoist = (hoist, hoist)
    else:
        raise ValueError(f"hoist: expected True, False or 'auto', got {hoist!r}")
    L = _LAYOUTS[layout]
    xs_tm = jnp.swapaxes(xs, 0, 1)  # (T, B, I): the small tensor is the one transposed
    if reverse:
        xs_tm = xs_tm[::-1] if lengths is None else flip_valid_batch(xs_tm, lengths)
    xs_l = jnp.swapaxes(xs_tm, 1, 2) if L.fm else xs_tm  # (T, I, B) feature-major
    mask = None
    if lengths is not None:
        mask = jnp.arange(T)[:, None] < lengths[None, :]  # (T, B)
        mask = mask[:, None, :] if L.fm else mask[..., None]
    if initial_carry is None:
        initial_carry = jax.tree.map(lambda a: jnp.zeros((B,) + a.shape, a.dtype), cell.initial_carry(xs.dtype))
    to_l = (lambda a: a.T) if L.fm else (lambda a: a)
    carry0 = jax.tree.map(to_l, initial_carry)
    p = params
    if kind.startswith("elman"):
        ys, carry = elman_recurrence(kind[len("elman_"):], unroll, layout, hoist, p["W_i"], p["W_h"], p["b_i"],
                                     xs_l, carry0, mask)
    elif kind == "lstm":
        ys, carry = lstm_recurrence(unroll, layout, hoist, p["W_i"], p["W_h"], p["b_i"] + p["b_h"], xs_l,
                                    LSTMState(*carry0), mask)
    else:
        ys, carry = gru_recurrence(unroll, layout, hoist, p["W_i"], p["W_h"], p["b_i"], p["b_h"], xs_l, carry0,
                                   mask)
    if L.fm:
        ys = jnp.swapaxes(ys, 1, 2)  # (T, B, H)
    if reverse:
        ys = ys[::-1] if lengths is None else flip_valid_batch(ys, lengths)
    return jnp.swapaxes(ys, 0, 1), jax.tree.map(to_l, carry)


def choose_hoist(kind: str, batch: int, steps: int, hidden: int) -> tuple[bool, bool]:
    """``(hoist for inference, hoist for training)``: take the input product of all timesteps before
    the loop (one large product, but a ``(T, B, G*H)`` buffer written and read back) or one small
    product per step inside it.

    From ``python -m benchmarks.choices`` (2-core CPU, float32, the throughput grid; numbers in
    benchmarks/README.md): for the gated cells the hoisted forward alone was up to 2.2x SLOWER
    (GRU, B=16, T=1000: 89 against 41 ms; LSTM, B=64, H=512: 99 against 72 ms), while in training
    the two were within 8 % of each other, hoisting ahead for the LSTM at T <= 100. For the Elman
    cell (one gate, a small buffer) hoisting was ahead or level everywhere. GPUs and TPUs hoist.
    """
    del batch, hidden
    if jax.default_backend() != "cpu" or kind.startswith("elman"):
        return True, True
    return False, kind == "lstm" and steps <= 100


def choose_layout(kind: str, batch: int, hidden: int) -> str:
    """The step layout for this cell and size: ``"batch"`` everywhere, from measurements.

    ``python -m benchmarks.choices`` timed forward+backward for both layouts and scan unroll factors
    1, 2, 4, 8 over the throughput grid (Elman, LSTM, GRU; batch 1 to 64, H 128 to 512, T to 1000) on
    a 2-core CPU: the batch-major layout with ``unroll=1`` was the fastest or within 8 % of the
    fastest (inside run-to-run noise) at every size, while ``unroll=8`` cost up to 3x. The
    feature-major product ``W_h^T @ h`` is faster in isolation at batch 16 (99 against 68 GFLOP/s in
    a bare loop) but not inside the kernel. The arguments are kept so that a device or size where
    the measurements differ can be given its own rule; ``rnn(..., layout=, unroll=)`` overrides.
    """
    del kind, batch, hidden
    return "batch"
