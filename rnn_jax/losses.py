"""Masked losses and metrics for ONE sequence (batch with ``jax.vmap``).

Shapes: ``logits (T, V)`` with integer ``targets (T,)``, or a single prediction ``logits (V,)`` with a
scalar target. ``length`` masks steps ``t >= length``. Following the seeds, the loss of a sequence is
the sum of its per-step losses, :math:`E = \\sum_t E_t` (``reduction="sum"``); ``"mean"`` divides by
the number of valid steps; ``"none"`` returns the per-step losses (zero past ``length``).
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

__all__ = ["softmax_cross_entropy", "bits_per_char", "accuracy", "mse", "masked_reduce", "step_mask"]

LN2 = math.log(2.0)


def step_mask(T: int, length=None, dtype=jnp.float32) -> jax.Array:
    """``(T,)`` weights: 1 for valid steps, 0 past ``length``."""
    if length is None:
        return jnp.ones((T,), dtype)
    return (jnp.arange(T) < length).astype(dtype)


def masked_reduce(per_step: jax.Array, length=None, reduction: str = "sum") -> jax.Array:
    """Reduce ``(T,)`` per-step values over the valid steps."""
    m = step_mask(per_step.shape[0], length, per_step.dtype)
    vals = per_step * m
    if reduction == "none":
        return vals
    if reduction == "sum":
        return vals.sum()
    if reduction == "mean":
        return vals.sum() / jnp.maximum(m.sum(), 1)
    raise ValueError(f"reduction: expected 'sum', 'mean' or 'none', got {reduction!r}")


def _check_pair(logits, targets):
    if logits.ndim not in (1, 2) or targets.shape != logits.shape[:-1]:
        raise ValueError(f"targets: expected shape {tuple(logits.shape[:-1])} for logits of shape "
                         f"{tuple(logits.shape)}, got {tuple(targets.shape)}")


def softmax_cross_entropy(logits, targets, length=None, reduction: str = "sum") -> jax.Array:
    """Softmax cross-entropy in nats, ``-log p(target)`` per step, masked and reduced."""
    _check_pair(logits, targets)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    if logits.ndim == 1:
        return ce
    return masked_reduce(ce, length, reduction)


def bits_per_char(logits, targets, length=None) -> jax.Array:
    """Mean cross-entropy over valid steps in bits (base 2)."""
    return softmax_cross_entropy(logits, targets, length, "mean") / LN2


def accuracy(logits, targets, length=None, reduction: str = "mean") -> jax.Array:
    """Fraction (``"mean"``) or count (``"sum"``) of valid steps whose arg-max equals the target."""
    _check_pair(logits, targets)
    hit = (jnp.argmax(logits, -1) == targets).astype(logits.dtype)
    if logits.ndim == 1:
        return hit
    return masked_reduce(hit, length, reduction)


def mse(preds, targets, length=None, reduction: str = "mean") -> jax.Array:
    """Squared error averaged over features, then reduced over valid steps. ``preds``: ``(T, D)`` or ``(T,)``."""
    if preds.shape != targets.shape:
        raise ValueError(f"targets: expected shape {tuple(preds.shape)}, got {tuple(targets.shape)}")
    err = jnp.square(preds - targets)
    if err.ndim == 2:
        err = err.mean(-1)
    if err.ndim == 0:
        return err
    return masked_reduce(err, length, reduction)
