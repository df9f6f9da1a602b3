"""Input validation at the public edges: clear ``ValueError`` messages before tracing."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def shape_str(shape) -> str:
    """Python's tuple notation: ``(5,)``, ``(2, 3)``."""
    return str(tuple(int(d) for d in shape))


def check_sequence(xs, input_size: int | None, argname: str = "xs") -> None:
    """``xs`` must be ``(T, I)`` with ``I == input_size`` and a floating dtype."""
    shape = getattr(xs, "shape", None)
    if shape is None:
        raise ValueError(f"{argname}: expected an array of shape (T, I), got {type(xs).__name__}")
    want = f"(T, {input_size})" if input_size is not None else "(T, I)"
    if len(shape) != 2:
        hint = "; batch with jax.vmap or rnn_jax.apply_batch" if len(shape) == 3 else ""
        raise ValueError(f"{argname}: expected shape {want}, got {shape_str(shape)}{hint}")
    if input_size is not None and shape[1] != input_size:
        raise ValueError(f"{argname}: expected shape {want} (feature size {input_size}), "
                         f"got {shape_str(shape)}")
    if not jnp.issubdtype(xs.dtype, jnp.floating):
        raise ValueError(f"{argname}: expected a floating dtype, got {xs.dtype}")


def check_length(length, T: int, argname: str = "length") -> None:
    """``length`` must be a scalar integer in [0, T]; checked on concrete values only."""
    if length is None:
        return
    shape = getattr(length, "shape", ())
    if shape != ():
        raise ValueError(f"{argname}: expected a scalar (one sequence), got shape {shape_str(shape)}")
    dtype = getattr(length, "dtype", None)
    if dtype is not None and not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{argname}: expected an integer, got dtype {dtype}")
    if isinstance(length, jax.core.Tracer):
        return
    value = int(np.asarray(length))
    if not 0 <= value <= T:
        raise ValueError(f"{argname}: expected a value in [0, T] = [0, {T}], got {value}")


def check_lengths(lengths, B: int, T: int, argname: str = "lengths") -> None:
    """Batch lengths: ``(B,)`` integers in [0, T]; checked on concrete values only."""
    if lengths is None:
        return
    shape = getattr(lengths, "shape", None)
    if shape != (B,):
        raise ValueError(f"{argname}: expected shape ({B},), got "
                         f"{shape_str(shape) if shape is not None else type(lengths).__name__}")
    if not jnp.issubdtype(lengths.dtype, jnp.integer):
        raise ValueError(f"{argname}: expected an integer dtype, got {lengths.dtype}")
    if isinstance(lengths, jax.core.Tracer):
        return
    arr = np.asarray(lengths)
    bad = np.nonzero((arr < 0) | (arr > T))[0]
    if bad.size:
        raise ValueError(f"{argname}: expected values in [0, T] = [0, {T}], got {int(arr[bad[0]])} "
                         f"at index {int(bad[0])}")


def expected_params(init, input_size: int, dtype):
    """The params' shapes and dtypes that ``init`` makes for ``input_size`` (no computation)."""
    return jax.eval_shape(lambda key: init(key, input_size, dtype), jax.random.key(0))


def check_params(expected, params, argname: str = "params") -> None:
    """``params`` must have the tree structure, shapes and one floating dtype of ``expected``
    (a pytree of ``jax.ShapeDtypeStruct`` from ``jax.eval_shape(init, ...)``)."""
    exp_leaves, exp_def = jax.tree_util.tree_flatten_with_path(expected)
    try:
        got_leaves = exp_def.flatten_up_to(params)
    except (ValueError, TypeError) as e:
        got_def = jax.tree_util.tree_structure(params)
        raise ValueError(f"{argname}: do not match the cell/layer: expected structure {exp_def}, "
                         f"got {got_def}") from e
    dtypes = set()
    for (path, exp), got in zip(exp_leaves, got_leaves):
        gshape = getattr(got, "shape", None)
        if gshape is None or tuple(gshape) != tuple(exp.shape):
            raise ValueError(f"{argname}{jax.tree_util.keystr(path)}: expected shape {shape_str(exp.shape)}, "
                             f"got {shape_str(gshape) if gshape is not None else type(got).__name__}")
        dtypes.add(jnp.dtype(got.dtype))
    if len(dtypes) > 1:
        raise ValueError(f"{argname}: mixed dtypes {sorted(str(d) for d in dtypes)}; cast all params to one dtype")


def check_same_dtype(xs, params, argname: str = "xs") -> None:
    leaves = jax.tree_util.tree_leaves(params)
    if leaves and jnp.dtype(xs.dtype) != jnp.dtype(leaves[0].dtype):
        raise ValueError(f"{argname}: dtype {xs.dtype} does not match the params' dtype {leaves[0].dtype}; "
                         f"cast one of them (mixed dtypes)")
