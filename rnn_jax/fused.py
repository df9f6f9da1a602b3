"""Fused batched recurrences with a hand-written backward pass (``jax.custom_vjp``).

Autodiff of ``lax.scan`` accumulates every weight gradient inside the reverse loop: at each step it
adds an ``(H, G*H)`` outer product into a carried buffer, so the backward pass moves ``T`` times the
weight matrix through memory and runs ``T`` small products where one large one would do. This module
does what cuDNN does, in JAX, for the Elman, LSTM and GRU recurrences:

* the forward loop does one ``(B, H) @ (H, G*H)`` product per step and keeps the gate activations;
  the input product ``x_t W_i`` is either taken for all timesteps before the loop as ONE
  ``(T*B, I) @ (I, G*H)`` product or once per step inside it, whichever measured faster
  (``hoist="auto"``, see :func:`_hoist`);
* the backward loop (a reverse ``lax.scan``) computes only the state gradients: one
  ``(B, G*H) @ (G*H, H)`` product per step;
* every weight gradient is then ONE product over all timesteps and examples:
  ``dW_h = sum_{t,b} h_{t-1} dz_t^T``, ``dW_i = sum_{t,b} x_t dz_t^T`` (each bias gradient as one more
  row of one of them), and the input gradient ``dX = dZ W_i^T`` likewise.

**Packed steps.** A batch of at least ``PACK_MIN_BATCH`` rows with a mask runs each loop step on the
leading rows only, up to the last row valid at that step or at any later one (rounded up to one of at
most eight levels, multiples of 8). The batch is first put in order of decreasing length (a
permutation whose cotangent is the inverse gather), so a padded batch does work in proportion to its
valid steps, as PyTorch's packed sequences and cuDNN's variable-length RNNs do; the rows outside keep
their state and get zero outputs, as the masked step gives them. Each level is one loop over the range
of steps that needs it, so the steps at which every row is valid run exactly as without packing. Any
mask gives the unpacked values (the rows follow the mask, not an assumed shape); ``unroll > 1`` scans
every row, and so does a batch that ``jax.jit`` may have split over several devices (a process with
more than one device, outside ``shard_map``; each device packs its own part inside ``shard_map``).
Under ``jax.vmap`` with lengths that differ per mapped batch, each level's loop runs as long as its
longest mapped range (right, with no saving). With every length full nothing is skipped and the sort
costs up to 1.17x of the step (0.96-1.17x over five measurements of the Elman classifier);
``PACK_MIN_BATCH`` (read when a call is traced) set above a batch's size runs it unpacked.
benchmarks/README.md has the measurements.

Each recurrence has two differentiation rules with the same forward loop (``rule=``):

* ``"vjp"`` (batched calls): the backward pass above, a ``jax.custom_vjp``. Under ``jax.vmap`` a
  custom VJP's backward pass is mapped too, so every weight gradient would be formed per example and
  summed afterwards: right, but slow (an Elman layer at (B, T, I, H) = (64, 50, 128, 512), vmapped
  over single sequences, took 4.0x Flax's forward+backward time that way).
* ``"jvp"`` (calls without batch dimensions, which is what ``jax.vmap`` over single sequences runs): a
  ``jax.custom_jvp`` whose tangent recurrence carries only the state's tangent: the weights' tangents
  enter through ``U = x_t dW_i + h_{t-1} dW_h + db``, formed for all timesteps before the loop. JAX
  derives the backward pass by transposing it: the reverse loop carries only the state's cotangent,
  and each weight gradient is the transpose of one product over all timesteps, which ``jax.vmap``
  batches into one product over the mapped examples too. It also gives forward-mode and higher-order
  derivatives, which a custom VJP does not.

An input bias may be shared, ``(G*H,)``, or one per row, ``(B, G*H)``: a decoder that reads its
context at every step takes the context's part of the input product once per sequence as such a bias
(``Cell.fused``'s ``static``), not at every step.

The functions take arrays, never parameter dicts: a cell (:mod:`rnn_jax.cells`) owns its parameter
names and hands its kernel the matrices it needs (``Cell.fused``). Inputs are time-major: ``xs (T, B,
I)``, states ``(B, H)``, ``mask (T, B, 1)`` booleans (False past a sequence's length) or None.
Variable lengths follow the unroller's semantics exactly: frozen state and zero outputs past the
length; the final state is the last valid one. Padding is inert: values past a length reach neither
the outputs nor any gradient (masked steps compute on zeros). Tests check values and gradients against
the generic unroller to 1e-10 in float64.
"""
from __future__ import annotations

import functools
import operator
from functools import partial
from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from rnn_jax._ops import local_batch, shift_down, varying_like

__all__ = ["elman", "lstm", "gru"]

Hoist = Union[bool, str]
PACK_MIN_BATCH = 16  # smaller batches run every row at every step (module docstring, "Packed steps")


