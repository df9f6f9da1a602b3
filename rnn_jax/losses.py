"""Masked losses and metrics over a batch of sequences.

Shapes: ``logits (*batch, T, V)`` with integer ``targets (*batch, T)`` and ``lengths`` of shape
``batch`` (steps ``t >= lengths`` are masked); or one prediction per example, ``logits (*batch, V)``
with ``targets (*batch,)`` and no lengths. Reductions:

* ``"sum"``: the sum over every valid step of every sequence. Following the seeds, the loss of ONE
  sequence is the sum of its per-step losses, :math:`E = \\sum_t E_t`;
* ``"mean"``: the mean over valid steps (tokens) of the whole batch;
* ``"sequence_mean"``: the mean over sequences of each sequence's sum, :math:`\\frac1B \\sum_b E_b`;
* ``"none"``: the per-step values, zero past each length.

Padding is inert: whatever the logits hold past a length (NaN, inf) reaches neither the loss nor
its gradient.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from rnn_jax import _checks, _ops

__all__ = [
    "softmax_cross_entropy",
    "bits_per_char",
    "accuracy",
    "mse",
    "masked_reduce",
    "step_mask",
    "accumulation_dtype",
    "REDUCTIONS",
]

LN2 = math.log(2.0)
REDUCTIONS = ("sum", "mean", "sequence_mean", "none")


def step_mask(shape: tuple, lengths=None, dtype=jnp.float32) -> jax.Array:
    """Weights of ``shape = (*batch, T)``: 1 for valid steps, 0 past ``lengths`` (shape ``batch``).

    Args:
      shape: ``(*batch, T)``.
      lengths: ints of shape ``batch``, or None (every step valid).
      dtype: the weights' dtype.

    Returns:
      ``shape`` of 0s and 1s.

    Examples:
      >>> rnn_jax.losses.step_mask((2, 4), jnp.array([4, 1]))
      Array([[1., 1., 1., 1.],
             [1., 0., 0., 0.]], dtype=float32)
    """
    if lengths is None:
        return jnp.ones(shape, dtype)
    return _ops.valid_steps(lengths, shape[-1]).astype(dtype)


def accumulation_dtype(dtype):
    """The dtype sums and counts are taken in: float32 or wider, whatever ``dtype`` is (a float16 count
    of 70,000 steps is inf).

    Args:
      dtype: the values' dtype.

    Returns:
      ``float32`` for narrower floats (and ints), ``dtype`` itself when wider.

    Examples:
      >>> rnn_jax.losses.accumulation_dtype(jnp.bfloat16), rnn_jax.losses.accumulation_dtype(jnp.float32)
      (dtype('float32'), dtype('float32'))
    """
    return jnp.promote_types(dtype, jnp.float32)


def masked_reduce(per_step: jax.Array, lengths=None, reduction: str = "sum") -> jax.Array:
    """Reduce ``(*batch, T)`` per-step values over the valid steps (see the module docstring).
    Sums and counts are accumulated in float32 or wider (:func:`accumulation_dtype`), which is also the
    dtype of the result; ``"none"`` keeps ``per_step``'s dtype.

    Args:
      per_step: ``(*batch, T)``.
      lengths: ints of shape ``batch``, or None.
      reduction: ``"sum"``, ``"mean"`` (per valid step), ``"sequence_mean"`` or ``"none"``.

    Returns:
      A scalar, or ``(*batch, T)`` with zeros past the lengths for ``"none"``.

    Examples:
      >>> v = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
      >>> L = jnp.array([3, 1])
      >>> [float(rnn_jax.losses.masked_reduce(v, L, r)) for r in ("sum", "mean", "sequence_mean")]
      [10.0, 2.5, 5.0]
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction: expected one of {REDUCTIONS}, got {reduction!r}")
    m = step_mask(per_step.shape, lengths, jnp.float32) > 0
    vals = jnp.where(m, per_step, jnp.zeros((), per_step.dtype))
    if reduction == "none":
        return vals
    acc = accumulation_dtype(per_step.dtype)
    vals = vals.astype(acc)
    if reduction == "sum":
        return vals.sum()
    if reduction == "mean":
        return vals.sum() / jnp.maximum(m.sum(dtype=acc), 1)
    if per_step.ndim < 1:
        return vals
    return vals.sum(-1).mean() if per_step.ndim > 1 else vals.sum()


def _check(logits, targets, lengths, argname="targets", classes=True):
    lshape, tshape = getattr(logits, "shape", None), getattr(targets, "shape", None)
    if lshape is None or tshape is None:
        raise ValueError(f"{argname}: expected arrays, got {type(logits).__name__} and {type(targets).__name__}")
    want = tuple(lshape[:-1]) if classes else tuple(lshape)
    if tuple(tshape) != want:
        raise ValueError(
            f"{argname}: expected shape {want} for {'logits' if classes else 'preds'} of shape "
            f"{tuple(lshape)}, got {tuple(tshape)}"
        )
    steps = tuple(lshape[:-1])  # (*batch, T)
    if lengths is not None:
        if len(steps) < 1:
            raise ValueError(
                f"lengths: a single prediction per example has no time axis; expected None, got {lengths!r}"
            )
        _checks.check_batch_lengths(lengths, steps[:-1], steps[-1])
    if classes:
        if not jnp.issubdtype(targets.dtype, jnp.integer):
            raise ValueError(f"{argname}: expected integer class ids, got dtype {targets.dtype}")
        V = lshape[-1]
        if isinstance(targets, jax.core.Tracer):
            ok = (targets >= 0) & (targets < V)
            if lengths is not None:
                ok = ok | (step_mask(targets.shape, lengths, jnp.float32) == 0)
            _checks.value_check(ok, f"{argname}: expected class ids in [0, {V})", targets)
        else:
            arr = np.asarray(targets)
            bad = np.nonzero(np.atleast_1d((arr < 0) | (arr >= V)))  # a scalar target is one example
            if bad[0].size and arr.ndim == 0:
                raise ValueError(f"{argname}: expected class ids in [0, {V}), got {int(arr)}")
            if bad[0].size:
                if lengths is not None and not isinstance(lengths, jax.core.Tracer):
                    valid = np.asarray(step_mask(arr.shape, lengths, jnp.float32)) > 0
                    bad = np.nonzero(((arr < 0) | (arr >= V)) & valid)
                if bad[0].size:
                    idx = tuple(int(b[0]) for b in bad)
                    raise ValueError(f"{argname}: expected class ids in [0, {V}), got {int(arr[idx])} at index {idx}")


