"""Small numerical helpers shared by cells, layers and models.

Inside the library sequences are time-major, ``(T, B, ...)``: one scan over time for the whole
batch, and no transposes between stacked layers. The public functions take batch-first
``(*batch, T, ...)`` arrays and convert once, at the edge (:func:`to_time_major`).
"""

import math

import jax
import jax.numpy as jnp
from jax import lax


def affine(x: jax.Array, W: jax.Array, b: jax.Array) -> jax.Array:
    """``x @ W + b`` for ``x`` of shape ``(..., fan_in)``; the bias is broadcast explicitly so the
    code runs under ``jax_numpy_rank_promotion="raise"``."""
    z = x @ W
    return z + jnp.broadcast_to(b, z.shape)


def shift_down(S: jax.Array, first: jax.Array) -> jax.Array:
    """The previous row of every row of a time-major ``S``: ``first`` then ``S[:-1]`` (``s_{t-1}``)."""
    return jnp.concatenate([first[None], S[:-1]], 0)[: S.shape[0]]  # T = 0 stays empty


def to_time_major(xs: jax.Array, batch_shape: tuple) -> jax.Array:
    """``(*batch, T, ...)`` -> ``(T, B, ...)`` with ``B = prod(batch)`` (1 for no batch dimensions)."""
    n = len(batch_shape)
    flat = xs.reshape((math.prod(batch_shape),) + xs.shape[n:])
    return jnp.swapaxes(flat, 0, 1)


def from_time_major(ys: jax.Array, batch_shape: tuple) -> jax.Array:
    """``(T, B, ...)`` -> ``(*batch, T, ...)``."""
    ys = jnp.swapaxes(ys, 0, 1)
    return ys.reshape(tuple(batch_shape) + ys.shape[1:])


def with_static(xs, static):
    """Time-major ``xs (T, B, I)`` with ``static (B, C)`` appended to every step's input, or ``xs``."""
    if static is None:
        return xs
    return jnp.concatenate([xs, jnp.broadcast_to(static, xs.shape[:1] + static.shape)], axis=-1)


def flatten_batch(tree, batch_shape: tuple):
    """Leaves ``(*batch, ...)`` -> ``(B, ...)``."""
    n, B = len(batch_shape), math.prod(batch_shape)
    return jax.tree.map(lambda a: a.reshape((B,) + a.shape[n:]), tree)


def unflatten_batch(tree, batch_shape: tuple):
    """Leaves ``(B, ...)`` -> ``(*batch, ...)``."""
    return jax.tree.map(lambda a: a.reshape(tuple(batch_shape) + a.shape[1:]), tree)


def _varying_axes(x) -> frozenset:
    """The ``shard_map`` mesh axes over which ``x`` holds a different value on each device (none
    outside ``shard_map``)."""
    typeof = getattr(jax, "typeof", None)
    if typeof is None:
        return frozenset()
    t = typeof(x)
    mat = getattr(t, "manual_axis_type", None)
    return frozenset(mat.varying) if mat is not None else frozenset(getattr(t, "vma", ()))


def local_batch(x, devices: int) -> bool:
    """Whether ``x``'s batch is all on this device's program: one device in the process (``devices``),
    or a part inside ``shard_map``. False under ``jax.jit`` in a process with several devices, where the
    batch may be split over them and an operation across its rows (a sort) would move rows between
    devices."""
    return devices == 1 or bool(_varying_axes(x))


def varying_like(tree, ref):
    """``tree``'s leaves marked as varying over the ``shard_map`` axes that ``ref`` (an array or a
    pytree: the union of its leaves' axes) varies over.

    Inside ``jax.shard_map`` a constant (a zero initial state) is the same on every device, while a
    scan's carry computed from a device's own inputs is not; ``lax.scan`` requires its carry to keep
    one type, so a state started from a constant must be marked varying before the loop. Outside
    ``shard_map`` this returns ``tree`` unchanged."""
    axes = frozenset().union(*map(_varying_axes, jax.tree.leaves(ref)))
    if not axes:
        return tree
    cast = getattr(lax, "pcast", None)

    def mark(a):
        missing = tuple(sorted(axes - _varying_axes(a)))
        if not missing:
            return a
        return cast(a, missing, to="varying") if cast is not None else lax.pvary(a, missing)

    return jax.tree.map(mark, tree)