def _levels(B: int):
    """The row counts a step may be cut to: at most eight, each a multiple of 8, the last ``B``; None
    for a batch too small to pack."""
    if B < PACK_MIN_BATCH:
        return None
    unit = 8 * -(-B // 64)
    return tuple(range(unit, B, unit)) + (B,)


def _mask_levels(mask):
    """``_levels`` of a masked batch that packs (``_scan``), or None: no mask, a batch too small, or
    one that ``jax.jit`` may have split over devices (``local_batch``: rows taken by position, or
    sorted, would move between them)."""
    return None if mask is None or not local_batch(mask) else _levels(mask.shape[1])


def _scan(step, carry, xs, mask, *, reverse=False, unroll=1):
    """``lax.scan(step, carry, xs, reverse=reverse)``, each step run on the leading rows only: as
    many as the last row valid at that step or at any later one, rounded up to a level of
    ``_levels``. Those counts fall with time, so each level is one loop over a range of steps on its
    rows alone; the rows after them keep their carry and get zero outputs, which is what the masked
    step gives them (the caller's step must give exactly that). Every leaf of ``carry``, of ``xs``'s
    per-step slices and of the outputs has the batch as its leading axis. Any mask is right; a batch
    in order of decreasing length (``_by_length``) gains the most. ``unroll > 1`` and the batches
    ``_mask_levels`` declines scan every row; inside ``shard_map`` each device packs its own part."""
    levels = None if unroll != 1 else _mask_levels(mask)
    if levels is None or mask.shape[0] == 0:
        return lax.scan(step, carry, xs, reverse=reverse, unroll=unroll)
    T, B = mask.shape[:2]
    last = jnp.max(jnp.where(mask[..., 0], jnp.arange(1, B + 1), 0), axis=1)  # (T,) last valid row + 1
    need = lax.cummax(last, axis=0, reverse=True)  # rows needed at step t or later: falls with t
    ends = [jnp.sum(need > k) for k in levels[:-1]] + [0]  # level j runs steps [ends[j], ends[j - 1])
    spans = [(k, ends[j], T if j == 0 else ends[j - 1]) for j, k in enumerate(levels)]
    y_shapes = jax.eval_shape(step, carry, jax.tree.map(lambda a: a[0], xs))[1]
    ys = varying_like(jax.tree.map(lambda s: jnp.zeros((T,) + s.shape, s.dtype), y_shapes), xs)  # shard_map

    def level(k, lo, hi, carry, ys):
        def body(i, c_ys):
            c, ys = c_ys
            t = lo + hi - 1 - i if reverse else i
            x = jax.tree.map(lambda a: lax.dynamic_slice(a, (t,) + (0,) * (a.ndim - 1), (1, k) + a.shape[2:])[0], xs)
            c, y = step(c, x)
            return c, jax.tree.map(lambda b, v: lax.dynamic_update_slice(b, v[None], (t,) + (0,) * v.ndim), ys, y)

        c, ys = lax.fori_loop(lo, hi, body, (jax.tree.map(lambda a: a[:k], carry), ys))
        return jax.tree.map(lambda a, top: jnp.concatenate([top, a[k:]]) if k < B else top, carry, c), ys

    for k, lo, hi in (spans if reverse else spans[::-1]):
        carry, ys = level(k, lo, hi, carry, ys)
    return carry, ys


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _permute(a, order, axis):
    """``a`` with its ``axis`` put in the order ``order`` (a permutation); its cotangent is put back by
    a gather (autodiff of ``take`` would scatter-add)."""
    return jnp.take(a, order, axis=axis)


def _permute_fwd(a, order, axis):
    return jnp.take(a, order, axis=axis), order


def _permute_bwd(axis, order, ct):
    return jnp.take(ct, jnp.argsort(order), axis=axis), None


_permute.defvjp(_permute_fwd, _permute_bwd)


def _by_length(rule: str, run, xs, state0, mask, b):
    """``run(xs, state0, mask, b)`` on the batch's rows in order of decreasing valid length, so that
    the rows a step needs lead the batch (``_scan``); results in the caller's order. ``b``: an input
    bias, shared ``(G*H,)`` or one per row ``(B, G*H)``."""
    if _mask_levels(mask) is None:
        return run(xs, state0, mask, b)
    # the JVP rule needs a forward-mode derivative, which a custom VJP has not: take's own
    permute = _permute if rule == "vjp" else (lambda a, order, axis: jnp.take(a, order, axis=axis))
    order = jnp.argsort(-jnp.sum(mask[..., 0], axis=0), stable=True)
    undo = jnp.argsort(order)
    ys, final = run(permute(xs, order, 1), jax.tree.map(lambda a: permute(a, order, 0), state0),
                    jnp.take(mask, order, axis=1), b if b.ndim == 1 else permute(b, order, 0))
    return permute(ys, undo, 1), jax.tree.map(lambda a: permute(a, undo, 0), final)


def _checked_bias(b, xs):
    """``b`` if it is an input bias of ``xs (T, B, I)``'s recurrence, shared or per row (``_bias``)."""
    if b.ndim == 2 and b.shape[0] != xs.shape[1] or b.ndim not in (1, 2):
        raise ValueError(f"b: expected shape (G*H,) or (B={xs.shape[1]}, G*H), got {b.shape}")
    return b


def _bias(b, shape):
    """An input bias for a step on ``shape = (k, G*H)``: shared ``(G*H,)``, or one per row ``(B, G*H)``
    of which a packed step (``_scan``) takes the leading ``k``."""
    return jnp.broadcast_to(b if b.ndim == 1 else b[:shape[0]], shape)


def _keep(m, new, old):
    """``new`` where the step is valid, else ``old`` (no mask: always ``new``)."""
    return new if m is None else jnp.where(m, new, old)


def _zero_unless(m, a):
    return a if m is None else jnp.where(m, a, jnp.zeros_like(a))


def _pass(m, d):
    """The part of a state's cotangent that flows straight through an invalid (frozen) step."""
    return None if m is None else jnp.where(m, jnp.zeros_like(d), d)


def _add(a, b):
    return a if b is None else a + b


def _tangent(t):
    """A tangent, or None where it is a symbolic zero (that input is not being differentiated)."""
    return None if isinstance(t, SymbolicZero) else t


def _linear(shape, dtype, *terms):
    """The sum of the ``(a, b)`` products ``a @ b`` and the ``(bias,)`` broadcasts whose tangent parts
    are present (None marks an absent tangent); zeros of ``shape`` when none is."""
    parts = []
    for term in terms:
        if any(t is None for t in term):
            continue
        parts.append(term[0] @ term[1] if len(term) == 2 else jnp.broadcast_to(term[0], shape))
    return functools.reduce(operator.add, parts) if parts else jnp.zeros(shape, dtype)


def _or_zeros(t, like):
    return jnp.zeros_like(like) if t is None else t


def _blocks(a, n):
    """``(..., n*H) -> n arrays (..., H)``."""
    return jnp.split(a, n, axis=-1)


def _kernel(rule: str, vjp, jvp):
    """The recurrence with the differentiation rule asked for (module docstring)."""
    if rule not in ("vjp", "jvp"):
        raise ValueError(f"rule: expected 'vjp' or 'jvp', got {rule!r}")
    return vjp if rule == "vjp" else jvp


def _weight_grad(S_prev, dZ):
    """``sum_{t,b} s_{t-1} dz_t^T``: one product over all timesteps and examples.

    For a batch on one device it is written on the ``(T*B, .)`` matrices: an einsum over the 3-D arrays
    compiled to copies of both operands before the product, and made training steps (B = 32-64) 2-17 %
    slower in 13 of 15 side-by-side comparisons (5 % faster in two). For one sequence (B = 1) the einsum
    was faster (Elman fwd+bwd at T=100, H=128: 0.50 against 0.65 ms).

    When the process has several devices the batch may be split over them (data parallelism), and a
    ``(T*B, .)`` matrix cannot carry a split of its ``B`` part: the partitioner then gathers every
    ``(T, B, .)`` operand onto every device and repeats the whole product on each. The contraction over
    ``(T, B)`` is split instead (a local product per device, one sum of the ``(H, G*H)`` results): data-
    parallel training steps on two CPU devices took 0.63-0.79x as long as with the matrices. On one
    device that form was 0-6 % slower, so it is used only when there are several devices.
    benchmarks/README.md has the measurements.
    """
    if S_prev.shape[1] == 1:
        return jnp.einsum("tbh,tbg->hg", S_prev, dZ)
    if jax.device_count() > 1:
        return lax.dot_general(S_prev, dZ, (((0, 1), (0, 1)), ((), ())))
    rows = (((0,), (0,)), ((), ()))
    return lax.dot_general(S_prev.reshape(-1, S_prev.shape[-1]), dZ.reshape(-1, dZ.shape[-1]), rows)


def _inputs(W_i, xs, hoist_now):
    """(what the forward loop scans over, its map to the step's input product ``gx_t``)."""
    if hoist_now:
        return xs @ W_i, lambda u: u  # (T, B, G*H): one product for every timestep
    return xs, lambda u: u @ W_i


def _weight_bias_grad(S_prev, dZ, b):
    """``(sum_{t,b} s_{t-1} dz_t^T, sum_{t,b} dz_t)``: the bias gradient as one more row of the weight
    gradient's product (``S_prev`` with a column of ones), not a pass of its own over ``dZ``: the GRU
    classifier's weight and bias gradients took 0.86-0.87x as long that way (measured alone). For a
    bias ``b`` per row ``(B, G*H)`` its gradient is a sum over time alone."""
    if b.ndim == 2:
        return _weight_grad(S_prev, dZ), jnp.sum(dZ, axis=0)
    g = _weight_grad(jnp.concatenate([S_prev, jnp.ones(S_prev.shape[:2] + (1,), S_prev.dtype)], axis=2), dZ)
    return g[:-1], g[-1]


def _input_grads(W_i, xs, dGX):
    """``(dW_i, dxs)``: each one product over all timesteps and examples."""
    return _weight_grad(xs, dGX), dGX @ W_i.T


def _hoist(hoist: Hoist, cpu_rule: tuple[bool, bool]) -> tuple[bool, bool]:
    """``(hoist for inference, hoist for training)`` from the user's choice or, for ``"auto"``, from
    measurements (``python -m benchmarks.choices``, 2-core CPU, float32; benchmarks/README.md).

    For the gated cells the hoisted forward alone was up to 2.2x SLOWER on the CPU (GRU, B=16, T=1000:
    89 against 41 ms; LSTM, B=64, H=512: 99 against 72 ms), while in training the two were within 8 %
    of each other, hoisting ahead for the LSTM at T <= 100. For the Elman cell (one gate, a small
    buffer) hoisting was ahead or level everywhere. GPUs and TPUs hoist. ``cpu_rule`` is the
    recurrence's own ``(inference, training)`` choice on the CPU.
    """
    if hoist is True or hoist is False:
        return hoist, hoist
    if hoist != "auto":
        raise ValueError(f"hoist: expected True, False or 'auto', got {hoist!r}")
    if jax.default_backend() != "cpu":
        return True, True
    return cpu_rule


# ----------------------------------------------------------------------------------------------------
# Elman: h_t = g(a_t), a_t = gx_t + b + h_{t-1} W_h


def _elman_run(g, derivative, unroll, hoist, W_i, W_h, b, xs, h0, mask, keep):
    inputs, proj = _inputs(W_i, xs, hoist[1 if keep else 0])
    keep_pre = keep and derivative is None  # g'(a) from a, not from g(a): keep the pre-activations

    def step(h, inp):
        u_t, m_t = inp
        a = proj(u_t) + h @ W_h + _bias(b, h.shape)
        h = _keep(m_t, g(a), h)
        return h, ((h, a) if keep_pre else h)

    hT, res = _scan(step, h0, (inputs, mask), mask, unroll=unroll)
    Hs = res[0] if keep_pre else res  # (T, B, H): the states
    out = (_zero_unless(mask, Hs), hT)
    return (out, (W_i, W_h, b, xs, res, h0, mask)) if keep else out


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2, 3))
def _elman(g, derivative, unroll, hoist, W_i, W_h, b, xs, h0, mask):
    return _elman_run(g, derivative, unroll, hoist, W_i, W_h, b, xs, h0, mask, keep=False)