def _safe_logits(logits, targets, lengths):
    """Zeros past each length (their loss is masked; this keeps NaN out of the gradient), and target
    ids clipped there (padding may hold any id)."""
    if lengths is None:
        return logits, targets
    m = step_mask(targets.shape, lengths, jnp.float32) > 0
    return jnp.where(m[..., None], logits, jnp.zeros((), logits.dtype)), jnp.where(m, targets, 0)


def softmax_cross_entropy(logits, targets, lengths=None, reduction: str = "sum") -> jax.Array:
    """Softmax cross-entropy in nats, ``-log p(target)`` per step, masked and reduced.

    Args:
      logits: ``(*batch, T, V)``.
      targets: ``(*batch, T)`` int ids in ``[0, V)`` (any value past a sequence's length).
      lengths: ``batch``-shaped ints, or None (every step valid).
      reduction: ``"sum"`` over every valid step, ``"mean"`` per valid step, ``"sequence_mean"`` (each
        sequence's sum, averaged over sequences) or ``"none"`` (``(*batch, T)``, zero past the lengths).

    Returns:
      A scalar (float32 or wider), or ``(*batch, T)`` for ``"none"``.

    Examples:
      >>> logits = jnp.zeros((2, 3, 4))                     # uniform over 4 classes
      >>> float(rnn_jax.losses.softmax_cross_entropy(logits, jnp.zeros((2, 3), int), jnp.array([3, 1]),
      ...                                           reduction="mean"))  # ln 4
      1.386...
    """
    _check(logits, targets, lengths)
    logits, targets = _safe_logits(logits, targets, lengths)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    return masked_reduce(ce, lengths, reduction)


def bits_per_char(logits, targets, lengths=None) -> jax.Array:
    """Mean cross-entropy over the valid steps of the batch, in bits (base 2).

    Args:
      logits: ``(*batch, T, V)``.
      targets: ``(*batch, T)`` int ids.
      lengths: ``batch``-shaped ints, or None.

    Returns:
      A scalar: bits per valid step.

    Examples:
      >>> float(rnn_jax.losses.bits_per_char(jnp.zeros((1, 5, 8)), jnp.zeros((1, 5), int)))  # uniform over 8
      3.0
    """
    return softmax_cross_entropy(logits, targets, lengths, "mean") / LN2


def accuracy(logits, targets, lengths=None, reduction: str = "mean") -> jax.Array:
    """Fraction (``"mean"``) or count (``"sum"``) of valid steps whose arg-max equals the target.

    Args:
      logits: ``(*batch, T, V)``.
      targets: ``(*batch, T)`` int ids.
      lengths: ``batch``-shaped ints, or None.
      reduction: ``"mean"``, ``"sum"``, ``"sequence_mean"`` or ``"none"``.

    Returns:
      A scalar, or ``(*batch, T)`` for ``"none"``.

    Examples:
      >>> logits = jnp.array([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])        # predicts 1, 0, 1
      >>> float(rnn_jax.losses.accuracy(logits, jnp.array([[1, 1, 0]]), jnp.array([2])))  # 1 of 2 valid
      0.5
    """
    _check(logits, targets, lengths)
    hit = (jnp.argmax(logits, -1) == targets).astype(logits.dtype)
    return masked_reduce(hit, lengths, reduction)


def mse(preds, targets, lengths=None, reduction: str = "mean") -> jax.Array:
    """Squared error. ``preds`` and ``targets`` of one shape ``(*batch, T, D)`` are averaged over ``D``,
    then reduced over the valid steps; give ``(*batch, T, 1)`` for one value per step.

    Args:
      preds: ``(*batch, T, D)``.
      targets: the same shape.
      lengths: ints of shape ``batch``, or None.
      reduction: as :func:`masked_reduce`.

    Returns:
      A scalar, or ``(*batch, T)`` for ``"none"``.

    Examples:
      >>> float(rnn_jax.losses.mse(jnp.ones((2, 3, 1)), jnp.zeros((2, 3, 1)), jnp.array([3, 1])))
      1.0
    """
    _check(preds, targets, lengths, classes=False)
    if jnp.ndim(preds) == 0:
        return jnp.square(preds - targets)
    if lengths is not None:  # zeros past each length, in both, so that padding reaches no gradient
        m = (step_mask(preds.shape[:-1], lengths, jnp.float32) > 0)[..., None]
        preds = jnp.where(m, preds, jnp.zeros((), preds.dtype))
        targets = jnp.where(m, targets, jnp.zeros((), targets.dtype))
    return masked_reduce(jnp.square(preds - targets).mean(-1), lengths, reduction)  # (*batch, T) reduced