def start_state(initial_state, xs: jax.Array, state=None):
    """The state a recurrence over time-major ``xs (T, B, I)`` starts from: ``state`` (leaves ``(B, ...)``)
    or, when None, one example's ``initial_state(dtype)`` broadcast to the batch; marked as varying over
    the same ``shard_map`` axes as ``xs`` (a given state may be a constant too)."""
    if state is None:
        state = jax.tree.map(lambda a: jnp.broadcast_to(a, (xs.shape[1],) + a.shape), initial_state(xs.dtype))
    return varying_like(state, xs)


def valid_steps(lengths, T: int, xp=jnp):
    """The one mask builder: ``(*batch, T)`` booleans, True for the valid steps ``t < lengths`` (``lengths``
    of any shape ``batch``). :func:`time_mask`, :func:`rnn_jax.sequence_mask` and
    :func:`rnn_jax.losses.step_mask` are views of it. ``xp=numpy`` builds it on the host, for checks and
    data preparation on concrete values."""
    lengths = xp.asarray(lengths)
    return xp.arange(T).reshape((1,) * lengths.ndim + (T,)) < lengths[..., None]


def time_mask(lengths, T: int):
    """``(T, B, 1)`` booleans, True for the valid steps ``t < lengths[b]``; None when ``lengths`` is None."""
    if lengths is None:
        return None
    return valid_steps(lengths, T).T[..., None]


def zero_padding(xs_tm: jax.Array, mask) -> jax.Array:
    """Zeros past each length, so that whatever the padding holds (NaN, inf) reaches no output and no
    gradient: ``where`` with a clean untaken branch (the safe-``where`` pattern)."""
    return zero_invalid(mask, xs_tm)


def flip_valid(xs_tm, lengths=None):
    """Reverse the valid prefix of every sequence of time-major leaves ``(T, B, ...)``; padding stays.

    With ``lengths=None`` the whole time axis is reversed. The permutation is its own inverse.
    """
    if lengths is None:
        return jax.tree.map(lambda a: a[::-1], xs_tm)

    def flip(a):
        T = a.shape[0]
        t = jnp.arange(T)[:, None]
        idx = jnp.where(t < lengths[None, :], lengths[None, :] - 1 - t, t)  # (T, B)
        idx = idx.reshape(idx.shape + (1,) * (a.ndim - 2))
        return jnp.take_along_axis(a, jnp.broadcast_to(idx, a.shape), axis=0)

    return jax.tree.map(flip, xs_tm)


# The masking rule, written once: past a sequence's length its state is frozen and its output is zero.
# Every recurrence (the generic scan, the kernels' loops and their derivative loops, the parallel forms,
# hand-written kernels) applies it through these two functions.


def _against(valid, a):
    """``valid`` with trailing axes of size 1 up to ``a``'s rank: ``(B,)`` or ``(B, 1)`` against ``(B, H)``,
    ``(T, B, 1)`` against ``(T, B, H)``."""
    return valid.reshape(valid.shape + (1,) * (a.ndim - valid.ndim))


def select(valid, new, old):
    """The masking rule for states: ``new`` where ``valid``, else ``old`` (a frozen state), for pytrees of
    leaves ``(B, ...)`` or ``(T, B, ...)``; ``valid`` booleans ``(B,)``, ``(B, 1)`` or ``(T, B, 1)``, or None
    (every step valid: ``new``)."""
    if valid is None:
        return new
    return jax.tree.map(lambda n, o: jnp.where(_against(valid, n), n, o), new, old)


def zero_invalid(valid, tree):
    """The masking rule for outputs: zero where not ``valid`` (see :func:`select`); the untaken branch is a
    clean zero, so nothing past a length reaches a gradient."""
    if valid is None:
        return tree
    return jax.tree.map(lambda a: jnp.where(_against(valid, a), a, jnp.zeros((), a.dtype)), tree)