def _elman_fwd(g, derivative, unroll, hoist, W_i, W_h, b, xs, h0, mask):
    return _elman_run(g, derivative, unroll, hoist, W_i, W_h, b, xs, h0, mask, keep=True)


def _elman_bwd(g, derivative, unroll, hoist, res, cts):
    W_i, W_h, b, xs, kept, h0, mask = res
    dys, dhT = cts
    Hs = kept if derivative is not None else kept[0]
    W_hT = W_h.T

    def step(dh, inp):
        dy, k, m_t = inp
        if derivative is not None:
            da = (dy + dh) * derivative(k)  # g'(a) written with s = g(a)
        else:
            da = jax.vjp(g, k[1])[1](dy + dh)[0]  # any g: its own VJP at the kept pre-activation
        da = _zero_unless(m_t, da)  # dE/da_t
        return _add(da @ W_hT, _pass(m_t, dh)), da

    dh0, dA = _scan(step, dhT, (dys, kept, mask), mask, reverse=True, unroll=unroll)
    dW_i, dxs = _input_grads(W_i, xs, dA)
    dW_h, db = _weight_bias_grad(shift_down(Hs, h0), dA, b)
    return dW_i, dW_h, db, dxs, dh0, None


_elman.defvjp(_elman_fwd, _elman_bwd)


