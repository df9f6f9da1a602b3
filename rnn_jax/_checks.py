"""Input validation at the public edges: clear ``ValueError`` messages before tracing.

Shapes, dtypes and structures are known while tracing, so they are always checked (free at run time).
Values (lengths, token ids, class targets) are checked when they are concrete, i.e. outside ``jit``;
inside ``jit`` they are traced values, and :func:`checked` adds the same checks as
``jax.experimental.checkify`` checks.
"""

from __future__ import annotations

import contextvars
import functools
import math
from typing import Optional, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

_CHECKIFY = contextvars.ContextVar("rnn_jax_checkify", default=False)


def checked(fn):
    """``fn`` with the value checks done inside ``jit`` too: returns ``(error, output)`` (the
    ``jax.experimental.checkify`` convention); ``error.throw()`` raises the first failed check.

    Without it, values that are only known under ``jit`` are not checked: a length outside ``[0, T]``
    acts as ``T`` (or 0), a token id outside ``[0, vocab)`` is clamped by the embedding's gather, a class
    target outside ``[0, V)`` gives a meaningless loss. Usage::

        err, loss = jax.jit(rnn_jax.checked(loss_fn))(params, batch)
        err.throw()
    """
    from jax.experimental import checkify

    @functools.wraps(fn)
    def with_checks(*args, **kwargs):
        token = _CHECKIFY.set(True)
        try:
            return fn(*args, **kwargs)
        finally:
            _CHECKIFY.reset(token)

    return checkify.checkify(with_checks, errors=checkify.user_checks)


def value_check(ok, message: str, values=None) -> None:
    """A check of traced values: a ``checkify.check`` inside :func:`checked`, nothing otherwise. With
    ``values`` (the array ``ok`` judges, of ``ok``'s shape), the message ends as the eager check's does:
    ``, got 25 at index (1,)``, the first offending value and its index."""
    if _CHECKIFY.get():
        from jax.experimental import checkify

        if values is None or jnp.ndim(ok) == 0:
            checkify.check(jnp.all(ok), message)
            return
        ok = jnp.broadcast_to(ok, jnp.shape(values))
        first = jnp.argmax(~ok.reshape(-1))  # the first offending element, in row-major order
        index = jnp.unravel_index(first, ok.shape)
        where = "(" + ", ".join(["{}"] * len(index)) + ("," if len(index) == 1 else "") + ")"
        checkify.check(
            jnp.all(ok),
            message.replace("{", "{{").replace("}", "}}") + ", got {} at index " + where,
            jnp.asarray(values).reshape(-1)[first],
            *index,
        )


