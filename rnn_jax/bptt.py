"""Backpropagation through time written out by hand, following the seeds' derivation.

The model is the seeds' many-to-many network with a softmax output at every step, and the loss is the
sum of per-step cross-entropies over the valid steps, :math:`E = \\sum_{t<L} E_t`. For the Elman cell:

.. math::
    a_t = b + W s_{t-1} + U x_t, \\quad s_t = g(a_t), \\quad o_t = c + V s_t, \\quad p_t = \\mathrm{softmax}(o_t)

and BPTT gives (rows are timesteps, so ``S`` is ``(T, H)``; ``W = W_h^T``, ``U = W_i^T``, ``V = head W^T``):

.. math::
    \\delta^o_t &= p_t - \\mathrm{onehot}(y_t) \\quad (0 \\text{ for } t \\ge L) \\\\
    \\delta^s_t &= V^T \\delta^o_t + W^T \\delta^a_{t+1}, \\qquad \\delta^a_t = \\delta^s_t \\odot g'(a_t) \\\\
    \\partial E/\\partial V &= \\sum_t \\delta^o_t s_t^T, \\quad \\partial E/\\partial c = \\sum_t \\delta^o_t, \\\\
    \\partial E/\\partial W &= \\sum_t \\delta^a_t s_{t-1}^T,
    \\quad \\partial E/\\partial U = \\sum_t \\delta^a_t x_t^T, \\quad \\partial E/\\partial b = \\sum_t \\delta^a_t

which is the seeds' :math:`\\partial E_t/\\partial W = \\sum_{k \\le t} \\frac{\\partial E_t}{\\partial \\hat y_t}
\\frac{\\partial \\hat y_t}{\\partial s_t}\\frac{\\partial s_t}{\\partial s_k}\\frac{\\partial s_k}{\\partial W}`
summed over t, with the sum over k carried backwards by :math:`\\delta^s`. Only the deltas need the
reverse ``lax.scan``; every weight gradient is then ONE matrix product over all timesteps.

The LSTM and GRU versions follow the same plan with their gate derivatives. Params have the structure
of ``rnn_jax.many_to_many(rnn_jax.rnn(cell), O, input_size=I)``: ``{"embed": {}, "rnn": cell params,
"head": {"W", "b"}}``, so ``jax.grad`` of that model's loss is the reference.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax

from rnn_jax._ops import shift_down, valid_steps

__all__ = ["elman_bptt", "lstm_bptt", "gru_bptt", "softmax_loss_and_delta"]


def softmax_loss_and_delta(logits, targets, length):
    """Sum of valid per-step cross-entropies and ``dE/do_t = p_t - onehot(y_t)`` (zero past ``length``).

    Args:
      logits: ``o_t`` of one sequence, ``(T, V)``.
      targets: ``(T,)`` int ids.
      length: the number of valid steps (an int or a scalar array), or None (all ``T``).

    Returns:
      ``(E, delta)``: the scalar loss and ``(T, V)``.

    Examples:
      >>> E, d = rnn_jax.bptt.softmax_loss_and_delta(jnp.zeros((3, 4)), jnp.array([0, 1, 2]), 2)
      >>> round(float(E), 4), d[0].tolist(), bool(jnp.all(d[2] == 0))   # 2 ln 4; p - onehot; zero past the length
      (2.7726, [-0.75, 0.25, 0.25, 0.25], True)
    """
    T, V = logits.shape
    mask = valid_steps(T if length is None else length, T).astype(logits.dtype)  # (T,)
    logp = jax.nn.log_softmax(logits)
    onehot = jax.nn.one_hot(targets, V, dtype=logits.dtype)
    loss = -jnp.sum(jnp.sum(onehot * logp, -1) * mask)
    delta = (jnp.exp(logp) - onehot) * mask[:, None]  # (T, V)
    return loss, delta


def _head_grads(params, S, xs, targets, length):
    head = params["head"]
    logits = S @ head["W"] + jnp.broadcast_to(head["b"], (S.shape[0], head["b"].shape[0]))  # (T, O)
    loss, dO = softmax_loss_and_delta(logits, targets, length)
    return loss, dO, {"W": S.T @ dO, "b": dO.sum(0)}


_DERIV = {  # g'(a) from s = g(a)
    "tanh": lambda s: 1.0 - s * s,
    "sigmoid": lambda s: s * (1.0 - s),
    "relu": lambda s: (s > 0).astype(s.dtype),
}
_ACT = {"tanh": jnp.tanh, "sigmoid": jax.nn.sigmoid, "relu": jax.nn.relu}


def elman_bptt(params, xs, targets, length=None, activation: str = "tanh"):
    """Loss and gradients of the Elman many-to-many softmax model by hand. Returns ``(E, grads)``.

    Args:
      params: ``many_to_many(rnn(elman(H, activation)), V, input_size=I)``'s params (one sequence; no
        batch axis).
      xs: ``(T, I)``.
      targets: ``(T,)`` int ids in ``[0, V)``.
      length: the number of valid steps, or None (all ``T``).
      activation: ``"tanh"``, ``"sigmoid"`` or ``"relu"``, the cell's ``g``.

    Returns:
      ``(E, grads)``: the summed cross-entropy (a scalar) and its gradient, a pytree like ``params``.

    Examples:
      >>> model = rnn_jax.many_to_many(rnn_jax.rnn(rnn_jax.elman(5)), 4, input_size=3)
      >>> p = model.init(jax.random.key(0))
      >>> xs, ys = jax.random.normal(jax.random.key(1), (7, 3)), jnp.arange(7) % 4
      >>> def loss(p):
      ...     return rnn_jax.losses.softmax_cross_entropy(model.apply(p, xs)[0], ys, reduction="sum")
      >>> E, g = rnn_jax.bptt.elman_bptt(p, xs, ys)
      >>> auto = jax.grad(loss)(p)
      >>> bool(jnp.allclose(E, loss(p))), bool(jnp.allclose(g["rnn"]["W_h"], auto["rnn"]["W_h"], atol=1e-5))
      (True, True)
    """
    if activation not in _DERIV:
        raise ValueError(f"activation: expected one of {sorted(_DERIV)}, got {activation!r}")
    p, g = params["rnn"], _ACT[activation]
    H = p["W_h"].shape[0]
    A_x = xs @ p["W_i"] + jnp.broadcast_to(p["b_i"], (xs.shape[0], H))  # (T, H): U x_t + b for all t

    def fwd(s, ax):
        s = g(ax + s @ p["W_h"])
        return s, s

    s0 = jnp.zeros((H,), xs.dtype)
    _, S = lax.scan(fwd, s0, A_x)  # (T, H)
    loss, dO, head = _head_grads(params, S, xs, targets, length)
    dS_out = dO @ params["head"]["W"].T  # (T, H): V^T delta^o_t
    gprime = _DERIV[activation](S)  # (T, H)

    def bwd(da_next, inp):
        ds_out, gp = inp
        da = (ds_out + da_next @ p["W_h"].T) * gp
        return da, da

    _, dA = lax.scan(bwd, jnp.zeros((H,), xs.dtype), (dS_out, gprime), reverse=True)  # (T, H)
    S_prev = shift_down(S, s0)
    grads = {"embed": {}, "head": head, "rnn": {"W_i": xs.T @ dA, "W_h": S_prev.T @ dA, "b_i": dA.sum(0)}}
    return loss, grads


def lstm_bptt(params, xs, targets, length=None):
    """Loss and gradients of the LSTM many-to-many softmax model by hand (gate order i, f, g, o).

    Args:
      params: ``many_to_many(rnn(lstm(H)), V, input_size=I)``'s params (one sequence).
      xs: ``(T, I)``.
      targets: ``(T,)`` int ids in ``[0, V)``.
      length: the number of valid steps, or None (all ``T``).

    Returns:
      ``(E, grads)``: the summed cross-entropy and its gradient, a pytree like ``params``.

    Examples:
      >>> model = rnn_jax.many_to_many(rnn_jax.rnn(rnn_jax.lstm(5)), 4, input_size=3)
      >>> p = model.init(jax.random.key(0))
      >>> xs, ys = jax.random.normal(jax.random.key(1), (7, 3)), jnp.arange(7) % 4
      >>> E, g = rnn_jax.bptt.lstm_bptt(p, xs, ys, length=5)
      >>> auto = jax.grad(lambda p: rnn_jax.losses.softmax_cross_entropy(
      ...     model.apply(p, xs, 5)[0], ys, 5, reduction="sum"))(p)
      >>> bool(jnp.allclose(g["rnn"]["W_i"], auto["rnn"]["W_i"], atol=1e-5))
      True
    """
    p = params["rnn"]
    H = p["W_h"].shape[0]
    Zx = xs @ p["W_i"] + jnp.broadcast_to(p["b_i"] + p["b_h"], (xs.shape[0], 4 * H))  # (T, 4H)

    def fwd(carry, zx):
        h, c = carry
        z = zx + h @ p["W_h"]
        i, f, gg, o = (
            jax.nn.sigmoid(z[:H]),
            jax.nn.sigmoid(z[H : 2 * H]),
            jnp.tanh(z[2 * H : 3 * H]),
            jax.nn.sigmoid(z[3 * H :]),
        )
        c_new = f * c + i * gg
        h_new = o * jnp.tanh(c_new)
        return (h_new, c_new), (h_new, c_new, i, f, gg, o)

    zero = jnp.zeros((H,), xs.dtype)
    _, (Hs, Cs, I_, F, G, O_) = lax.scan(fwd, (zero, zero), Zx)
    loss, dO, head = _head_grads(params, Hs, xs, targets, length)
    dH_out = dO @ params["head"]["W"].T
    C_prev = shift_down(Cs, zero)

    def bwd(carry, inp):
        dz_next, dc_next, f_next = carry
        dh_out, c, c_prev, i, f, gg, o = inp
        dh = dh_out + dz_next @ p["W_h"].T
        tc = jnp.tanh(c)
        dc = dh * o * (1 - tc * tc) + dc_next * f_next
        dz = jnp.concatenate(
            [dc * gg * i * (1 - i), dc * c_prev * f * (1 - f), dc * i * (1 - gg * gg), dh * tc * o * (1 - o)]
        )
        return (dz, dc, f), dz

    init = (jnp.zeros((4 * H,), xs.dtype), zero, zero)
    _, dZ = lax.scan(bwd, init, (dH_out, Cs, C_prev, I_, F, G, O_), reverse=True)  # (T, 4H)
    H_prev = shift_down(Hs, zero)
    db = dZ.sum(0)
    grads = {"embed": {}, "head": head, "rnn": {"W_i": xs.T @ dZ, "W_h": H_prev.T @ dZ, "b_i": db, "b_h": db}}
    return loss, grads


def gru_bptt(params, xs, targets, length=None):
    """Loss and gradients of the GRU many-to-many softmax model by hand (r, z, n; reset after the product).

    Args:
      params: ``many_to_many(rnn(gru(H)), V, input_size=I)``'s params (one sequence).
      xs: ``(T, I)``.
      targets: ``(T,)`` int ids in ``[0, V)``.
      length: the number of valid steps, or None (all ``T``).

    Returns:
      ``(E, grads)``: the summed cross-entropy and its gradient, a pytree like ``params``.

    Examples:
      >>> model = rnn_jax.many_to_many(rnn_jax.rnn(rnn_jax.gru(5)), 4, input_size=3)
      >>> p = model.init(jax.random.key(0))
      >>> xs, ys = jax.random.normal(jax.random.key(1), (7, 3)), jnp.arange(7) % 4
      >>> E, g = rnn_jax.bptt.gru_bptt(p, xs, ys)
      >>> auto = jax.grad(lambda p: rnn_jax.losses.softmax_cross_entropy(model.apply(p, xs)[0], ys,
      ...                                                               reduction="sum"))(p)
      >>> bool(jnp.allclose(g["rnn"]["b_h"], auto["rnn"]["b_h"], atol=1e-5))
      True
    """
    p = params["rnn"]
    H = p["W_h"].shape[0]
    GX = xs @ p["W_i"] + jnp.broadcast_to(p["b_i"], (xs.shape[0], 3 * H))  # (T, 3H)

    def fwd(h, gx):
        gh = h @ p["W_h"] + p["b_h"]
        r = jax.nn.sigmoid(gx[:H] + gh[:H])
        z = jax.nn.sigmoid(gx[H : 2 * H] + gh[H : 2 * H])
        n = jnp.tanh(gx[2 * H :] + r * gh[2 * H :])
        h_new = (1 - z) * n + z * h
        return h_new, (h_new, r, z, n, gh[2 * H :])

    zero = jnp.zeros((H,), xs.dtype)
    _, (Hs, R, Z, N, HN) = lax.scan(fwd, zero, GX)
    loss, dO, head = _head_grads(params, Hs, xs, targets, length)
    dH_out = dO @ params["head"]["W"].T
    H_prev = shift_down(Hs, zero)

    def bwd(dgh_next_and_direct, inp):
        dgh_next, dh_direct_next = dgh_next_and_direct
        dh_out, h_prev, r, z, n, hn = inp
        dh = dh_out + dh_direct_next + dgh_next @ p["W_h"].T
        dn = dh * (1 - z)
        dan = dn * (1 - n * n)
        dar = dan * hn * r * (1 - r)
        daz = dh * (h_prev - n) * z * (1 - z)
        dgx = jnp.concatenate([dar, daz, dan])
        dgh = jnp.concatenate([dar, daz, dan * r])
        return (dgh, dh * z), (dgx, dgh)

    init = (jnp.zeros((3 * H,), xs.dtype), zero)
    _, (DGX, DGH) = lax.scan(bwd, init, (dH_out, H_prev, R, Z, N, HN), reverse=True)
    grads = {
        "embed": {},
        "head": head,
        "rnn": {"W_i": xs.T @ DGX, "W_h": H_prev.T @ DGH, "b_i": DGX.sum(0), "b_h": DGH.sum(0)},
    }
    return loss, grads
