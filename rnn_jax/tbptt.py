"""Truncated backpropagation through time, TBPTT(k1, k2) (Williams & Peng 1990).

A long stream is read once, forwards. Every ``k1`` steps the parameters are updated with the gradient
of the loss on those ``k1`` newest steps, backpropagated at most ``k2`` steps into the past; the state
at the start of that window is a constant (``lax.stop_gradient``), the one the forward run had when it
reached that point. ``k2`` must be a multiple of ``k1``.

* ``k1 == k2 == L`` (the whole stream) is full BPTT: one update, the exact gradient.
* ``k1 == k2 == k`` is the usual chunked training: chunks of ``k`` steps, the state carried across.
* ``k1 < k2``: every update looks further back than it moves forward.

The model is any :class:`rnn_jax.Model` whose ``apply(params, xs, length=None, initial_state=None)``
returns ``(outputs (B, T, ...), final_state)`` for a batch, e.g. :func:`rnn_jax.many_to_many`. A batch of
streams ``xs (B, L, ...)`` runs in one call; ``loss_fn`` gives the window's loss for the whole batch.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnn_jax import _checks
from rnn_jax.train import TrainState, update

__all__ = ["schedule", "window_loss", "train", "TBPTTResult"]


def schedule(L: int, k1: int, k2: int) -> list[tuple[int, int, int]]:
    """The windows ``(start, split, end)``: backprop over ``[start, end)``, loss on ``[split, end)``.

    Args:
      L: the stream's length.
      k1: steps between updates.
      k2: steps backpropagated, a multiple of ``k1``.

    Returns:
      A list of ``(start, split, end)``.

    Examples:
      >>> rnn_jax.tbptt.schedule(10, 2, 6)
      [(0, 0, 2), (0, 2, 4), (0, 4, 6), (2, 6, 8), (4, 8, 10)]
    """
    for name, v in (("k1", k1), ("k2", k2), ("L", L)):
        _checks.check_int(v, name)
    if k2 % k1:
        raise ValueError(f"k2: expected a multiple of k1={k1}, got {k2}")
    ends = list(range(k1, L + 1, k1))
    if not ends or ends[-1] != L:
        ends.append(L)  # a last, shorter update
    splits = [0] + ends[:-1]
    return [(max(0, split - (k2 - k1)), split, end) for split, end in zip(splits, ends)]


def window_loss(model, loss_fn: Callable, params, state, xs, targets, n_context: int):
    """Loss of one window of a batch of streams ``xs (B, W, ...)``: run ``xs[:, :n_context]`` from
    ``state`` (context, no loss), then ``xs[:, n_context:]`` with ``loss_fn(outputs, targets[:, n_context:])``.
    Returns ``(loss, final_state)``; the gradient flows through the whole window, not into ``state``.

    Args:
      model: a :class:`rnn_jax.Model` (batch-first).
      loss_fn: ``(outputs, targets) -> scalar``.
      params: the model's params.
      state: the state at the window's start (a constant).
      xs: ``(B, W, ...)``.
      targets: ``(B, W, ...)``.
      n_context: the window's first steps that carry no loss.

    Returns:
      ``(loss, final_state)``.

    Examples:
      >>> model = rnn_jax.many_to_many(rnn_jax.rnn(rnn_jax.gru(8)), 1, input_size=1)
      >>> p = model.init(jax.random.key(0))
      >>> mse = lambda out, y: jnp.mean((out - y) ** 2)
      >>> loss, h = rnn_jax.tbptt.window_loss(model, mse, p, jnp.zeros((4, 8)), jnp.ones((4, 6, 1)),
      ...                                     jnp.zeros((4, 6, 1)), n_context=2)
      >>> loss.shape, h.shape
      ((), (4, 8))
    """
    state = jax.lax.stop_gradient(state)
    if n_context:
        _, state = model.apply(params, xs[:, :n_context], None, state)
    out, final = model.apply(params, xs[:, n_context:], None, state)
    return loss_fn(out, targets[:, n_context:]), final


class TBPTTResult(NamedTuple):
    """What :func:`train` returns.

    Attributes:
      params: the parameters after the last update.
      opt_state: the optimiser's state after it.
      losses: ``(n_updates,)`` numpy, each window's loss.
      grads: each update's gradient (with ``keep_grads``), else empty.

    Examples:
      >>> import optax
      >>> model = rnn_jax.many_to_many(rnn_jax.rnn(rnn_jax.gru(8)), 1, input_size=1)
      >>> xs = jnp.sin(jnp.arange(40.0) / 3)[None, :, None]                 # one stream, L = 40
      >>> res = rnn_jax.tbptt.train(model, model.init(jax.random.key(0)), optax.adam(1e-2), xs[:, :-1], xs[:, 1:],
      ...                           k1=10, k2=20, loss_fn=lambda o, y: jnp.mean((o - y) ** 2))
      >>> res.losses.shape                                                  # one update per 10 steps
      (4,)
    """

    params: Any
    opt_state: Any
    losses: np.ndarray  # (updates,) mean window loss per update
    grads: list  # per-update gradients, when keep_grads=True


def train(
    model,
    params,
    tx: optax.GradientTransformation,
    xs,
    targets,
    k1: int,
    k2: int,
    loss_fn: Callable,
    initial_state: Any = None,
    opt_state: Any = None,
    keep_grads: bool = False,
) -> TBPTTResult:
    """TBPTT(k1, k2) over a batch of streams ``xs (B, L, ...)``, ``targets (B, L, ...)``.

    ``loss_fn(outputs (B, T, ...), targets (B, T, ...)) -> scalar`` for the batch (e.g. the mean over
    streams). ``initial_state``: one state with a leading batch axis, or None for zeros. Returns a
    :class:`TBPTTResult`. Every window is one :func:`rnn_jax.train.update` (the step :func:`rnn_jax.train.fit`
    takes), the window's start state entering as its carry: a window whose loss or gradient is not finite
    leaves the params and optimiser state unchanged.

    Args:
      model: a :class:`rnn_jax.Model` (batch-first).
      params: its params.
      tx: an optax optimiser.
      xs: ``(B, L, ...)``.
      targets: ``(B, L, ...)``.
      k1: steps between updates.
      k2: steps backpropagated, a multiple of ``k1``.
      loss_fn: ``(outputs (B, T, ...), targets (B, T, ...)) -> scalar``.
      initial_state: one state with a leading batch axis, or None.
      opt_state: the optimiser's state to continue from, or None (``tx.init(params)``).
      keep_grads: keep every update's gradient in the result (for the gradient studies).

    Returns:
      A :class:`TBPTTResult`.

    Examples:
      >>> import optax
      >>> model = rnn_jax.many_to_many(rnn_jax.rnn(rnn_jax.elman(4)), 1, input_size=1)
      >>> p = model.init(jax.random.key(0))
      >>> xs = jax.random.normal(jax.random.key(1), (2, 12, 1))
      >>> full = rnn_jax.tbptt.train(model, p, optax.sgd(0.1), xs, xs, 12, 12, lambda o, y: jnp.sum((o - y) ** 2),
      ...                            keep_grads=True)
      >>> g = jax.grad(lambda q: jnp.sum((model.apply(q, xs)[0] - xs) ** 2))(p)   # k1 = k2 = L is full BPTT
      >>> bool(jnp.allclose(full.grads[0]["rnn"]["W_h"], g["rnn"]["W_h"], atol=1e-5))
      True
    """
    if xs.ndim < 2 or targets.shape[:2] != xs.shape[:2]:
        raise ValueError(
            f"targets: expected leading shape {tuple(xs.shape[:2])} (B, L) like xs, got {tuple(targets.shape)}"
        )
    B, L = xs.shape[:2]
    windows = schedule(L, k1, k2)
    opt_state = tx.init(params) if opt_state is None else opt_state
    if initial_state is None:
        dtype = jax.tree_util.tree_leaves(params)[0].dtype
        zero = jax.eval_shape(lambda: model.apply(params, xs[:, :1], None, None)[1])
        initial_state = jax.tree.map(lambda s: jnp.zeros(s.shape, dtype), zero)

    def window(p, batch, carry):  # the loss of one window, as rnn_jax.train.update takes it
        xw, yw, context = batch
        loss, final = window_loss(model, loss_fn, p, carry, xw, yw, context.shape[0])
        return loss, ({}, final)

    # the gradient leaves the jitted update only when kept (otherwise the compiler drops the copy)
    step = jax.jit(lambda st, batch, carry: update(window, tx, st, batch, carry=carry, with_grads=keep_grads))
    state = TrainState(jnp.asarray(0, jnp.int32), params, opt_state)
    boundary = {0: initial_state}  # states the forward run had at window boundaries
    losses, all_grads = [], []
    for start, split, end in windows:
        states = boundary[start]  # the state the forward run had there (a constant)
        xw, yw = xs[:, start:end], targets[:, start:end]
        state, metrics, boundary[end], *g = step(state, (xw, yw, jnp.zeros((split - start,))), states)
        loss = metrics["loss"]
        for k in [k for k in boundary if k < end - k2]:
            del boundary[k]
        losses.append(float(loss))
        if keep_grads:
            all_grads.append(g[0])
    return TBPTTResult(state.params, state.opt_state, np.array(losses), all_grads)