def takes_keyword(fn, name: str) -> bool:
    """Whether ``fn`` can be called with the keyword ``name`` (True when its signature cannot be read)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name and p.kind != p.POSITIONAL_ONLY or p.kind == p.VAR_KEYWORD for p in params)


def is_traced(value) -> bool:
    return isinstance(value, jax.core.Tracer)


def concrete_scalar(value, argname: str, *, kind: str = "number", want: str | None = None):
    """``value`` (a Python, numpy or concrete JAX scalar) as a Python number, or the traced JAX scalar
    itself. ``kind``: ``"number"`` (int or float, no bool) or ``"int"``. Raises ``ValueError`` naming
    ``argname`` for anything else (a string, a bool, an array with elements, a complex number)."""
    want = want or ("an int" if kind == "int" else "a real number")
    if isinstance(value, (bool, np.bool_)) or value is None or isinstance(value, (str, bytes)):
        raise ValueError(f"{argname}: expected {want}, got {value!r}")
    shape = getattr(value, "shape", None)
    dtype = getattr(value, "dtype", np.dtype(type(value)) if isinstance(value, (int, float)) else np.dtype(object))
    if shape is not None:
        if tuple(shape) != ():
            raise ValueError(f"{argname}: expected {want} (a scalar), got an array of shape {shape_str(shape)}")
        ok = jnp.issubdtype(dtype, jnp.integer) or (kind == "number" and jnp.issubdtype(dtype, jnp.floating))
        if not ok:
            raise ValueError(f"{argname}: expected {want}, got dtype {dtype}")
        if is_traced(value):
            return value
        value = np.asarray(value).item()
    if kind == "int" and not isinstance(value, int):
        raise ValueError(f"{argname}: expected {want}, got {value!r}")
    if not isinstance(value, (int, float)):
        raise ValueError(f"{argname}: expected {want}, got {type(value).__name__}")
    return value


def check_int(value, argname: str, minimum: int = 1, want: str | None = None) -> int:
    """A count or size: a Python or numpy integer (a concrete 0-d integer array too) of at least
    ``minimum``, as a Python int. A bool, a float, a traced value or anything else raises ValueError."""
    want = want or ("a positive int" if minimum == 1 else f"an int >= {minimum}")
    v = concrete_scalar(value, argname, kind="int", want=want)
    if is_traced(v) or v < minimum:
        raise ValueError(f"{argname}: expected {want}, got {value!r}")
    return int(v)


def check_real(value, argname: str, *, minimum=None, finite: bool = True) -> float:
    """A concrete real number (Python, numpy or JAX scalar) that is finite and ``>= minimum``, as a
    Python float; traced values are refused (this is for hyperparameters fixed when a cell is built)."""
    want = "a finite number" + (f" >= {minimum}" if minimum is not None else "")
    v = concrete_scalar(value, argname, want=want)
    if is_traced(v):
        raise ValueError(f"{argname}: expected a concrete number, got a traced value")
    v = float(v)
    if (finite and not math.isfinite(v)) or (minimum is not None and not v >= minimum):
        raise ValueError(f"{argname}: expected {want}, got {value!r}")
    return v


def check_temperature(temperature):
    """A sampling temperature: a finite number >= 0. Concrete values (Python, numpy, JAX) are checked
    now and returned as a Python float; a traced scalar is returned as a float array, its value
    checked inside :func:`checked` (outside it, :func:`rnn_jax.models` writes no valid token for an
    invalid value)."""
    t = concrete_scalar(temperature, "temperature", want="a finite number >= 0")
    if is_traced(t):
        value_check(jnp.isfinite(t) & (t >= 0), "temperature: expected a finite number >= 0")
        return t.astype(jnp.result_type(float))
    if not (math.isfinite(t) and t >= 0):
        raise ValueError(f"temperature: expected a finite number >= 0, got {temperature!r}")
    return float(t)


def shape_str(shape) -> str:
    """Python's tuple notation: ``(5,)``, ``(2, 3)``."""
    return str(tuple(int(d) for d in shape))


def expected_params(init, input_size: int, dtype):
    """The params' shapes and dtypes that ``init`` makes for ``input_size`` (no computation)."""
    return jax.eval_shape(lambda key: init(key, input_size, dtype), jax.random.key(0))


def check_params(expected, params, argname: str = "params") -> None:
    """``params`` must have the tree structure, shapes and one floating dtype of ``expected``
    (a pytree of ``jax.ShapeDtypeStruct`` from ``jax.eval_shape(init, ...)``)."""
    exp_leaves, exp_def = jax.tree_util.tree_flatten_with_path(expected)
    try:
        got_leaves = exp_def.flatten_up_to(params)  # type: ignore[attr-defined]
    except (ValueError, TypeError) as e:
        got_def = jax.tree_util.tree_structure(params)
        raise ValueError(f"{argname}: do not match the cell/layer: expected structure {exp_def}, got {got_def}") from e
    dtypes = set()
    for (path, exp), got in zip(exp_leaves, got_leaves):
        gshape = getattr(got, "shape", None)
        if gshape is None or tuple(gshape) != tuple(exp.shape):
            raise ValueError(
                f"{argname}{jax.tree_util.keystr(path)}: expected shape {shape_str(exp.shape)}, "
                f"got {shape_str(gshape) if gshape is not None else type(got).__name__}"
            )
        dtypes.add(jnp.dtype(got.dtype))
    if len(dtypes) > 1:
        raise ValueError(f"{argname}: mixed dtypes {sorted(str(d) for d in dtypes)}; cast all params to one dtype")


def check_same_dtype(xs, params, argname: str = "xs") -> None:
    leaves = jax.tree_util.tree_leaves(params)
    if leaves and jnp.dtype(xs.dtype) != jnp.dtype(leaves[0].dtype):
        raise ValueError(
            f"{argname}: dtype {xs.dtype} does not match the params' dtype {leaves[0].dtype}; "
            f"cast one of them (mixed dtypes)"
        )


# ------------------------------------------------------------------------------------------------
# The batch-first edge: (*batch, T, I) inputs with lengths of shape batch.


