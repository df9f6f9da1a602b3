"""Dropout and zoneout: the random parts of training, switched on by a key.

Every layer and model takes ``key=None``: without a key a call is deterministic (evaluation: no unit
dropped, zoneout replaced by its expectation); with a ``jax.random.key`` it draws its masks from that
key (training). One argument, no mode flag to forget: a call that was given no key cannot be training.

* :func:`dropout`: inverted dropout of any array, a fresh mask per element, or one shared along
  ``shared_axes`` (variational dropout: one mask per sequence, Gal & Ghahramani 2016).
* ``rnn(cell, dropout=p)``: variational dropout of a layer's inputs (one mask per sequence and feature);
  ``rnn(cell, recurrent_dropout=p)``: variational dropout of the hidden vector ``h`` that enters every
  step (the state, or its first leaf: LSTM's ``h``; the LSTM's cell ``c`` is never dropped);
  ``rnn(cell, zoneout=p)``: zoneout (Krueger et al. 2017), each unit of the state keeps its previous
  value with probability ``p`` at every step (eval: ``p * h_prev + (1 - p) * h_new``).
* ``stack(*layers, dropout=p)``: dropout of every layer's outputs, the last one's (the head's input)
  included, a fresh mask per step (Zaremba et al. 2014).

Masks are inverted (kept units scaled by ``1 / (1 - p)``), so that a unit's expectation over masks is
its value without dropout (tested).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp
import numpy as np

from rnn_jax import _checks

__all__ = ["dropout", "check_rate", "check_key", "layer_regularisers", "zoneout_expectation"]


def check_rate(rate, name: str, *, allow_one: bool = False) -> float:
    """A dropout or zoneout rate: a real number in ``[0, 1)`` (``[0, 1]`` when ``allow_one``).

    Args:
      rate: the value given.
      name: the argument's name for the error message.
      allow_one: whether 1 is allowed.

    Returns:
      ``rate`` as a float; raises ``ValueError`` naming ``name`` otherwise.

    Examples:
      >>> rnn_jax.regularization.check_rate(0.25, "dropout")
      0.25
      >>> rnn_jax.regularization.check_rate(1.5, "zoneout")
      Traceback (most recent call last):
      ...
      ValueError: zoneout: expected a rate in [0, 1), got 1.5
    """
    rate = _checks.check_real(rate, name, minimum=0)
    if rate > 1 or (rate == 1 and not allow_one):
        raise ValueError(f"{name}: expected a rate in [0, {'1]' if allow_one else '1)'}, got {rate!r}")
    return rate


def check_key(key, name: str = "key"):
    """None, or a JAX PRNG key (``jax.random.key`` or a legacy ``jax.random.PRNGKey``).

    Args:
      key: the value given.
      name: the argument's name for the error message.

    Returns:
      ``key``; raises ``ValueError`` naming ``name`` for anything else.

    Examples:
      >>> rnn_jax.regularization.check_key(None) is None
      True
      >>> rnn_jax.regularization.check_key(0)
      Traceback (most recent call last):
      ...
      ValueError: key: expected None (no dropout: evaluation) or a jax.random.key, got int
    """
    if key is None:
        return None
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and key.shape == ():
        return key
    if dtype == jnp.uint32 and getattr(key, "shape", None) == (2,):
        return key
    raise ValueError(
        f"{name}: expected None (no dropout: evaluation) or a jax.random.key, got "
        f"{type(key).__name__}{'' if dtype is None else f' {dtype}{tuple(key.shape)}'}"
    )


def init_key(key, name: str = "key"):
    """A key that initialises parameters: a JAX PRNG key (``jax.random.key(0)``), not None nor an int.

    Examples:
      >>> rnn_jax.regularization.init_key(0)
      Traceback (most recent call last):
      ...
      ValueError: key: expected a jax.random.key to initialise the parameters (write jax.random.key(0), not 0), got int
    """
    seed = key if isinstance(key, (int, np.integer)) else 0
    try:
        if key is not None:
            return check_key(key, name)
    except ValueError:
        pass
    raise ValueError(
        f"{name}: expected a jax.random.key to initialise the parameters (write "
        f"jax.random.key({seed}), not {key!r:.40}), got {type(key).__name__}"
    )


def dropout(key: Optional[jax.Array], x: jax.Array, rate: float, *, shared_axes: tuple = ()) -> jax.Array:
    """Inverted dropout: each element of ``x`` is zeroed with probability ``rate``, the others scaled by
    ``1 / (1 - rate)``; ``x`` itself when ``key`` is None or ``rate == 0``.

    Args:
      key: a ``jax.random.key`` (training) or None (evaluation).
      x: any array.
      rate: the probability of dropping an element, in ``[0, 1)``.
      shared_axes: axes of ``x`` along which one mask is shared (e.g. the time axis: variational dropout).

    Returns:
      An array of ``x``'s shape and dtype.

    Examples:
      >>> h = jnp.ones((2, 4, 3))                                        # (B, T, H)
      >>> d = rnn_jax.dropout(jax.random.key(0), h, 0.5, shared_axes=(1,))   # one mask per sequence
      >>> bool((d == d[:, :1]).all()), sorted(set(d.ravel().tolist())) <= [0.0, 2.0]
      (True, True)
      >>> rnn_jax.dropout(None, h, 0.5) is h                              # no key: evaluation
      True
    """
    check_key(key)
    if not _checks.is_traced(rate):
        rate = check_rate(rate, "rate")
    if key is None or rate == 0:
        return x
    shape = tuple(1 if a in {s % x.ndim for s in shared_axes} else n for a, n in enumerate(x.shape))
    keep = jax.random.bernoulli(key, 1.0 - rate, shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros((), x.dtype)).astype(x.dtype)


def dropout_time_major(key, xs: jax.Array, rate: float) -> jax.Array:
    """:func:`dropout` of time-major ``xs (T, B, H)`` with its mask drawn batch-first ``(B, T, H)``: the
    same mask as ``dropout(key, ys, rate)`` on the batch-first outputs ``ys (B, T, H)`` a user sees."""
    if key is None or rate == 0:
        return xs
    return jnp.swapaxes(dropout(key, jnp.swapaxes(xs, 0, 1), rate), 0, 1)


def layer_regularisers(cell, input_rate: float, recurrent_rate: float, zoneout_rate: float):
    """What :func:`rnn_jax.rnn`'s regularisation does to one call: ``(key, xs (T, B, I), state) -> (xs,
    inside_step)``. With a key: the inputs dropped (one mask per sequence), and ``inside_step`` the masks of
    the scan (``hidden_mask``: the hidden vector entering every step; ``zoneout``: ``(rate, keep)``, one
    draw per step and state leaf); without one, only zoneout's expectation. ``inside_step`` is empty when
    nothing acts inside the step, and the layer runs its own way.

    Args:
      cell: the layer's cell.
      input_rate: the input dropout rate.
      recurrent_rate: the hidden-vector dropout rate.
      zoneout_rate: the zoneout rate.

    Returns:
      The function above.

    Examples:
      >>> reg = rnn_jax.regularization.layer_regularisers(rnn_jax.gru(4), 0.0, 0.5, 0.0)
      >>> xs, inside = reg(jax.random.key(0), jnp.ones((5, 2, 3)), None)
      >>> sorted(inside), inside["hidden_mask"].shape
      (['hidden_mask'], (2, 4))
      >>> reg(None, jnp.ones((5, 2, 3)), None)[1]                       # evaluation: nothing inside the step
      {}
    """
    from rnn_jax import _ops

    def regularise(key, xs, state):
        if key is None:
            return xs, ({"zoneout": (zoneout_rate, None)} if zoneout_rate else {})
        k_in, k_h, k_z = (jax.random.fold_in(key, i) for i in range(3))
        if input_rate:
            xs = dropout(k_in, xs, input_rate, shared_axes=(0,))  # one mask per sequence
        inside = {}
        if recurrent_rate:
            h = jax.tree.leaves(_ops.start_state(cell.initial_state, xs, state))[0]  # (B, ...)
            inside["hidden_mask"] = dropout(k_h, jnp.ones(h.shape, h.dtype), recurrent_rate)
        if zoneout_rate:
            leaves, tree = jax.tree.flatten(cell.initial_state(xs.dtype))
            keep = [
                jax.random.bernoulli(jax.random.fold_in(k_z, i), zoneout_rate, xs.shape[:2] + a.shape)
                for i, a in enumerate(leaves)
            ]
            inside["zoneout"] = (zoneout_rate, jax.tree.unflatten(tree, keep))
        return xs, inside

    return regularise


def zoneout_expectation(step, rate: float):
    """A batched ``step(params, state, x) -> (state, y)`` whose new state is zoneout's expectation
    ``rate * old + (1 - rate) * new``: online use (:func:`rnn_jax.stream_step`) is evaluation.

    Args:
      step: the step.
      rate: the zoneout rate.

    Returns:
      The step with zoneout's expectation.

    Examples:
      >>> step = rnn_jax.regularization.zoneout_expectation(lambda p, h, x: (h + x, h + x), 0.25)
      >>> step(None, jnp.zeros(2), jnp.ones(2))[0].tolist()
      [0.75, 0.75]
    """
    from rnn_jax.unroll import _zone

    def zoned(params, state, x):
        new, y = step(params, state, x)
        return _zone(new, state, rate, None), y

    return zoned
