"""The ``jax.lax.scan`` unroller: one cell over ONE sequence ``(T, I)``.

Semantics with ``length`` (a scalar; batches come from ``jax.vmap``):

* steps ``t >= length`` leave the carry unchanged and output zeros;
* the final carry returned is the one after the last valid step;
* ``reverse=True`` reads the valid prefix backwards (``x[L-1], ..., x[0]``) and writes each output
  at the position of the input it consumed; padding stays at the end, outputs there are zero.

Speed and memory knobs (results are identical up to float rounding):

* ``unroll``: passed to ``lax.scan``;
* ``hoist_input``: compute ``cell.project`` for all timesteps as one ``(T, I) @ (I, G*H)`` product
  before the loop;
* ``remat``: ``True`` rematerialises each step in the backward pass (``jax.checkpoint``); an int
  ``k > 1`` scans over chunks of ``k`` steps and stores only the carries at chunk boundaries, so
  memory grows as ``T / k + k`` instead of ``T`` (``k ~ sqrt(T)`` is the classic choice).
"""
from __future__ import annotations

import math
from typing import Any, Union

import jax
import jax.numpy as jnp
from jax import lax

from rnn_jax import _checks
from rnn_jax.cells import Cell

__all__ = ["unroll", "unroll_reduce", "flip_valid", "sequence_mask"]


def sequence_mask(length, T: int) -> jax.Array:
    """``(T,)`` booleans, True for the valid steps ``t < length``."""
    return jnp.arange(T) < length


def flip_valid(xs, length=None):
    """Reverse the valid prefix of every leaf along axis 0; padding stays in place.

    With ``length=None`` the whole sequence is reversed. The permutation is its own inverse.
    """
    leaves = jax.tree_util.tree_leaves(xs)
    T = leaves[0].shape[0]
    if length is None:
        return jax.tree.map(lambda a: a[::-1], xs)
    t = jnp.arange(T)
    idx = jnp.where(t < length, length - 1 - t, t)
    return jax.tree.map(lambda a: jnp.take(a, idx, axis=0), xs)


def _select(valid, new, old):
    return jax.tree.map(lambda n, o: jnp.where(valid, n, o), new, old)


def unroll(cell: Cell, params, xs: jax.Array, *, length=None, initial_carry: Any = None,
           reverse: bool = False, unroll: int = 1, remat: Union[bool, int] = False,
           hoist_input: bool = False, check: bool = True):
    """Run ``cell`` over ``xs`` (T, I); returns ``(ys (T, O), final_carry)``.

    Args:
      cell: a :class:`~rnn_jax.cells.Cell`.
      params: the cell's params.
      xs: ``(T, I)`` inputs of ONE sequence.
      length: scalar int in ``[0, T]``, or None for all ``T`` steps valid.
      initial_carry: the carry before step 0; zeros when None.
      reverse: read the (valid prefix of the) sequence backwards.
      unroll: the ``lax.scan`` unroll factor.
      remat: False, True (checkpoint each step) or an int chunk size (checkpoint every ``remat`` steps).
      hoist_input: project all inputs before the loop in one large product.
      check: validate shapes and dtypes (at trace time; free at run time).
    """
    if check:
        _checks.check_sequence(xs, cell.input_size(params))
        _checks.check_params(_checks.expected_params(cell.init, xs.shape[1], xs.dtype), params)
        _checks.check_same_dtype(xs, params)
        _checks.check_length(length, xs.shape[0])
        if isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1:
            raise ValueError(f"unroll: expected an int >= 1, got {unroll!r}")
        if not isinstance(remat, bool) and (not isinstance(remat, int) or remat < 1):
            raise ValueError(f"remat: expected a bool or an int chunk size >= 1, got {remat!r}")
    T = xs.shape[0]
    carry0 = cell.initial_carry(xs.dtype) if initial_carry is None else initial_carry

    if hoist_input:
        inputs = cell.project(params, xs)  # (T, G*H): all timesteps in one product
        step = cell.step_projected
    else:
        inputs = xs  # (T, I)
        step = cell.step

    def body(carry, x):
        return step(params, carry, x)

    chunk = remat if (not isinstance(remat, bool) and remat > 1) else None
    if remat is True or chunk == 1:
        body = jax.checkpoint(body)

    if length is None and chunk is None:
        carry, ys = lax.scan(body, carry0, inputs, reverse=reverse, unroll=unroll)
        return ys, carry

    masked = length is not None or (chunk is not None and T % chunk)
    n_valid = T if length is None else length
    if reverse:
        inputs = flip_valid(inputs, n_valid)

    def masked_body(carry, inp):
        x, t = inp
        new, y = body(carry, x)
        valid = t < n_valid
        return _select(valid, new, carry), jnp.where(valid, y, jnp.zeros_like(y))

    scan_body = masked_body if masked else (lambda c, inp: body(c, inp[0]))
    ts = jnp.arange(T)
    if chunk is None:
        carry, ys = lax.scan(scan_body, carry0, (inputs, ts), unroll=unroll)
    else:
        n = math.ceil(T / chunk)
        pad = n * chunk - T
        padded = jnp.pad(inputs, [(0, pad)] + [(0, 0)] * (inputs.ndim - 1))
        chunks = (padded.reshape((n, chunk) + inputs.shape[1:]),
                  jnp.arange(n * chunk).reshape(n, chunk))

        @jax.checkpoint
        def chunk_body(carry, block):
            return lax.scan(scan_body, carry, block, unroll=unroll)

        carry, ys = lax.scan(chunk_body, carry0, chunks)
        ys = ys.reshape((n * chunk,) + ys.shape[2:])[:T]
    if reverse:
        ys = flip_valid(ys, n_valid)
    return ys, carry


