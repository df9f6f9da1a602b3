"""The ``jax.lax.scan`` unroller: any cell over a batch of sequences, one scan over time.

Each step runs the cell's one-example ``step`` vmapped over the batch. Semantics with ``lengths``:

* steps ``t >= lengths[b]`` leave example ``b``'s state unchanged and output zeros;
* the final state returned is the one after the last valid step;
* ``reverse=True`` reads the valid prefix backwards (``x[L-1], ..., x[0]``) and writes each output
  at the position of the input it consumed; padding stays at the end, outputs there are zero.

Speed and memory knobs (results are identical up to float rounding):

* ``unroll``: passed to ``lax.scan``;
* ``remat``: ``True`` rematerialises each step in the backward pass (``jax.checkpoint``); an int
  ``k > 1`` scans over chunks of ``k`` steps and stores only the states at chunk boundaries, so
  memory grows as ``T / k + k`` instead of ``T`` (``k ~ sqrt(T)`` is the classic choice).

:func:`scan` is the time-major core that layers call (``xs (T, B, I)``); :func:`unroll` and
:func:`unroll_reduce` are the public, batch-first, checked entry points.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Union

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rnn_jax import _checks, _ops
from rnn_jax.cells import Cell, check_cell, input_size_of, prepared
from rnn_jax.losses import accumulation_dtype

__all__ = ["unroll", "unroll_reduce", "scan", "sequence_mask"]


def sequence_mask(lengths, T: int) -> jax.Array:
    """``(*batch, T)`` booleans, True for the valid steps ``t < lengths``.

    Args:
      lengths: ints of any shape ``batch``.
      T: the number of steps.

    Returns:
      ``(*batch, T)`` booleans.

    Examples:
      >>> rnn_jax.sequence_mask(jnp.array([3, 1]), 4).astype(int).tolist()
      [[1, 1, 1, 0], [1, 0, 0, 0]]
    """
    return _ops.valid_steps(lengths, T)


def check_knobs(unroll, remat):
    """``unroll`` (an int >= 1) and ``remat`` (a bool or an int chunk size >= 1), numpy ints included;
    returns them as Python values."""
    unroll = _checks.check_int(unroll, "unroll", want="an int >= 1")
    if isinstance(remat, (bool, np.bool_)):
        return unroll, bool(remat)
    return unroll, _checks.check_int(remat, "remat", want="a bool or an int chunk size >= 1")


def _chunked(body, carry0, inputs: tuple, T, chunk, unroll):
    """``lax.scan(body)`` over chunks of ``chunk`` steps, each chunk checkpointed. ``inputs`` (a tuple)
    are padded to a multiple of ``chunk``; the body gets ``(*inputs_t, t)`` with the step index ``t``,
    which is ``>= T`` on the padded steps (the body must treat them as invalid)."""
    n = math.ceil(T / chunk)
    pad = n * chunk - T

    def blocks(a):
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape((n, chunk) + a.shape[1:])

    @jax.checkpoint
    def chunk_body(carry, block):
        return lax.scan(body, carry, block, unroll=unroll)

    blocked = jax.tree.map(blocks, inputs) + (jnp.arange(n * chunk).reshape(n, chunk),)
    carry, ys = lax.scan(chunk_body, carry0, blocked)
    return carry, jax.tree.map(lambda y: y.reshape((n * chunk,) + y.shape[2:])[:T], ys)


def _drop_hidden(state, mask):
    """The state with its hidden vector (the state itself, or its first leaf) times ``mask``."""
    leaves, tree = jax.tree.flatten(state)
    return jax.tree.unflatten(tree, [leaves[0] * mask.astype(leaves[0].dtype)] + leaves[1:])


def _zone(new, old, rate, keep):
    """Zoneout of every state leaf: the old value where ``keep`` (training), or the expectation
    ``rate * old + (1 - rate) * new`` when ``keep`` is None (evaluation)."""
    if keep is None:
        return jax.tree.map(lambda n, o: (rate * o + (1 - rate) * n).astype(n.dtype), new, old)
    return jax.tree.map(lambda n, o, k: jnp.where(k, o, n), new, old, keep)


def scan(
    cell: Cell,
    params,
    xs: jax.Array,
    lengths=None,
    state=None,
    *,
    reverse: bool = False,
    unroll: int = 1,
    remat: Union[bool, int] = False,
    hidden_mask=None,
    zoneout=None,
):
    """Time-major core, unchecked: ``xs (T, B, I)``, ``lengths (B,)`` or None, ``state`` with leaves
    ``(B, ...)`` or None (zeros). Returns ``(ys (T, B, O), final_state)``.

    Regularisation (:mod:`rnn_jax.regularization`): ``hidden_mask`` (the shape of the state's first
    leaf, ``(B, ...)``) multiplies the hidden vector entering every step; ``zoneout = (rate, keep)``
    keeps each state unit's previous value where ``keep`` (leaves ``(T, B, ...)``, aligned with the
    inputs) is True, or mixes by the expectation when ``keep`` is None. The outputs are the step's.

    Args:
      cell: a :class:`rnn_jax.Cell`.
      params: its params (raw or prepared).
      xs: ``(T, B, I)``, time-major.
      lengths: ``(B,)`` ints or None.
      state: leaves ``(B, ...)`` or None (the cell's initial state for every row).
      reverse: run from each sequence's last valid step to its first.
      unroll: steps per iteration of the compiled loop.
      remat: recompute the steps in the backward pass (True), or checkpoint every ``remat`` steps (an int).
      hidden_mask: a dropout mask of the hidden vector, or None.
      zoneout: ``(rate, keep)`` or None.

    Returns:
      ``(ys (T, B, O), final_state)``.

    Examples:
      >>> cell = rnn_jax.elman(4)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> xs = jax.random.normal(jax.random.key(1), (7, 2, 3))
      >>> from rnn_jax.unroll import scan
      >>> ys, h = scan(cell, p, xs, jnp.array([7, 4]))
      >>> bool(jnp.all(ys[4:, 1] == 0)), bool(jnp.allclose(h[1], ys[3, 1]))    # zero past 4; state frozen
      (True, True)
    """
    T, B = xs.shape[:2]
    state = _ops.start_state(cell.initial_state, xs, state)
    params = prepared(cell, params)  # once per sequence, not per step
    zone_rate, zone_keep = zoneout if zoneout is not None else (0.0, None)
    if reverse:
        xs = _ops.flip_valid(xs, lengths)
        if zone_keep is not None:
            zone_keep = _ops.flip_valid(zone_keep, lengths)
    # The input products are taken inside the loop: taking them for all steps first (one large product)
    # measured 1.05x (Elman) and 1.43x (LSTM) slower for a training step on this CPU
    # (python -m benchmarks.generic_hoist); a cell's kernel (Cell.fused) decides for itself.
    step = jax.vmap(cell.step, in_axes=(None, 0, 0))
    regularised = hidden_mask is not None or zoneout is not None
    inputs = (xs, zone_keep) if regularised else xs

    def body(s, inp):
        if not regularised:
            return step(params, s, inp)
        x, keep = inp
        new, y = step(params, s if hidden_mask is None else _drop_hidden(s, hidden_mask), x)
        return (new if zoneout is None else _zone(new, s, zone_rate, keep)), y

    chunk = remat if (not isinstance(remat, bool) and remat > 1) else None
    if remat is True or chunk == 1:
        body = jax.checkpoint(body)

    if lengths is None and chunk is None:
        final, ys = lax.scan(body, state, inputs, unroll=unroll)
    else:
        n_valid = jnp.full((B,), T, jnp.int32) if lengths is None else lengths

        def masked(s, inp):
            x, t = inp
            new, y = body(s, x)
            valid = t < n_valid  # (B,)
            return _ops.select(valid, new, s), _ops.zero_invalid(valid, y)

        if chunk is None:
            final, ys = lax.scan(masked, state, (inputs, jnp.arange(T)), unroll=unroll)
        else:
            final, ys = _chunked(masked, state, (inputs,), T, chunk, unroll)
    if reverse:
        ys = _ops.flip_valid(ys, lengths)
    return ys, final


def check_inputs(init, initial_state, params, xs, lengths, state, cell: Optional[Cell] = None):
    """The edge checks of a layer call (and, for an entry point that runs a ``cell``, one abstract step of
    it: :func:`rnn_jax.check_cell`); returns ``(xs (T, B, I) with zeros past each length,
    lengths (B,) | None, state (B, ...) | None, batch)``."""
    shape = getattr(xs, "shape", None)
    if shape is not None and len(shape) >= 2:
        try:
            I = input_size_of(init, params)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError):
            I = None  # malformed params: check_params names what is wrong below
        if I is not None and shape[-1] != I:
            raise ValueError(
                f"xs: expected shape (*batch, T, {I}) (feature size {I}, from params), got {_checks.shape_str(shape)}"
            )
    batch, T = _checks.check_batch(xs, None)
    _checks.check_params(_checks.expected_params(init, xs.shape[-1], xs.dtype), params)
    _checks.check_same_dtype(xs, params)
    lengths = _checks.check_batch_lengths(lengths, batch, T)
    if state is not None:
        _checks.check_batch_state(state, initial_state(xs.dtype), batch, xs.dtype)
        state = _ops.flatten_batch(state, batch)
    if cell is not None:
        check_cell(cell, xs.shape[-1], xs.dtype)
    xs_tm = _ops.zero_padding(_ops.to_time_major(xs, batch), _ops.time_mask(lengths, T))
    return xs_tm, lengths, state, batch


def unroll(
    cell: Cell,
    params,
    xs: jax.Array,
    lengths=None,
    initial_state: Any = None,
    *,
    reverse: bool = False,
    unroll: int = 1,
    remat: Union[bool, int] = False,
):
    """Run ``cell`` over ``xs (*batch, T, I)``; returns ``(ys (*batch, T, O), final_state)``.

    Args:
      cell: a :class:`~rnn_jax.cells.Cell`.
      params: the cell's params.
      xs: ``(*batch, T, I)``: zero or more batch dimensions.
      lengths: integers of shape ``batch`` in ``[0, T]`` (a scalar for one sequence), or None.
      initial_state: the state before step 0, leaves ``(*batch, ...)``; zeros when None.
      reverse: read the (valid prefix of the) sequence backwards.
      unroll: the ``lax.scan`` unroll factor.
      remat: False, True (checkpoint each step) or an int chunk size (checkpoint every ``remat`` steps).

    This is the generic path, autodiff through ``lax.scan``; ``rnn_jax.rnn(cell).apply`` runs the
    cell's fused recurrence instead when it has one.

    Returns:
      ``(ys (*batch, T, O), final_state)``; past each length the outputs are zero and the state frozen.

    Examples:
      >>> cell = rnn_jax.elman(8)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> ys, h = rnn_jax.unroll(cell, p, jnp.ones((2, 5, 3)), jnp.array([5, 2]))
      >>> ys.shape, bool((ys[1, 2:] == 0).all()), bool((h[1] == ys[1, 1]).all())
      ((2, 5, 8), True, True)
    """
    unroll, remat = check_knobs(unroll, remat)
    xs_tm, lengths, state, batch = check_inputs(cell.init, cell.initial_state, params, xs, lengths, initial_state, cell)
    ys, final = scan(cell, params, xs_tm, lengths, state, reverse=reverse, unroll=unroll, remat=remat)
    return _ops.from_time_major(ys, batch), _ops.unflatten_batch(final, batch)


def unroll_reduce(
    cell: Cell,
    params,
    xs: jax.Array,
    per_step,
    *,
    targets: Any = None,
    lengths=None,
    initial_state: Any = None,
    unroll: int = 1,
    remat: Union[bool, int] = False,
):
    """Run ``cell`` over ``xs (*batch, T, I)`` and SUM ``per_step(y_t, target_t)`` (one example, one
    step) over the valid steps of every sequence, without ever holding the outputs of all steps:
    returns ``(total, final_state)``.

    With ``remat=k`` (an int) memory is ``O(T / k + k)`` states for forward+backward, so sequences of
    millions of steps fit (benchmarks/scaling.py: T = 10^6, B = 16, H = 256). ``targets`` is a pytree
    of arrays with leading dimensions ``(*batch, T)`` (or None, then ``per_step(y_t, None)``); past each
    length they are read as zeros, so padding (NaN included) reaches neither the total nor a gradient.
    The total is accumulated in float32 or wider whatever the input dtype.

    Args:
      cell: a :class:`rnn_jax.Cell`.
      params: its params.
      xs: ``(*batch, T, I)``.
      per_step: ``(y_t (O,), target_t) -> scalar``, one example and one step.
      targets: a pytree with leading dimensions ``(*batch, T)``, or None.
      lengths: ints of shape ``batch``, or None.
      initial_state: the state with the batch axes, or None.
      unroll: steps per iteration of the compiled loop.
      remat: False, True (every step) or ``k`` (checkpoint every ``k`` steps).

    Returns:
      ``(total, final_state)``: the scalar sum and the state after each sequence's last valid step.

    Examples:
      >>> cell = rnn_jax.gru(8)
      >>> p = cell.init(jax.random.key(0), 2)
      >>> xs, ys = jnp.ones((3, 40, 2)), jnp.zeros((3, 40, 8))
      >>> total, h = rnn_jax.unroll_reduce(cell, p, xs, lambda y, t: jnp.sum((y - t) ** 2), targets=ys, remat=10)
      >>> total.shape, h.shape
      ((), (3, 8))
    """
    unroll, remat = check_knobs(unroll, remat)
    xs_tm, lengths, state, batch = check_inputs(cell.init, cell.initial_state, params, xs, lengths, initial_state, cell)
    T, B = xs_tm.shape[:2]
    state = _ops.start_state(cell.initial_state, xs_tm, state)
    tgt_tm = None if targets is None else jax.tree.map(lambda a: _ops.to_time_major(a, batch), targets)
    if tgt_tm is not None and lengths is not None:  # targets past each length are inert (NaN padding too)
        tgt_tm = jax.tree.map(
            lambda a: _ops.zero_padding(a, _ops.time_mask(lengths, T).reshape((T, B) + (1,) * (a.ndim - 2))), tgt_tm
        )
    acc = accumulation_dtype(xs.dtype)  # the total in float32 or wider whatever the input dtype
    n_valid = jnp.full((B,), T, jnp.int32) if lengths is None else lengths
    params = prepared(cell, params)  # once, not at every step
    step = jax.vmap(cell.step, in_axes=(None, 0, 0))
    loss = jax.vmap(per_step, in_axes=(0, None if targets is None else 0))

    def body(carry, inp):
        s, total = carry
        x, tgt, t = inp
        new, y = step(params, s, x)
        valid = t < n_valid
        per = _ops.zero_invalid(valid, loss(y, tgt).astype(acc))
        return (_ops.select(valid, new, s), total + per.sum()), None

    chunk = remat if (not isinstance(remat, bool) and remat > 1) else None
    if remat is True or chunk == 1:
        body = jax.checkpoint(body)
    carry0 = (state, jnp.zeros((), acc))
    if chunk is None:
        (final, total), _ = lax.scan(body, carry0, (xs_tm, tgt_tm, jnp.arange(T)), unroll=unroll)
    else:
        (final, total), _ = _chunked(body, carry0, (xs_tm, tgt_tm), T, chunk, unroll)
    return total, _ops.unflatten_batch(final, batch)