@partial(jax.custom_jvp, nondiff_argnums=(0, 1, 2, 3))
def _elman_t(g, derivative, unroll, hoist, W_i, W_h, b, xs, h0, mask):
    return _elman_run(g, derivative, unroll, hoist, W_i, W_h, b, xs, h0, mask, keep=False)


def _elman_jvp(g, derivative, unroll, hoist, primals, tangents):
    W_i, W_h, b, xs, h0, mask = primals
    tW_i, tW_h, tb, txs, th0, _ = map(_tangent, tangents)
    out, (_, _, _, _, kept, _, _) = _elman_run(g, derivative, unroll, hoist, W_i, W_h, b, xs, h0, mask, keep=True)
    Hs = kept if derivative is not None else kept[0]
    U = _linear(Hs.shape, Hs.dtype, (xs, tW_i), (txs, W_i), (shift_down(Hs, h0), tW_h), (tb,))  # (T, B, H)
    factor = derivative(Hs) if derivative is not None else kept[1]  # g'(a_t), or a_t for g's own JVP

    def step(dh, inp):
        u, k, m_t = inp
        da = u + dh @ W_h
        dh = _keep(m_t, k * da if derivative is not None else jax.jvp(g, (k,), (da,))[1], dh)
        return dh, dh

    dhT, dHs = lax.scan(step, _or_zeros(th0, h0), (U, factor, mask), unroll=unroll)
    return out, (_zero_unless(mask, dHs), dhT)