def check_batch(xs, input_size: int | None, argname: str = "xs", tokens: bool = False) -> tuple[tuple, int]:
    """``xs`` must be ``(*batch, T, I)`` floats (``tokens``: ``(*batch, T)`` integers). Returns ``(batch, T)``."""
    shape = getattr(xs, "shape", None)
    dtype = getattr(xs, "dtype", None)
    want = "(*batch, T)" if tokens else (f"(*batch, T, {input_size})" if input_size is not None else "(*batch, T, I)")
    if shape is None or dtype is None:
        raise ValueError(f"{argname}: expected an array of shape {want}, got {type(xs).__name__}")
    if tokens:
        if len(shape) < 1:
            raise ValueError(f"{argname}: expected integer tokens of shape {want}, got {shape_str(shape)}")
        if not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(f"{argname}: expected integer token ids, got dtype {dtype}")
        return tuple(shape[:-1]), int(shape[-1])
    if len(shape) < 2:
        raise ValueError(f"{argname}: expected shape {want}, got {shape_str(shape)}")
    if input_size is not None and shape[-1] != input_size:
        raise ValueError(f"{argname}: expected shape {want} (feature size {input_size}), got {shape_str(shape)}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{argname}: expected a floating dtype, got {dtype}")
    return tuple(shape[:-2]), int(shape[-2])


def check_batch_lengths(lengths, batch: tuple, T: int, argname: str = "lengths"):
    """``lengths`` must have shape ``batch`` (a scalar for one sequence), integer values in [0, T]
    (checked when concrete). Returns it as a ``(B,)`` int32 array, or None."""
    if lengths is None:
        return None
    if isinstance(lengths, (bool, float, np.bool_, np.floating)):
        raise ValueError(f"{argname}: expected integers, got {lengths!r}")
    if isinstance(lengths, int):
        lengths = np.asarray(lengths, np.int32)
    elif isinstance(lengths, (list, tuple)):
        lengths = np.asarray(lengths)
    shape = getattr(lengths, "shape", None)
    if shape is None:
        raise ValueError(f"{argname}: expected integers of shape {shape_str(batch)}, got {type(lengths).__name__}")
    if tuple(shape) != tuple(batch):
        raise ValueError(
            f"{argname}: expected shape {shape_str(batch)} (the batch dimensions of xs), got {shape_str(shape)}"
        )
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(f"{argname}: expected an integer dtype, got {lengths.dtype}")
    if is_traced(lengths):
        value_check((lengths >= 0) & (lengths <= T), f"{argname}: expected values in [0, T] = [0, {T}]", lengths)
        # outside checked(): a length past T acts as T and a negative one as 0, clamped here, once,
        # so that no reversal or readout downstream gathers out of range
        return jnp.clip(lengths.reshape(-1), 0, T).astype(jnp.int32)
    else:
        arr = np.asarray(lengths).reshape(-1)
        bad = np.nonzero((arr < 0) | (arr > T))[0]
        if bad.size:
            where = np.unravel_index(int(bad[0]), batch) if batch else ()
            raise ValueError(
                f"{argname}: expected values in [0, T] = [0, {T}], got {int(arr[bad[0]])}"
                + (f" at index {tuple(int(i) for i in where)}" if batch else "")
            )
    return jnp.asarray(lengths).reshape(-1).astype(jnp.int32)


def check_batch_state(state, template, batch: tuple, dtype, argname: str = "initial_state") -> None:
    """``state`` must have the structure of one example's ``template`` with every leaf ``(*batch, ...)``
    and the template's dtype (the cell's initial state for the input's dtype: complex for a complex state)."""
    exp_leaves, exp_def = jax.tree_util.tree_flatten_with_path(template)
    try:
        got = exp_def.flatten_up_to(state)  # type: ignore[attr-defined]
    except (ValueError, TypeError):
        raise ValueError(
            f"{argname}: expected the structure {exp_def} with leaves of shape "
            f"{shape_str(batch)} + (...,), got {jax.tree_util.tree_structure(state)}"
        ) from None
    for (path, exp), g in zip(exp_leaves, got):
        want = tuple(batch) + tuple(exp.shape)
        gshape = getattr(g, "shape", None)
        if gshape is None or tuple(gshape) != want:
            raise ValueError(
                f"{argname}{jax.tree_util.keystr(path)}: expected shape {shape_str(want)}, got "
                f"{shape_str(gshape) if gshape is not None else type(g).__name__}"
            )
        want_dtype = jnp.dtype(getattr(exp, "dtype", dtype))
        if jnp.dtype(g.dtype) != want_dtype:
            raise ValueError(f"{argname}{jax.tree_util.keystr(path)}: expected dtype {want_dtype}, got {g.dtype}")


T = TypeVar("T")


def require(value: Optional[T], message: str) -> T:
    """``value``, known not to be None (checked earlier, at the edge); a ValueError with ``message`` if it is."""
    if value is None:
        raise ValueError(message)
    return value