def unroll_reduce(cell: Cell, params, xs: jax.Array, per_step, *, targets: Any = None,
                  initial_carry: Any = None, unroll: int = 1, remat: Union[bool, int] = False,
                  check: bool = True):
    """Run ``cell`` over ``xs (T, I)`` and SUM ``per_step(y_t, target_t)`` over the steps, without ever
    holding the outputs of all steps: returns ``(total, final_carry)``.

    With ``remat=k`` (an int) memory is ``O(T / k + k)`` carries for forward+backward, so sequences of
    millions of steps fit (benchmarks/scaling.py: T = 10^6, B = 16, H = 256 under vmap). ``targets``
    is a pytree of arrays with leading axis T (or None, then ``per_step(y_t, None)``).
    """
    if check:
        _checks.check_sequence(xs, cell.input_size(params))
        _checks.check_params(_checks.expected_params(cell.init, xs.shape[1], xs.dtype), params)
        _checks.check_same_dtype(xs, params)
        if not isinstance(remat, bool) and (not isinstance(remat, int) or remat < 1):
            raise ValueError(f"remat: expected a bool or an int chunk size >= 1, got {remat!r}")
    T = xs.shape[0]
    carry0 = cell.initial_carry(xs.dtype) if initial_carry is None else initial_carry
    total0 = jnp.zeros((), xs.dtype)

    def body(state, inp):
        carry, total = state
        x, tgt, valid = inp
        carry_new, y = cell.step(params, carry, x)
        carry = _select(valid, carry_new, carry)
        return (carry, total + jnp.where(valid, per_step(y, tgt), 0.0).astype(xs.dtype)), None

    chunk = remat if (not isinstance(remat, bool) and remat > 1) else None
    if remat is True or chunk == 1:
        body = jax.checkpoint(body)
    valid = jnp.ones((T,), bool)
    if chunk is None:
        (carry, total), _ = lax.scan(body, (carry0, total0), (xs, targets, valid), unroll=unroll)
        return total, carry
    n = math.ceil(T / chunk)
    pad = n * chunk - T

    def blocks(a):
        a = jnp.pad(a, [(0, pad)] + [(0, 0)] * (a.ndim - 1))
        return a.reshape((n, chunk) + a.shape[1:])

    inputs = jax.tree.map(blocks, (xs, targets, valid))  # padded steps are invalid: carry frozen, 0 added

    @jax.checkpoint
    def chunk_body(state, block):
        return lax.scan(body, state, block, unroll=unroll)[0], None

    (carry, total), _ = lax.scan(chunk_body, (carry0, total0), inputs)
    return total, carry