_elman_t.defjvp(_elman_jvp, symbolic_zeros=True)


def elman(W_i, W_h, b, xs, h0, mask=None, *, activation: Callable, derivative: Optional[Callable] = None,
          unroll: int = 1, hoist: Hoist = "auto", rule: str = "vjp"):
    """Elman recurrence ``h_t = g(x_t W_i + b + h_{t-1} W_h)`` over ``xs (T, B, I)``; returns
    ``(ys (T, B, H), h_T (B, H))``. ``b``: ``(H,)``, or ``(B, H)`` for one per row.

    ``activation`` is ``g``, any function of the pre-activation. ``derivative``: ``g'`` written as a
    function of the OUTPUT ``s = g(a)`` (``1 - s^2`` for tanh), which lets the forward pass keep
    only the states; None makes the backward pass take ``g``'s own VJP at the kept pre-activations
    (exact for any ``g``, one more ``(T, B, H)`` buffer). ``rule``: ``"vjp"`` or ``"jvp"`` (module
    docstring).

    Args:
      W_i: ``(I, H)``.
      W_h: ``(H, H)``.
      b: ``(H,)`` or ``(B, H)``.
      xs: ``(T, B, I)``, time-major.
      h0: ``(B, H)``.
      mask: ``(T, B, 1)`` (1 for valid steps) or None.
      activation: ``g``.
      derivative: ``g'`` as a function of ``g``'s output, or None.
      unroll: steps per iteration of the compiled loop.
      hoist: take all input products before the loop (True, False or ``"auto"``).
      rule: ``"vjp"`` or ``"jvp"``.

    Returns:
      ``(ys (T, B, H), h_T (B, H))``.

    Examples:
      >>> cell = rnn_jax.elman(4)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> xs = jax.random.normal(jax.random.key(1), (6, 2, 3))
      >>> ys, h = rnn_jax.fused.elman(p["W_i"], p["W_h"], p["b_i"], xs, jnp.zeros((2, 4)), activation=jnp.tanh,
      ...                             derivative=lambda s: 1 - s * s)
      >>> bool(jnp.allclose(ys, rnn_jax.unroll(cell, p, xs.swapaxes(0, 1))[0].swapaxes(0, 1), atol=1e-6))
      True
    """
    run = _kernel(rule, _elman, _elman_t)
    return _by_length(rule, lambda xs, h0, mask, b: run(activation, derivative, unroll, _hoist(hoist, (True, True)),
                                                        W_i, W_h, b, xs, h0, mask), xs, h0, mask, _checked_bias(b, xs))


# ----------------------------------------------------------------------------------------------------
# LSTM (i, f, g, o): z = gx_t + b + h W_h; c' = f c + i g; h' = o tanh(c')


def _lstm_run(unroll, hoist, W_i, W_h, b, xs, state0, mask, keep):
    H = W_h.shape[0]
    inputs, proj = _inputs(W_i, xs, hoist[1 if keep else 0])

    def step(state, inp):
        h, c = state
        u_t, m_t = inp
        z = proj(u_t) + h @ W_h + _bias(b, (h.shape[0], 4 * H))  # (B, 4H)
        i = jax.nn.sigmoid(z[:, :H])
        f = jax.nn.sigmoid(z[:, H:2 * H])
        g = jnp.tanh(z[:, 2 * H:3 * H])
        o = jax.nn.sigmoid(z[:, 3 * H:])
        c_new = f * c + i * g
        h_new = o * jnp.tanh(c_new)
        h, c = _keep(m_t, h_new, h), _keep(m_t, c_new, c)
        return (h, c), ((h, c, i, f, g, o) if keep else h)

    (hT, cT), res = _scan(step, state0, (inputs, mask), mask, unroll=unroll)
    Hs = res[0] if keep else res
    out = (_zero_unless(mask, Hs), (hT, cT))
    return (out, (W_i, W_h, b, xs) + res + (state0, mask)) if keep else out


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _lstm(unroll, hoist, W_i, W_h, b, xs, state0, mask):
    return _lstm_run(unroll, hoist, W_i, W_h, b, xs, state0, mask, keep=False)


def _lstm_fwd(unroll, hoist, W_i, W_h, b, xs, state0, mask):
    return _lstm_run(unroll, hoist, W_i, W_h, b, xs, state0, mask, keep=True)


def _lstm_bwd(unroll, hoist, res, cts):
    W_i, W_h, b, xs, Hs, Cs, I, F, G, O, state0, mask = res
    dys, (dhT, dcT) = cts
    W_hT = W_h.T

    def step(dstate, inp):
        dh_c, dc_c = dstate
        dy, c, c_prev, i, f, g, o, m_t = inp
        dh = _zero_unless(m_t, dy + dh_c)  # cotangent of the new h
        tc = jnp.tanh(c)
        dc = _zero_unless(m_t, dc_c) + dh * o * (1.0 - tc * tc)  # cotangent of the new c
        dz = jnp.concatenate([dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f),
                              dc * i * (1.0 - g * g), dh * tc * o * (1.0 - o)], axis=1)
        dh_prev = _add(dz @ W_hT, _pass(m_t, dh_c))
        dc_prev = _add(dc * f, _pass(m_t, dc_c))
        return (dh_prev, dc_prev), dz

    C_prev = shift_down(Cs, state0[1])
    (dh0, dc0), dZ = _scan(step, (dhT, dcT), (dys, Cs, C_prev, I, F, G, O, mask), mask, reverse=True,
                            unroll=unroll)
    dW_i, dxs = _input_grads(W_i, xs, dZ)
    dW_h, db = _weight_bias_grad(shift_down(Hs, state0[0]), dZ, b)
    return dW_i, dW_h, db, dxs, (dh0, dc0), None


_lstm.defvjp(_lstm_fwd, _lstm_bwd)


@partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _lstm_t(unroll, hoist, W_i, W_h, b, xs, state0, mask):
    return _lstm_run(unroll, hoist, W_i, W_h, b, xs, state0, mask, keep=False)


def _lstm_jvp(unroll, hoist, primals, tangents):
    W_i, W_h, b, xs, state0, mask = primals
    tW_i, tW_h, tb, txs, tstate0, _ = tangents
    tW_i, tW_h, tb, txs = map(_tangent, (tW_i, tW_h, tb, txs))
    th0, tc0 = map(_tangent, tstate0)
    out, res = _lstm_run(unroll, hoist, W_i, W_h, b, xs, state0, mask, keep=True)
    Hs, Cs, I, F, G, O = res[4:10]
    H = W_h.shape[0]
    U = _linear(I.shape[:2] + (4 * H,), Hs.dtype, (xs, tW_i), (txs, W_i), (shift_down(Hs, state0[0]), tW_h), (tb,))
    # dc' = f dc + K_i dz_i + K_f dz_f + K_g dz_g; dh' = P dz_o + Q dc'. The factors are separate
    # arrays: slicing one inside the loop would be a loop of its own once JAX splits the known part out.
    K = (G * I * (1.0 - I), shift_down(Cs, state0[1]) * F * (1.0 - F), I * (1.0 - G * G))
    tc = jnp.tanh(Cs)
    P, Q = tc * O * (1.0 - O), O * (1.0 - tc * tc)

    def step(tstate, inp):
        dh, dc = tstate
        u, (ki, kf, kg), f, p, q, m_t = inp
        dz_i, dz_f, dz_g, dz_o = _blocks(u + dh @ W_h, 4)  # (B, H) each
        dc_new = f * dc + ki * dz_i + kf * dz_f + kg * dz_g
        dh_new = p * dz_o + q * dc_new
        dh, dc = _keep(m_t, dh_new, dh), _keep(m_t, dc_new, dc)
        return (dh, dc), dh

    t0 = (_or_zeros(th0, state0[0]), _or_zeros(tc0, state0[1]))
    tT, dHs = lax.scan(step, t0, (U, K, F, P, Q, mask), unroll=unroll)
    return out, (_zero_unless(mask, dHs), tT)


_lstm_t.defjvp(_lstm_jvp, symbolic_zeros=True)


def lstm(W_i, W_h, b, xs, state0, mask=None, *, unroll: int = 1, hoist: Hoist = "auto", rule: str = "vjp"):
    """LSTM recurrence (gates ``i, f, g, o`` along the last axis) over ``xs (T, B, I)`` with one bias
    ``b`` (the sum of both of PyTorch's): ``(4H,)``, or ``(B, 4H)`` for one per row. ``state0 = (h0, c0)``,
    each ``(B, H)``. Returns ``(ys (T, B, H), (h_T, c_T))``. ``rule``: ``"vjp"`` or ``"jvp"`` (module
    docstring).

    Args:
      W_i: ``(I, 4H)``.
      W_h: ``(H, 4H)``.
      b: ``(4H,)`` or ``(B, 4H)``.
      xs: ``(T, B, I)``, time-major.
      state0: ``(h0, c0)``, each ``(B, H)``.
      mask: ``(T, B, 1)`` (1 for valid steps) or None.
      unroll: steps per iteration of the compiled loop.
      hoist: take all input products before the loop (True, False or ``"auto"``).
      rule: ``"vjp"`` or ``"jvp"``.

    Returns:
      ``(ys (T, B, H), (h_T, c_T))``.

    Examples:
      >>> cell = rnn_jax.lstm(4)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> xs = jax.random.normal(jax.random.key(1), (6, 2, 3))
      >>> z = jnp.zeros((2, 4))
      >>> ys, (h, c) = rnn_jax.fused.lstm(p["W_i"], p["W_h"], p["b_i"] + p["b_h"], xs, (z, z))
      >>> bool(jnp.allclose(ys, rnn_jax.unroll(cell, p, xs.swapaxes(0, 1))[0].swapaxes(0, 1), atol=1e-6))
      True
    """
    run = _kernel(rule, _lstm, _lstm_t)
    return _by_length(rule, lambda xs, state0, mask, b: run(unroll, _hoist(hoist, (False, xs.shape[0] <= 100)), W_i,
                                                            W_h, b, xs, state0, mask),
                      xs, tuple(state0), mask, _checked_bias(b, xs))


# ----------------------------------------------------------------------------------------------------
# GRU (r, z, n): gh = h W_h + b_h; r, z = sigma(gx + gh); n = tanh(gx_n + r gh_n); h' = (1-z) n + z h


def _gru_run(unroll, hoist, W_i, W_h, b_i, b_h, xs, h0, mask, keep):
    H = W_h.shape[0]
    inputs, proj = _inputs(W_i, xs, hoist[1 if keep else 0])

    def step(h, inp):
        u_t, m_t = inp
        gx = proj(u_t) + _bias(b_i, (h.shape[0], 3 * H))  # (B, 3H)
        gh = h @ W_h + jnp.broadcast_to(b_h, gx.shape)
        r = jax.nn.sigmoid(gx[:, :H] + gh[:, :H])
        z = jax.nn.sigmoid(gx[:, H:2 * H] + gh[:, H:2 * H])
        hn = gh[:, 2 * H:]
        n = jnp.tanh(gx[:, 2 * H:] + r * hn)
        new = _keep(m_t, (1.0 - z) * n + z * h, h)
        if not keep:
            return new, new
        # What the derivative rules need of this step, formed here while its operands are at hand:
        # d h'/d a_n = (1 - z)(1 - n^2) =: a and the factors c = d h' / d gh (r, z, n blocks), so that
        # d gh = dh' * c. Formed after the loop from kept r, z, n, gh_n, they took four passes over
        # (T, B, H) arrays and a concatenation of the (T, B, 3H) result (3.6 ms of a 37 ms GRU
        # classifier step, profile); with the input gradients below, the GRU classifier's and character
        # model's steps took 0.92-0.95x as long (four runs), the encoder-decoder's 1.00-1.02x.
        a = (1.0 - z) * (1.0 - n * n)
        c = jnp.concatenate([a * hn * r * (1.0 - r), (h - n) * z * (1.0 - z), a * r], axis=1)
        return new, (new, c, z, a)

    hT, res = _scan(step, h0, (inputs, mask), mask, unroll=unroll)
    Hs = res[0] if keep else res
    out = (_zero_unless(mask, Hs), hT)
    return (out, (W_i, W_h, b_i, b_h, xs) + res + (h0, mask)) if keep else out


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _gru(unroll, hoist, W_i, W_h, b_i, b_h, xs, h0, mask):
    return _gru_run(unroll, hoist, W_i, W_h, b_i, b_h, xs, h0, mask, keep=False)


def _gru_fwd(unroll, hoist, W_i, W_h, b_i, b_h, xs, h0, mask):
    return _gru_run(unroll, hoist, W_i, W_h, b_i, b_h, xs, h0, mask, keep=True)


def _gru_bwd(unroll, hoist, res, cts):
    W_i, W_h, b_i, b_h, xs, Hs, C, Z, A, h0, mask = res
    dys, dhT = cts
    H = W_h.shape[0]
    W_hT = W_h.T

    # Every gate cotangent is the state's cotangent dh times a factor kept by the forward pass (C, A),
    # so the loop carries dh alone (one product, two elementwise passes per step; measured 2-3 %
    # faster on the training-step benchmark's GRU steps than forming the gate cotangents inside it).
    def step(dh_c, inp):
        dy, c, z, m_t = inp
        dh = _zero_unless(m_t, dy + dh_c)  # cotangent of the new h
        dgh = jnp.tile(dh, (1, 3)) * c
        return _add(dgh @ W_hT + dh * z, _pass(m_t, dh_c)), dh

    dh0, dH = _scan(step, dhT, (dys, C, Z, mask), mask, reverse=True, unroll=unroll)
    dGH = jnp.tile(dH, (1, 1, 3)) * C
    # The input's gate cotangents are dGH's but for the n block, dH * a against dGH's dH * a * r: the
    # difference E is one (T, B, H) array, not a second (T, B, 3H) one (the GRU classifier's step:
    # 0.94-0.98x, three runs; the encoder-decoder's, whose inputs need their gradient, 0.98-1.03x).
    E = dH * (A - C[..., 2 * H:])
    (dW_i, db_i), (dW_e, db_e) = _weight_bias_grad(xs, dGH, b_i), _weight_bias_grad(xs, E, b_i)
    dW_i, db_i = dW_i.at[:, 2 * H:].add(dW_e), db_i.at[..., 2 * H:].add(db_e)
    dxs = dGH @ W_i.T + E @ W_i[:, 2 * H:].T
    dW_h, db_h = _weight_bias_grad(shift_down(Hs, h0), dGH, b_h)
    return dW_i, dW_h, db_i, db_h, dxs, dh0, None


_gru.defvjp(_gru_fwd, _gru_bwd)


@partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _gru_t(unroll, hoist, W_i, W_h, b_i, b_h, xs, h0, mask):
    return _gru_run(unroll, hoist, W_i, W_h, b_i, b_h, xs, h0, mask, keep=False)


def _gru_jvp(unroll, hoist, primals, tangents):
    W_i, W_h, b_i, b_h, xs, h0, mask = primals
    tW_i, tW_h, tb_i, tb_h, txs, th0, _ = map(_tangent, tangents)
    out, res = _gru_run(unroll, hoist, W_i, W_h, b_i, b_h, xs, h0, mask, keep=True)
    Hs, C, Z, A = res[5:9]
    H_prev = shift_down(Hs, h0)
    shape = C.shape
    TGX = _linear(shape, Hs.dtype, (xs, tW_i), (txs, W_i), (tb_i,))       # tangent of x W_i + b_i
    V = _linear(shape, Hs.dtype, (H_prev, tW_h), (tb_h,))                    # ... of h W_h + b_h but dh
    # dh' = (1 - z) dn + (h - n) dz + z dh = sum over blocks of C (gx_r + gh_r, gx_z + gh_z, gh_n)
    # + A gx_n + z dh, with the backward pass's factors C; all but C (dh W_h) + z dh is known now.
    gx_r, gx_z, gx_n = _blocks(TGX, 3)
    E = sum(_blocks(C * (V + jnp.concatenate([gx_r, gx_z, jnp.zeros_like(gx_n)], axis=2)), 3)) + A * gx_n

    def step(dh, inp):
        c, z, e, m_t = inp
        dh = _keep(m_t, sum(_blocks(c * (dh @ W_h), 3)) + z * dh + e, dh)
        return dh, dh

    dhT, dHs = lax.scan(step, _or_zeros(th0, h0), (C, Z, E, mask), unroll=unroll)
    return out, (_zero_unless(mask, dHs), dhT)


_gru_t.defjvp(_gru_jvp, symbolic_zeros=True)


def gru(W_i, W_h, b_i, b_h, xs, h0, mask=None, *, unroll: int = 1, hoist: Hoist = "auto", rule: str = "vjp"):
    """GRU recurrence (gates ``r, z, n``, reset after the recurrent product) over ``xs (T, B, I)``
    with the input and recurrent biases ``b_i`` (3H,) or (B, 3H) for one per row, and ``b_h`` (3H,).
    Returns ``(ys (T, B, H), h_T (B, H))``. ``rule``: ``"vjp"`` or ``"jvp"`` (module docstring).

    Args:
      W_i: ``(I, 3H)``.
      W_h: ``(H, 3H)``.
      b_i: ``(3H,)`` or ``(B, 3H)``.
      b_h: ``(3H,)``.
      xs: ``(T, B, I)``, time-major.
      h0: ``(B, H)``.
      mask: ``(T, B, 1)`` (1 for valid steps) or None.
      unroll: steps per iteration of the compiled loop.
      hoist: take all input products before the loop (True, False or ``"auto"``).
      rule: ``"vjp"`` or ``"jvp"``.

    Returns:
      ``(ys (T, B, H), h_T (B, H))``.

    Examples:
      >>> cell = rnn_jax.gru(4)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> xs = jax.random.normal(jax.random.key(1), (6, 2, 3))
      >>> ys, h = rnn_jax.fused.gru(p["W_i"], p["W_h"], p["b_i"], p["b_h"], xs, jnp.zeros((2, 4)))
      >>> bool(jnp.allclose(ys, rnn_jax.unroll(cell, p, xs.swapaxes(0, 1))[0].swapaxes(0, 1), atol=1e-6))
      True
    """
    run = _kernel(rule, _gru, _gru_t)
    if jnp.ndim(b_h) != 1:
        raise ValueError(f"b_h: expected shape (3H,), got {jnp.shape(b_h)}")
    return _by_length(rule, lambda xs, h0, mask, b_i: run(unroll, _hoist(hoist, (False, False)), W_i, W_h, b_i, b_h,
                                                          xs, h0, mask), xs, h0, mask, _checked_bias(b_i, xs))
