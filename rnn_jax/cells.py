"""One-timestep recurrent cells as pure functions.

A :class:`Cell` is a NamedTuple of pure functions, the way ``optax.GradientTransformation`` is. It holds
no arrays; factories (:func:`elman`, :func:`jordan`, :func:`lstm`, :func:`gru`) close over the
hyperparameters. Every function works on ONE example: ``x`` is ``(I,)``, the state's leaves are
``(H,)``: the readable definition that every faster form is tested against.

A cell is three functions (``init``, ``initial_state``, ``step``) and its output size; everything else
is optional (:class:`Cell` shows one written in ten lines).

Parameters are plain dicts, weights stored input-major ``(fan_in, fan_out)`` so a step is ``x @ W``.
Gate blocks are joined along the last axis in the order given in each docstring.

A cell may also carry its fast batched recurrence, ``Cell.fused``: a function that runs the whole
sequence for a batch at once with a hand-written backward pass (:mod:`rnn_jax.fused`). The cell owns
its parameter names and hands the kernel the matrices it needs; layers call it on batches
(``rnn_jax.rnn``). It computes exactly what a loop of ``step`` computes (tested to 1e-10).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
from jax import lax

from rnn_jax import _checks, _ops
from rnn_jax import fused as _fused
from rnn_jax import initializers as inits
from rnn_jax._ops import affine, with_static

Params = dict
Activation = Union[str, Callable[[jax.Array], jax.Array]]

__all__ = [
    "Cell",
    "LSTMState",
    "JordanState",
    "elman",
    "jordan",
    "lstm",
    "gru",
    "orthogonal_rnn",
    "modrelu",
    "prepared",
    "resolve_activation",
    "check_cell",
    "input_size_of",
    "min_gru",
    "min_lstm",
    "indrnn",
    "lru",
    "layer_norm",
    "layer_norm_lstm",
    "layer_norm_gru",
]

# g' as a function of the output s = g(a), for the activations whose derivative needs only s: the
# fused Elman recurrence then keeps only the states. Keyed by the function itself, so a callable
# given directly (jnp.tanh, or Flax's nn.tanh, which is the same object) is recognised too.
OUTPUT_DERIVATIVES: dict[Any, Callable] = {
    jnp.tanh: lambda s: 1.0 - s * s,
    jax.nn.relu: lambda s: (s > 0).astype(s.dtype),
    jax.nn.sigmoid: lambda s: s * (1.0 - s),
}


class Cell(NamedTuple):
    """A recurrent cell: pure functions over ONE example. Write one in ten lines::

        def min_gru(H):                           # Feng et al. 2024, sequential form
            def init(key, input_size, dtype=jnp.float32):
                k1, k2 = jax.random.split(key)
                glorot = rnn_jax.initializers.glorot_uniform
                return {"W_z": glorot(k1, (input_size, H), dtype), "W_h": glorot(k2, (input_size, H), dtype)}

            def step(params, h, x):               # h (H,), x (I,)
                z = jax.nn.sigmoid(x @ params["W_z"])
                h = (1 - z) * h + z * (x @ params["W_h"])
                return h, h                       # (new state, output)

            return rnn_jax.Cell(init, lambda dtype=jnp.float32: jnp.zeros((H,), dtype), step, output_size=H)

    and it gets every feature of a layer: batches, lengths, reverse, bidirectional and stacked layers,
    models, remat, streaming, ``jax.vmap``, per-example and higher derivatives, ``gradcheck``, ``fit``.
    :func:`check_cell` (also run when a layer is initialised and applied) evaluates one abstract step and
    raises a ``ValueError`` naming the field that does not agree with ``step``.

    Attributes:
      init: ``(key, input_size, dtype=float32) -> params`` (any pytree of arrays).
      initial_state: ``(dtype=float32) -> state`` of one example (any pytree of arrays), the state before
        step 0 when the caller gives none.
      step: ``(params, state, x (I,)) -> (state, y (O,))``: the definition every faster form is tested
        against. The new state has the initial state's structure, shapes and dtypes.
      output_size: O, the size of ``y``.
      name: a short name for messages and tables.
      prepare: optional, ``params -> params``: what every step needs that depends on the parameters
        alone (the orthogonal cell's ``W = expm(A - A^T)``), computed once per sequence by layers and the
        diagnostics (:func:`prepared`). ``step`` accepts raw or prepared params.
      fused: optional, the cell's fast batched recurrence (Elman, LSTM and GRU carry one):
        ``(params, xs (T, B, I), state (B, ...), mask (T, B, 1) | None, *, unroll, hoist, rule,
        static=None) -> (ys (T, B, O), final_state)``, time-major, equal to a loop of ``step`` (past
        a sequence's length: state frozen, output zero). ``rule="vjp"`` is asked for by batched
        calls, ``"jvp"`` by calls without batch dimensions, which ``jax.vmap`` maps
        (:mod:`rnn_jax.fused` says why the two differ). ``static (B, C)``: inputs that every step
        reads after ``x_t`` (its input is ``[x_t, static]``, ``I + C`` wide, as ``params`` were
        built for), a decoder's context: their product with the last ``C`` rows of ``W_i`` is taken
        once per sequence, as a bias of each row, not at every step. ``hoist``: whether to take the
        input products of all steps before the loop (True, False or ``"auto"``). ``pack=None`` (passed
        only by ``rnn(cell, pack=False)``): run every row at every step. A kernel with hand-written
        derivatives is a :class:`rnn_jax.fused.Kernel` run by :func:`rnn_jax.fused.run`, which owns the
        loops, masking, packing, hoisting and the derivative rules.
      linear: optional, the cell's parallel form when it is a diagonal linear recurrence:
        ``(params, x (I,)) -> (a, b)``, two arrays of the state's shape and dtype (the state one array,
        real or complex), with ``step`` computing ``h = a * h_prev + b``. ``a`` and ``b`` depend on the
        input alone, so ``rnn(cell, parallel="linear")`` takes them for all steps at once, solves the
        recurrence with ``lax.associative_scan`` and then takes every step's output from
        ``step(params, h_prev, x)`` at once (:func:`rnn_jax.parallel.linear_batch`).
      diagonal: ``True`` when ``step``'s new state depends on each unit of the previous state only
        through that unit (a diagonal state Jacobian, IndRNN's): :func:`rnn_jax.parallel.deer`'s
        ``"diagonal"`` method then reads the exact Jacobian with one forward-mode product per step
        (O(T H)), not by building the dense one. A cell with ``linear`` is diagonal too.

    The input size is read from the params by comparing ``init``'s abstract output at two input sizes
    (:func:`input_size_of`): no field restates it.

    Examples:
      >>> def leaky(H, alpha=0.5):              # a new cell in a few lines
      ...     def init(key, input_size, dtype=jnp.float32):
      ...         return {"W": jax.random.normal(key, (input_size, H), dtype) / input_size ** 0.5}
      ...     def step(p, h, x):
      ...         h = (1 - alpha) * h + alpha * jnp.tanh(x @ p["W"] + h)
      ...         return h, h
      ...     return rnn_jax.Cell(init, lambda dtype=jnp.float32: jnp.zeros((H,), dtype), step, output_size=H)
      >>> layer = rnn_jax.bidirectional(rnn_jax.rnn(leaky(4)), rnn_jax.rnn(leaky(4)))
      >>> ys, _ = layer.apply(layer.init(jax.random.key(0), 3), jnp.ones((2, 6, 3)), lengths=jnp.array([6, 2]))
      >>> ys.shape
      (2, 6, 8)
    """

    init: Callable[..., Params]
    initial_state: Callable[..., Any]
    step: Callable[[Params, Any, jax.Array], tuple[Any, jax.Array]]
    output_size: int
    name: str = "cell"
    prepare: Optional[Callable[[Params], Params]] = None
    fused: Optional[Callable[..., tuple[jax.Array, Any]]] = None
    linear: Optional[Callable[[Params, jax.Array], tuple[jax.Array, jax.Array]]] = None
    diagonal: bool = False


@functools.lru_cache(maxsize=1024)
def _input_axes(init, dtype) -> tuple:
    """Where ``init``'s params depend on the input size: ``((leaf index, axis, a, b), ...)`` with the
    leaf's size along ``axis`` equal to ``a * input_size + b`` (read from two abstract calls, no
    computation)."""
    one, two = (jax.tree_util.tree_leaves(_checks.expected_params(init, n, dtype)) for n in (1, 2))
    return tuple(
        (i, ax, d2 - d1, 2 * d1 - d2)
        for i, (s1, s2) in enumerate(zip(one, two))
        for ax, (d1, d2) in enumerate(zip(s1.shape, s2.shape))
        if d1 != d2
    )


def input_size_of(init: Callable[..., Params], params: Params) -> Optional[int]:
    """The input size ``params`` were built for by ``init`` (a cell's or a layer's), read from the
    first leaf whose shape grows with it; None when no leaf depends on it (or ``params`` are not
    ``init``'s: :func:`rnn_jax.unroll.check_inputs` then says what differs).

    Args:
      init: a cell's or a layer's ``init(key, input_size, dtype)``.
      params: parameters built by it.

    Returns:
      The input size, an int, or None.

    Examples:
      >>> cell = rnn_jax.gru(4)
      >>> rnn_jax.cells.input_size_of(cell.init, cell.init(jax.random.key(0), 7))
      7
    """
    leaves = jax.tree_util.tree_leaves(params)
    dtype = jnp.dtype(leaves[0].dtype) if leaves and hasattr(leaves[0], "dtype") else jnp.dtype(jnp.float32)
    for i, ax, a, b in _input_axes(init, dtype)[:1]:
        shape = getattr(leaves[i], "shape", ()) if i < len(leaves) else ()
        if ax < len(shape) and a > 0 and (shape[ax] - b) % a == 0 and shape[ax] > b:
            return (shape[ax] - b) // a
    return None


def check_cell(
    cell: Cell, input_size: Optional[int] = None, dtype=jnp.float32, params: Optional[Params] = None
) -> None:
    """Check that ``cell``'s fields agree with its ``step``, and raise ``ValueError`` naming the field
    that does not.

    Without ``input_size``: the fields' types only (functions, an int ``output_size``). With it, one
    abstract step too (``jax.eval_shape``: no computation): ``step(init(key, input_size, dtype),
    initial_state(dtype), x (input_size,))`` must return a state with the initial state's structure,
    shapes and dtypes and an output of shape ``(output_size,)`` and dtype ``dtype``. ``params``
    (optional) are checked against ``init``'s. :func:`rnn_jax.rnn` runs it when a layer is built, and
    with the input size when the layer is initialised or applied (once per cell, input size and dtype).

    Args:
      cell: the :class:`Cell` to check.
      input_size: the input width ``I`` to check one abstract step at, or None (the fields' types only).
      dtype: the parameters' and inputs' dtype.
      params: optional parameters to check against ``init``'s structure and shapes.

    Returns:
      None; raises ``ValueError`` naming the field (``init``, ``initial_state``, ``step``, ``output_size``,
      ``linear``, the params) that does not agree.

    Examples:
      >>> good = rnn_jax.elman(4)
      >>> rnn_jax.cells.check_cell(good, input_size=3)
      >>> bad = good._replace(output_size=5)
      >>> rnn_jax.cells.check_cell(bad, input_size=3)
      Traceback (most recent call last):
      ...
      ValueError: cell 'elman': output_size is 5, but step returns an output of shape (4,); expected (5,)
    """
    if not isinstance(cell, Cell):
        raise ValueError(f"cell: expected an rnn_jax Cell (e.g. rnn_jax.lstm(H)), got {type(cell).__name__}")
    for field in ("init", "initial_state", "step"):
        if not callable(getattr(cell, field)):
            raise ValueError(f"cell.{field}: expected a function, got {type(getattr(cell, field)).__name__}")
    for field in ("prepare", "fused", "linear"):
        if getattr(cell, field) is not None and not callable(getattr(cell, field)):
            raise ValueError(f"cell.{field}: expected a function or None, got {type(getattr(cell, field)).__name__}")
    _checks.check_int(cell.output_size, "cell.output_size")
    if not isinstance(cell.diagonal, bool):
        raise ValueError(f"cell.diagonal: expected True or False, got {cell.diagonal!r}")
    if not isinstance(cell.name, str):
        raise ValueError(f"cell.name: expected a string, got {type(cell.name).__name__}")
    if input_size is None:
        return
    if params is not None:
        _checks.check_params(_checks.expected_params(cell.init, input_size, dtype), params)
    _check_step(cell, _checks.check_int(input_size, "input_size"), jnp.dtype(dtype))


def _check_step(cell: Cell, input_size: int, dtype) -> None:
    try:
        hash(cell)
    except TypeError:  # a field that is not hashable: check every time
        return _step_agrees(cell, input_size, dtype)
    return _checked_step(cell, input_size, dtype)


@functools.lru_cache(maxsize=1024)
def _checked_step(cell: Cell, input_size: int, dtype) -> None:
    return _step_agrees(cell, input_size, dtype)


def _step_agrees(cell: Cell, input_size: int, dtype) -> None:
    name = f"cell {cell.name!r}"
    try:
        params = _checks.expected_params(cell.init, input_size, dtype)
    except Exception as e:  # noqa: BLE001 - any failure of the user's init is reported as init's
        raise ValueError(f"{name}: init(key, {input_size}, {dtype.name}) failed: {type(e).__name__}: {e}") from e
    try:
        state0 = jax.eval_shape(lambda: cell.initial_state(dtype))
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"{name}: initial_state({dtype.name}) failed: {type(e).__name__}: {e}") from e
    x = jax.ShapeDtypeStruct((input_size,), dtype)
    try:
        state, y = jax.eval_shape(lambda p, s, x: cell.step(prepared(cell, p), s, x), params, state0, x)
    except Exception as e:  # noqa: BLE001

        def shapes(tree):
            return ", ".join(
                f"{jax.tree_util.keystr(k) or 'state'} {_checks.shape_str(v.shape)}"
                for k, v in jax.tree_util.tree_flatten_with_path(tree)[0]
            )

        raise ValueError(
            f"{name}: step(params, initial_state(), x ({input_size},)) failed, so init's params "
            f"({shapes(params)}) or initial_state ({shapes(state0)}) do not agree with step: "
            f"{type(e).__name__}: {e}"
        ) from e
    want, got = jax.tree_util.tree_structure(state0), jax.tree_util.tree_structure(state)
    if want != got:  # type: ignore[operator]
        raise ValueError(f"{name}: initial_state: step returns a state of structure {got}, initial_state gives {want}")
    for (path, s0), s1 in zip(jax.tree_util.tree_flatten_with_path(state0)[0], jax.tree_util.tree_leaves(state)):
        if (s0.shape, s0.dtype) != (s1.shape, s1.dtype):
            raise ValueError(
                f"{name}: initial_state{jax.tree_util.keystr(path)}: shape {_checks.shape_str(s0.shape)} "
                f"{s0.dtype}, but step returns a state of shape {_checks.shape_str(s1.shape)} {s1.dtype} "
                f"there"
            )
    if getattr(y, "shape", None) != (cell.output_size,):
        raise ValueError(
            f"{name}: output_size is {cell.output_size}, but step returns an output of shape "
            f"{_checks.shape_str(getattr(y, 'shape', None))}; expected ({cell.output_size},)"
        )
    if y.dtype != dtype:
        raise ValueError(f"{name}: step returns a {y.dtype} output for {dtype.name} params and inputs")
    if cell.linear is not None:
        if not isinstance(state0, jax.ShapeDtypeStruct):
            raise ValueError(
                f"{name}: linear: a diagonal linear recurrence has one state array; initial_state "
                f"gives {jax.tree_util.tree_structure(state0)}"
            )
        linear = cell.linear
        try:
            ab = jax.eval_shape(lambda p, x: linear(prepared(cell, p), x), params, x)
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{name}: linear(params, x ({input_size},)) failed: {type(e).__name__}: {e}") from e
        if (
            not isinstance(ab, tuple)
            or len(ab) != 2
            or any(getattr(v, "shape", None) != state0.shape or v.dtype != state0.dtype for v in ab)
        ):
            raise ValueError(
                f"{name}: linear must return (a, b), two {state0.dtype} arrays of the state's shape "
                f"{_checks.shape_str(state0.shape)}, got {ab}"
            )


def prepared(cell: Cell, params: Params) -> Params:
    """``params`` with the cell's per-sequence precomputation done (see ``Cell.prepare``): call it once
    before a loop of ``cell.step`` calls; differentiable like any function of ``params``.

    Args:
      cell: a :class:`Cell`.
      params: its raw parameters.

    Returns:
      The parameters ``step`` reads fastest (``params`` itself for a cell without ``prepare``).

    Examples:
      >>> cell = rnn_jax.orthogonal_rnn(4)
      >>> p = cell.init(jax.random.key(0), 2)
      >>> sorted(rnn_jax.cells.prepared(cell, p))
      ['A', 'W', 'W_i', 'b']
    """
    return params if cell.prepare is None else cell.prepare(params)


class LSTMState(NamedTuple):
    """LSTM state: hidden state ``h`` (H,) and cell state ``c`` (H,). (Flax orders its carry tuple (c, h).)

    Attributes:
      h: the hidden state and output, ``(H,)`` (``(B, H)`` in a batch).
      c: the cell state, same shape.

    Examples:
      >>> s = rnn_jax.lstm(4).initial_state()
      >>> s.h.shape, s.c.shape
      ((4,), (4,))
    """

    h: jax.Array
    c: jax.Array


class JordanState(NamedTuple):
    """Jordan state: the previous output ``y`` (O,).

    Attributes:
      y: the previous output, ``(O,)`` (``(B, O)`` in a batch).

    Examples:
      >>> rnn_jax.jordan(8, 2).initial_state().y.shape
      (2,)
    """

    y: jax.Array


_ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "sigmoid": jax.nn.sigmoid,
    "gelu": jax.nn.gelu,
    "identity": lambda z: z,
    "linear": lambda z: z,
}


def resolve_activation(spec: Activation, argname: str = "activation") -> Callable[[jax.Array], jax.Array]:
    """Resolve an activation given by name (tanh, relu, sigmoid, identity) or as a callable.

    Args:
      spec: a name or a callable.
      argname: the argument's name for the error message.

    Returns:
      The function.

    Examples:
      >>> rnn_jax.cells.resolve_activation("relu")(jnp.array([-1.0, 2.0]))
      Array([0., 2.], dtype=float32)
      >>> rnn_jax.cells.resolve_activation("swish", "kernel_activation")
      Traceback (most recent call last):
      ...
      ValueError: kernel_activation: unknown activation 'swish'; expected a callable or one of [...]
    """
    if callable(spec):
        return spec
    try:
        return _ACTIVATIONS[spec]
    except (KeyError, TypeError):
        raise ValueError(
            f"{argname}: unknown activation {spec!r}; expected a callable or one of {sorted(_ACTIVATIONS)}"
        ) from None


def _check_size(name: str, value: int) -> int:
    return _checks.check_int(value, name)


def _static_bias(W_i, b, static):
    """``(W_i, b)`` for the inputs ``x_t`` of steps that read ``[x_t, static]``: the first rows of
    ``W_i``, and ``b`` plus the static inputs' product, one bias per row ``(B, G*H)`` (``Cell.fused``)."""
    if static is None:
        return W_i, b
    C = static.shape[-1]
    if static.ndim != 2 or not 0 < C < W_i.shape[0]:
        raise ValueError(f"static: expected shape (B, C) with 0 < C < input size {W_i.shape[0]}, got {static.shape}")
    return W_i[:-C], affine(static, W_i[-C:], b)


def _make_step(project, step_projected):
    def step(params, state, x):
        return step_projected(params, state, project(params, x))

    return step


def _recurrent_cell(
    name, hidden_size, n_gates, init_fn, step_projected, *, state_fn=None, output_size=None, fused=None
):
    """Assemble a Cell whose input projection is ``x @ W_i + b_i`` over ``n_gates`` fused blocks."""

    def project(params, x):
        return affine(x, params["W_i"], params["b_i"])  # (..., G*H): one step or all at once

    def initial_state(dtype=jnp.float32):
        return state_fn(dtype) if state_fn else jnp.zeros((hidden_size,), dtype)

    return Cell(
        init=init_fn,
        initial_state=initial_state,
        step=_make_step(project, step_projected),
        output_size=output_size or hidden_size,
        name=name,
        fused=fused,
    )


def _gated_init(hidden_size, n_gates, kernel_init, recurrent_init, bias_init, bias_fix=None):
    k_init = inits.get(kernel_init, hidden_size, argname="kernel_init")
    r_init = inits.get(recurrent_init, hidden_size, argname="recurrent_init")
    b_init = inits.get(bias_init, hidden_size, argname="bias_init")
    H = hidden_size

    def init(key, input_size, dtype=jnp.float32):
        _check_size("input_size", input_size)
        k1, k2, k3, k4 = jax.random.split(key, 4)
        params = {
            "W_i": inits.blocks(k_init, k1, (input_size, H), n_gates, dtype),  # (I, G*H)
            "W_h": inits.blocks(r_init, k2, (H, H), n_gates, dtype),  # (H, G*H)
            "b_i": b_init(k3, (n_gates * H,), dtype),  # (G*H,)
            "b_h": b_init(k4, (n_gates * H,), dtype),  # (G*H,)
        }
        return bias_fix(params) if bias_fix else params

    return init


def elman(
    hidden_size: int,
    activation: Activation = "tanh",
    *,
    kernel_init="glorot_uniform",
    recurrent_init="orthogonal",
    bias_init="zeros",
) -> Cell:
    """Elman (simple) recurrent cell.

    .. math::  h_t = g(x_t W_i + b_i + h_{t-1} W_h)

    i.e. the seeds' :math:`s_t = g(U x_t + W s_{t-1} + b)` with ``U = W_i.T``, ``W = W_h.T``, ``b = b_i``.
    ``g`` is ``"tanh"`` (default), ``"relu"``, ``"sigmoid"`` or any callable. The output is
    :math:`y_t = h_t`; the state is ``h`` (H,). ``g`` is applied elementwise in the seeds, but any
    function of the pre-activation works, in the step and in the fused recurrence alike.

    PyTorch's ``nn.RNN`` has two biases ``b_ih + b_hh``; their sum is ``b_i`` here.
    IRNN (Le et al. 2015): ``elman(H, "relu", recurrent_init=initializers.identity(1.0))``.

    Params: ``W_i`` (I, H), ``W_h`` (H, H), ``b_i`` (H,).

    Args:
      hidden_size: ``H``.
      activation: ``g``, a name (``"tanh"``, ``"relu"``, ``"sigmoid"``, ``"gelu"``, ``"identity"``) or a
        callable on the ``(..., H)`` pre-activation.
      kernel_init: the initialiser of ``W_i``, by name or as a function (:mod:`rnn_jax.initializers`).
      recurrent_init: the initialiser of ``W_h``.
      bias_init: the initialiser of ``b_i``.

    Returns:
      A :class:`Cell` carrying its fused recurrence.

    Examples:
      >>> cell = rnn_jax.elman(4, "relu")
      >>> p = cell.init(jax.random.key(0), 3)
      >>> sorted(p), p["W_h"].shape
      (['W_h', 'W_i', 'b_i'], (4, 4))
    """
    H = _check_size("hidden_size", hidden_size)
    g = resolve_activation(activation)
    k_init = inits.get(kernel_init, H, argname="kernel_init")
    r_init = inits.get(recurrent_init, H, argname="recurrent_init")
    b_init = inits.get(bias_init, H, argname="bias_init")

    def init(key, input_size, dtype=jnp.float32):
        _check_size("input_size", input_size)
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "W_i": k_init(k1, (input_size, H), dtype),  # (I, H)
            "W_h": r_init(k2, (H, H), dtype),  # (H, H)
            "b_i": b_init(k3, (H,), dtype),
        }  # (H,)

    def step_projected(params, h, gx):
        h = g(gx + h @ params["W_h"])  # (H,)
        return h, h

    kernel = _fused.elman_kernel(g, OUTPUT_DERIVATIVES.get(g))  # once per cell: part of the program's key

    def fused(params, xs, h0, mask, *, unroll=1, hoist="auto", rule="vjp", static=None, pack=_fused.PACK_MIN_BATCH):
        W_i, b = _static_bias(params["W_i"], params["b_i"], static)
        return _fused.run(
            kernel,
            _fused.ElmanWeights(W_i, params["W_h"]),
            b,
            xs,
            h0,
            mask,
            unroll=unroll,
            hoist=hoist,
            rule=rule,
            pack=pack,
        )

    return _recurrent_cell("elman", H, 1, init, step_projected, fused=fused)


def jordan(
    hidden_size: int,
    output_size: int,
    activation: Activation = "tanh",
    output_activation: Activation = "tanh",
    *,
    kernel_init="glorot_uniform",
    recurrent_init="glorot_uniform",
    bias_init="zeros",
) -> Cell:
    """Jordan recurrent cell (Jordan 1986): the recurrence feeds back the previous *output*.

    .. math::
        h_t &= g(x_t W_i + b_i + y_{t-1} W_y) \\\\
        y_t &= g_o(h_t W_o + b_o)

    The state is ``JordanState(y)`` with ``y`` (O,); the output is ``y_t`` (O,). ``g_o`` defaults to
    tanh so that the fed-back signal stays bounded.

    Params: ``W_i`` (I, H), ``b_i`` (H,), ``W_y`` (O, H), ``W_o`` (H, O), ``b_o`` (O,).

    Args:
      hidden_size: ``H``, the width of ``h_t``.
      output_size: ``O``, the width of ``y_t`` (fed back).
      activation: ``g``, a name or a callable.
      output_activation: ``g_o``, a name or a callable.
      kernel_init: the initialiser of ``W_i`` and ``W_o``.
      recurrent_init: the initialiser of ``W_y``.
      bias_init: the initialiser of ``b_i`` and ``b_o``.

    Returns:
      A :class:`Cell` with state :class:`JordanState`.

    Examples:
      >>> layer = rnn_jax.rnn(rnn_jax.jordan(8, 2))
      >>> ys, state = layer.apply(layer.init(jax.random.key(0), 3), jnp.ones((4, 5, 3)))
      >>> ys.shape, state.y.shape
      ((4, 5, 2), (4, 2))
    """
    H = _check_size("hidden_size", hidden_size)
    O = _check_size("output_size", output_size)
    g = resolve_activation(activation)
    g_o = resolve_activation(output_activation, "output_activation")
    k_init = inits.get(kernel_init, H, argname="kernel_init")
    r_init = inits.get(recurrent_init, H, argname="recurrent_init")
    b_init = inits.get(bias_init, H, argname="bias_init")

    def init(key, input_size, dtype=jnp.float32):
        _check_size("input_size", input_size)
        k1, k2, k3, k4, k5 = jax.random.split(key, 5)
        return {
            "W_i": k_init(k1, (input_size, H), dtype),  # (I, H)
            "b_i": b_init(k2, (H,), dtype),  # (H,)
            "W_y": r_init(k3, (O, H), dtype),  # (O, H)
            "W_o": k_init(k4, (H, O), dtype),  # (H, O)
            "b_o": b_init(k5, (O,), dtype),
        }  # (O,)

    def step_projected(params, state, gx):
        h = g(gx + state.y @ params["W_y"])  # (H,)
        y = g_o(h @ params["W_o"] + params["b_o"])  # (O,)
        return JordanState(y), y

    return _recurrent_cell(
        "jordan", H, 1, init, step_projected, output_size=O, state_fn=lambda dtype: JordanState(jnp.zeros((O,), dtype))
    )


def lstm(
    hidden_size: int,
    forget_bias: float = 1.0,
    *,
    kernel_init="glorot_uniform",
    recurrent_init="orthogonal",
    bias_init="zeros",
    chrono: Optional[int] = None,
) -> Cell:
    """Long short-term memory cell, PyTorch / cuDNN convention.

    .. math::
        i &= \\sigma(x W_{ii} + b_{ii} + h W_{hi} + b_{hi}) \\\\
        f &= \\sigma(x W_{if} + b_{if} + h W_{hf} + b_{hf}) \\\\
        g &= \\tanh(x W_{ig} + b_{ig} + h W_{hg} + b_{hg}) \\\\
        o &= \\sigma(x W_{io} + b_{io} + h W_{ho} + b_{ho}) \\\\
        c' &= f \\odot c + i \\odot g, \\qquad h' = o \\odot \\tanh(c')

    Gate order ``i, f, g, o`` along the last axis of ``W_i`` (I, 4H), ``W_h`` (H, 4H), ``b_i`` (4H,),
    ``b_h`` (4H,): the two biases of PyTorch's ``nn.LSTM`` and cuDNN. The state is ``LSTMState(h, c)``;
    the output is ``h'``. ``forget_bias`` is written into ``b_i``'s forget block at initialisation
    (Gers et al. 2000; Jozefowicz et al. 2015); the step adds nothing hidden.

    ``chrono=T_max`` (Tallec & Ollivier 2018) replaces the constant forget bias: each unit's forget
    bias is ``log(u)``, ``u ~ U[1, T_max - 1]``, and its input-gate bias is the negative of it, so
    that at initialisation the units keep their memory for characteristic times spread over
    ``[1, T_max]`` (the forget gate's time constant is about ``1 / (1 - sigmoid(b_f)) ~ u``).

    Args:
      hidden_size: ``H``.
      forget_bias: the constant written into ``b_i``'s forget block (ignored with ``chrono``).
      kernel_init: the initialiser of ``W_i``, block by block (:mod:`rnn_jax.initializers`).
      recurrent_init: the initialiser of ``W_h``, block by block.
      bias_init: the initialiser of ``b_i`` and ``b_h`` before the forget bias is written.
      chrono: ``T_max`` for chrono initialisation, or None.

    Returns:
      A :class:`Cell` carrying its fused recurrence; its state is ``LSTMState(h, c)``.

    Examples:
      >>> cell = rnn_jax.lstm(4, chrono=100)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> p["W_i"].shape, cell.initial_state().c.shape
      ((3, 16), (4,))
    """
    H = _check_size("hidden_size", hidden_size)
    forget_bias = _checks.check_real(forget_bias, "forget_bias")
    if chrono is not None:
        chrono = _checks.check_int(chrono, "chrono", 3, "None or an int T_max >= 3 (the longest dependency)")

    def bias_fix(params):
        params["b_i"] = params["b_i"].at[H : 2 * H].set(forget_bias)
        return params

    base = _gated_init(H, 4, kernel_init, recurrent_init, bias_init, bias_fix if forget_bias else None)

    def init(key, input_size, dtype=jnp.float32):
        params = base(key, input_size, dtype)
        if chrono is not None:
            u = jax.random.uniform(jax.random.fold_in(key, 7), (H,), dtype, 1.0, chrono - 1.0)
            params["b_i"] = params["b_i"].at[H : 2 * H].set(jnp.log(u)).at[:H].set(-jnp.log(u))
        return params

    def step_projected(params, state, gx):
        z = gx + state.h @ params["W_h"] + params["b_h"]  # (4H,)
        i, f, g, o = jnp.split(z, 4)
        c = jax.nn.sigmoid(f) * state.c + jax.nn.sigmoid(i) * jnp.tanh(g)  # (H,)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)  # (H,)
        return LSTMState(h, c), h

    def fused(params, xs, state, mask, *, unroll=1, hoist="auto", rule="vjp", static=None, pack=_fused.PACK_MIN_BATCH):
        W_i, b = _static_bias(params["W_i"], params["b_i"] + params["b_h"], static)
        ys, (h, c) = _fused.run(
            _fused.LSTM,
            _fused.LSTMWeights(W_i, params["W_h"]),
            b,
            xs,
            tuple(state),
            mask,
            unroll=unroll,
            hoist=hoist,
            rule=rule,
            pack=pack,
        )
        return ys, LSTMState(h, c)

    return _recurrent_cell(
        "lstm",
        H,
        4,
        init,
        step_projected,
        state_fn=lambda dtype: LSTMState(jnp.zeros((H,), dtype), jnp.zeros((H,), dtype)),
        fused=fused,
    )


def gru(hidden_size: int, *, kernel_init="glorot_uniform", recurrent_init="orthogonal", bias_init="zeros") -> Cell:
    """Gated recurrent unit, PyTorch / cuDNN convention (reset applied *after* the recurrent product).

    .. math::
        r &= \\sigma(x W_{ir} + b_{ir} + h W_{hr} + b_{hr}) \\\\
        z &= \\sigma(x W_{iz} + b_{iz} + h W_{hz} + b_{hz}) \\\\
        n &= \\tanh(x W_{in} + b_{in} + r \\odot (h W_{hn} + b_{hn})) \\\\
        h' &= (1 - z) \\odot n + z \\odot h

    Gate order ``r, z, n`` along the last axis of ``W_i`` (I, 3H), ``W_h`` (H, 3H), ``b_i``, ``b_h`` (3H,).
    (Cho et al. 2014 apply the reset before the product; PyTorch, cuDNN and Flax apply it after.)
    The state is ``h`` (H,); the output is ``h'``.

    Args:
      hidden_size: ``H``.
      kernel_init: the initialiser of ``W_i``, by name or as a function (:mod:`rnn_jax.initializers`);
        each gate block is initialised on its own.
      recurrent_init: the initialiser of ``W_h``, block by block.
      bias_init: the initialiser of ``b_i`` and ``b_h``.

    Returns:
      A :class:`Cell` carrying its fused recurrence (:mod:`rnn_jax.fused`).

    Examples:
      >>> cell = rnn_jax.gru(4)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> p["W_i"].shape, p["W_h"].shape
      ((3, 12), (4, 12))
      >>> h, y = cell.step(p, cell.initial_state(), jnp.ones(3))   # one step of one example
      >>> h.shape
      (4,)
    """
    H = _check_size("hidden_size", hidden_size)
    init = _gated_init(H, 3, kernel_init, recurrent_init, bias_init)

    def step_projected(params, h, gx):
        gh = h @ params["W_h"] + params["b_h"]  # (3H,)
        xr, xz, xn = jnp.split(gx, 3)
        hr, hz, hn = jnp.split(gh, 3)
        r = jax.nn.sigmoid(xr + hr)
        z = jax.nn.sigmoid(xz + hz)
        n = jnp.tanh(xn + r * hn)
        h = (1.0 - z) * n + z * h  # (H,)
        return h, h

    def fused(params, xs, h0, mask, *, unroll=1, hoist="auto", rule="vjp", static=None, pack=_fused.PACK_MIN_BATCH):
        W_i, b_i = _static_bias(params["W_i"], params["b_i"], static)
        return _fused.run(
            _fused.GRU,
            _fused.GRUWeights(W_i, params["W_h"], params["b_h"]),
            b_i,
            xs,
            h0,
            mask,
            unroll=unroll,
            hoist=hoist,
            rule=rule,
            pack=pack,
        )

    return _recurrent_cell("gru", H, 3, init, step_projected, fused=fused)


def _check_eps(eps) -> float:
    """A layer-normalised cell's ``eps``: a finite number > 0 (at 0, the zero initial state, whose variance
    is 0, is divided by 0: every output NaN)."""
    eps = _checks.check_real(eps, "eps", minimum=0)
    if eps == 0:
        raise ValueError(
            "eps: expected a finite number > 0 (the zero initial state has variance 0, and "
            "eps = 0 divides it by 0: every output NaN), got 0.0; the usual value is 1e-5"
        )
    return eps


def layer_norm(z: jax.Array, gain: jax.Array, bias=None, eps: float = 1e-5) -> jax.Array:
    """Layer normalisation over the last axis (Ba et al. 2016): ``(z - mean) / sqrt(var + eps) * gain
    (+ bias)``.

    Args:
      z: ``(..., D)``.
      gain: ``(D,)``.
      bias: ``(D,)`` or None.
      eps: added to the variance inside the square root.

    Returns:
      ``(..., D)``, each row with mean ``bias`` (0) and standard deviation about ``gain`` (1).

    Examples:
      >>> y = rnn_jax.cells.layer_norm(jnp.array([[1.0, 2.0, 3.0, 6.0]]), jnp.ones(4))
      >>> round(float(y.mean()), 5), round(float(y.std()), 3)
      (0.0, 1.0)
    """
    mu = z.mean(-1, keepdims=True)
    zc = z - mu
    out = zc * lax.rsqrt((zc * zc).mean(-1, keepdims=True) + eps) * gain
    return out if bias is None else out + bias


def _layer_norm_init(base, gains):
    """``base``'s params plus layer-norm gains (ones) and shifts (zeros): ``gains`` maps a name to
    ``(size_in_units_of_H, "gain" | "shift")``."""

    def init(key, input_size, dtype=jnp.float32):
        params = base(key, input_size, dtype)
        for name, (n, kind) in gains.items():
            params[name] = (jnp.ones if kind == "gain" else jnp.zeros)((n,), dtype)
        return params

    return init


def layer_norm_lstm(
    hidden_size: int,
    forget_bias: float = 1.0,
    *,
    kernel_init="glorot_uniform",
    recurrent_init="orthogonal",
    eps: float = 1e-5,
) -> Cell:
    r"""Layer-normalised LSTM (Ba, Kiros & Hinton 2016, "Layer normalization", section 3.1).

    .. math::
        (i, f, g, o) &= \mathrm{LN}(x W_i; \gamma_i) + \mathrm{LN}(h W_h; \gamma_h) + b \\
        c' &= \sigma(f) \odot c + \sigma(i) \odot \tanh(g), \qquad
        h' = \sigma(o) \odot \tanh(\mathrm{LN}(c'; \gamma_c, \beta_c))

    ``LN`` normalises over all 4H pre-activations of each product (Ba et al.'s equations), ``eps`` inside
    the square root. Params: ``W_i`` (I, 4H), ``W_h`` (H, 4H), ``b`` (4H,) (``forget_bias`` in the f
    block), gains ``g_i``, ``g_h`` (4H,) (ones), ``g_c`` (H,) (ones) and shift ``b_c`` (H,) (zeros).
    State ``LSTMState(h, c)``, output ``h'``. The normalised products make the step invariant to the
    scale of ``W_i`` and of ``W_h`` (tested). Runs on the generic scan (no kernel).

    Args:
      hidden_size: ``H``.
      forget_bias: written into ``b``'s forget block.
      kernel_init: the initialiser of ``W_i``.
      recurrent_init: the initialiser of ``W_h``.
      eps: added to the variance inside the square root.

    Returns:
      A :class:`Cell` with state :class:`LSTMState` (generic scan).

    Examples:
      >>> layer = rnn_jax.rnn(rnn_jax.layer_norm_lstm(8), zoneout=0.1)
      >>> ys, state = layer.apply(layer.init(jax.random.key(0), 3), jnp.ones((2, 5, 3)))
      >>> ys.shape, state.c.shape
      ((2, 5, 8), (2, 8))
    """
    H = _check_size("hidden_size", hidden_size)
    forget_bias = _checks.check_real(forget_bias, "forget_bias")
    eps = _check_eps(eps)
    base = _gated_init(H, 4, kernel_init, recurrent_init, "zeros")

    def init_base(key, input_size, dtype=jnp.float32):
        params = base(key, input_size, dtype)
        del params["b_h"]
        params["b"] = params.pop("b_i").at[H : 2 * H].set(forget_bias)
        return params

    init = _layer_norm_init(
        init_base, {"g_i": (4 * H, "gain"), "g_h": (4 * H, "gain"), "g_c": (H, "gain"), "b_c": (H, "shift")}
    )

    def step(params, state, x):
        z = (
            layer_norm(x @ params["W_i"], params["g_i"], eps=eps)
            + layer_norm(state.h @ params["W_h"], params["g_h"], eps=eps)
            + params["b"]
        )  # (4H,)
        i, f, g, o = jnp.split(z, 4)
        c = jax.nn.sigmoid(f) * state.c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(layer_norm(c, params["g_c"], params["b_c"], eps=eps))
        return LSTMState(h, c), h

    return Cell(
        init=init,
        initial_state=lambda dtype=jnp.float32: LSTMState(jnp.zeros((H,), dtype), jnp.zeros((H,), dtype)),
        step=step,
        output_size=H,
        name="layer_norm_lstm",
    )


def layer_norm_gru(
    hidden_size: int, *, kernel_init="glorot_uniform", recurrent_init="orthogonal", eps: float = 1e-5
) -> Cell:
    r"""Layer-normalised GRU (Ba et al. 2016), the :func:`gru`'s convention (reset after the product).

    .. math::
        g_x &= \mathrm{LN}(x W_i; \gamma_i) + b_i, \qquad g_h = \mathrm{LN}(h W_h; \gamma_h) + b_h \\
        r &= \sigma(g_{x,r} + g_{h,r}), \quad z = \sigma(g_{x,z} + g_{h,z}), \quad
        n = \tanh(g_{x,n} + r \odot g_{h,n}), \quad h' = (1 - z) \odot n + z \odot h

    ``LN`` normalises over all 3H pre-activations of each product. Params: ``W_i`` (I, 3H), ``W_h`` (H, 3H),
    ``b_i``, ``b_h`` (3H,) (zeros), gains ``g_i``, ``g_h`` (3H,) (ones). State and output ``h`` (H,).
    Invariant to the scale of ``W_i`` and of ``W_h`` (tested). Runs on the generic scan (no kernel).

    Args:
      hidden_size: ``H``.
      kernel_init: the initialiser of ``W_i``.
      recurrent_init: the initialiser of ``W_h``.
      eps: added to the variance inside the square root.

    Returns:
      A :class:`Cell` (generic scan).

    Examples:
      >>> cell = rnn_jax.layer_norm_gru(8)
      >>> sorted(cell.init(jax.random.key(0), 3))
      ['W_h', 'W_i', 'b_h', 'b_i', 'g_h', 'g_i']
    """
    H = _check_size("hidden_size", hidden_size)
    eps = _check_eps(eps)
    init = _layer_norm_init(
        _gated_init(H, 3, kernel_init, recurrent_init, "zeros"), {"g_i": (3 * H, "gain"), "g_h": (3 * H, "gain")}
    )

    def step(params, h, x):
        gx = layer_norm(x @ params["W_i"], params["g_i"], eps=eps) + params["b_i"]
        gh = layer_norm(h @ params["W_h"], params["g_h"], eps=eps) + params["b_h"]
        xr, xz, xn = jnp.split(gx, 3)
        hr, hz, hn = jnp.split(gh, 3)
        r, z = jax.nn.sigmoid(xr + hr), jax.nn.sigmoid(xz + hz)
        h = (1.0 - z) * jnp.tanh(xn + r * hn) + z * h
        return h, h

    return Cell(
        init=init,
        initial_state=lambda dtype=jnp.float32: jnp.zeros((H,), dtype),
        step=step,
        output_size=H,
        name="layer_norm_gru",
    )


def _minimal_cell(name: str, hidden_size: int, n_gates: int, kernel_init, coefficients) -> Cell:
    """A cell whose state update is ``h = a * h_prev + b`` with ``(a, b) = coefficients(gx)`` from the
    input projection ``gx = x @ W_i + b_i`` (``n_gates`` blocks) alone: a diagonal linear recurrence."""
    H = _check_size("hidden_size", hidden_size)
    k_init = inits.get(kernel_init, H, argname="kernel_init")

    def init(key, input_size, dtype=jnp.float32):
        _check_size("input_size", input_size)
        return {
            "W_i": inits.blocks(k_init, key, (input_size, H), n_gates, dtype),  # (I, G*H)
            "b_i": jnp.zeros((n_gates * H,), dtype),
        }  # (G*H,)

    def linear(params, x):
        return coefficients(jnp.split(affine(x, params["W_i"], params["b_i"]), n_gates, axis=-1))

    def step(params, h, x):
        a, b = linear(params, x)
        h = a * h + b
        return h, h

    return Cell(
        init=init,
        initial_state=lambda dtype=jnp.float32: jnp.zeros((H,), dtype),
        step=step,
        output_size=H,
        name=name,
        linear=linear,
    )


def min_gru(hidden_size: int, *, kernel_init="glorot_uniform") -> Cell:
    r"""minGRU (Feng et al. 2024, "Were RNNs all we needed?"): a GRU whose gate and candidate read the
    input alone, so the recurrence is linear in ``h`` and runs in parallel over time.

    .. math::
        z_t = \sigma(x_t W_z + b_z), \qquad \tilde h_t = x_t W_h + b_h, \qquad
        h_t = (1 - z_t) \odot h_{t-1} + z_t \odot \tilde h_t

    Params: ``W_i`` (I, 2H) with blocks ``[z, h~]``, ``b_i`` (2H,) (zeros). State and output ``h`` (H,).
    ``Cell.linear`` gives ``a = 1 - z``, ``b = z * h~``: ``rnn(min_gru(H), parallel="linear")`` solves it
    with ``lax.associative_scan``; the default sequential scan computes the same values (tested to 1e-10).

    Args:
      hidden_size: ``H``.
      kernel_init: the initialiser of ``W_i``, block by block.

    Returns:
      A :class:`Cell` with ``linear`` (a parallel form).

    Examples:
      >>> layer = rnn_jax.rnn(rnn_jax.min_gru(8), parallel="linear")   # solved for all steps at once
      >>> ys, h = layer.apply(layer.init(jax.random.key(0), 3), jnp.ones((2, 50, 3)))
      >>> ys.shape
      (2, 50, 8)
    """
    return _minimal_cell(
        "min_gru", hidden_size, 2, kernel_init, lambda g: (1 - jax.nn.sigmoid(g[0]), jax.nn.sigmoid(g[0]) * g[1])
    )


def min_lstm(hidden_size: int, *, kernel_init="glorot_uniform") -> Cell:
    r"""minLSTM (Feng et al. 2024): an LSTM whose gates read the input alone, normalised so that they sum
    to one (the state stays on the candidates' scale), with no output gate.

    .. math::
        f_t = \sigma(x_t W_f + b_f), \quad i_t = \sigma(x_t W_i + b_i), \quad \tilde h_t = x_t W_h + b_h,
        \qquad h_t = \frac{f_t}{f_t + i_t} \odot h_{t-1} + \frac{i_t}{f_t + i_t} \odot \tilde h_t

    Params: ``W_i`` (I, 3H) with blocks ``[f, i, h~]``, ``b_i`` (3H,) (zeros). State and output ``h`` (H,).
    ``Cell.linear`` gives ``a = f' = f / (f + i)``, ``b = i' * h~``; ``rnn(min_lstm(H), parallel="linear")``
    solves it with ``lax.associative_scan``.

    Args:
      hidden_size: ``H``.
      kernel_init: the initialiser of ``W_i``, block by block.

    Returns:
      A :class:`Cell` with ``linear`` (a parallel form).

    Examples:
      >>> cell = rnn_jax.min_lstm(8)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> a, b = cell.linear(p, jnp.ones(3))
      >>> bool(jnp.all((a > 0) & (a < 1))), b.shape
      (True, (8,))
    """

    def coefficients(g):
        f, i = jax.nn.sigmoid(g[0]), jax.nn.sigmoid(g[1])
        return f / (f + i), i / (f + i) * g[2]

    return _minimal_cell("min_lstm", hidden_size, 3, kernel_init, coefficients)


def indrnn(
    hidden_size: int,
    activation: Activation = "relu",
    *,
    kernel_init="glorot_uniform",
    recurrent_init=None,
    recurrent_max: Optional[float] = None,
    bias_init="zeros",
) -> Cell:
    r"""Independently recurrent cell, IndRNN (Li et al. 2018): each unit reads only its own past, through
    one recurrent weight.

    .. math::  h_t = g(x_t W_i + b + u \odot h_{t-1})

    ``u`` (H,) is a vector, so ``dh_t / dh_{t-1} = diag(g'(\cdot) \odot u)``: the gradient through ``k``
    steps of a ReLU unit is ``u^k`` while it is active, and bounding ``|u|`` bounds it. ``recurrent_max``
    (the paper's ``2^{1/T}`` keeps ``|u|^T <= 2`` over ``T`` steps): the step reads ``clip(u, -m, m)``, so
    the bound holds for any value training gives ``u`` (the gradient of a clipped entry is zero).
    ``recurrent_init``: an initialiser for ``u``, or None for uniform in ``[0, recurrent_max]`` (``[0, 1]``
    without a bound), the paper's choice. ``g`` is ReLU by default (any activation name or callable).

    The state Jacobian is diagonal, so :func:`rnn_jax.parallel.deer`'s ``"diagonal"`` method is this
    cell's exact Newton step, computed in O(T H).

    Params: ``W_i`` (I, H), ``u`` (H,), ``b`` (H,). State and output ``h`` (H,).

    Args:
      hidden_size: ``H``.
      activation: ``g``, a name or a callable.
      kernel_init: the initialiser of ``W_i``.
      recurrent_init: the initialiser of ``u`` (H,), or None (uniform, see above).
      recurrent_max: the bound ``m`` on ``|u|``, or None (no bound).
      bias_init: the initialiser of ``b``.

    Returns:
      A :class:`Cell` (``diagonal=True``).

    Examples:
      >>> T = 5000
      >>> cell = rnn_jax.indrnn(8, recurrent_max=2 ** (1 / T))
      >>> p = cell.init(jax.random.key(0), 2)
      >>> p["u"].shape, bool(jnp.all(jnp.abs(p["u"]) <= 2 ** (1 / T)))
      ((8,), True)
    """
    H = _check_size("hidden_size", hidden_size)
    g = resolve_activation(activation)
    if recurrent_max is not None:
        recurrent_max = _checks.check_real(recurrent_max, "recurrent_max", minimum=0)
        if recurrent_max == 0 or not recurrent_max < float("inf"):
            raise ValueError(f"recurrent_max: expected a finite bound > 0 or None, got {recurrent_max}")
    k_init = inits.get(kernel_init, H, argname="kernel_init")
    u_init = (
        inits.uniform_range(0.0, 1.0 if recurrent_max is None else recurrent_max)
        if recurrent_init is None
        else inits.get(recurrent_init, H, argname="recurrent_init")
    )
    b_init = inits.get(bias_init, H, argname="bias_init")

    def init(key, input_size, dtype=jnp.float32):
        _check_size("input_size", input_size)
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "W_i": k_init(k1, (input_size, H), dtype),  # (I, H)
            "u": u_init(k2, (H,), dtype),  # (H,)
            "b": b_init(k3, (H,), dtype),
        }  # (H,)

    def bounded(u):
        return u if recurrent_max is None else jnp.clip(u, -recurrent_max, recurrent_max)

    def step(params, h, x):
        h = g(affine(x, params["W_i"], params["b"]) + bounded(params["u"]) * h)
        return h, h

    kernel = _fused.elman_kernel(g, OUTPUT_DERIVATIVES.get(g), diagonal=True)  # once per cell

    def fused(params, xs, h0, mask, *, unroll=1, hoist="auto", rule="vjp", static=None, pack=_fused.PACK_MIN_BATCH):
        W_i, b = _static_bias(params["W_i"], params["b"], static)  # the bound's derivative: autodiff of the clip
        return _fused.run(
            kernel,
            _fused.ElmanWeights(W_i, bounded(params["u"])),
            b,
            xs,
            h0,
            mask,
            unroll=unroll,
            hoist=hoist,
            rule=rule,
            pack=pack,
        )

    return Cell(
        init=init,
        initial_state=lambda dtype=jnp.float32: jnp.zeros((H,), dtype),
        step=step,
        output_size=H,
        name="indrnn",
        diagonal=True,
        fused=fused,
    )


def _complex_dtype(dtype):
    return jnp.result_type(jnp.dtype(dtype), jnp.complex64)  # float32 -> complex64, float64 -> complex128


def lru(
    hidden_size: int,
    output_size: Optional[int] = None,
    *,
    r_min: float = 0.0,
    r_max: float = 1.0,
    max_phase: float = 2 * 3.141592653589793,
    activation: Optional[Activation] = None,
) -> Cell:
    r"""Linear Recurrent Unit (Orvieto et al. 2023, "Resurrecting recurrent neural networks for long
    sequences"): a complex diagonal linear recurrence, read out linearly.

    .. math::
        \lambda = \exp(-e^{\nu} + i\, e^{\theta}), \qquad \gamma = e^{\gamma_{\log}}, \qquad
        h_t = \lambda \odot h_{t-1} + \gamma \odot (B x_t), \qquad
        y_t = \operatorname{Re}(C h_t) + x_t D

    The state ``h`` (N,) is complex (``complex64`` for float32 params). The exponential
    parametrisation keeps ``|\lambda| = e^{-e^\nu} < 1`` (stable) for every ``\nu``. Ring
    initialisation: ``|\lambda|`` uniform on the ring ``r_min <= |\lambda| <= r_max`` (by area),
    phase uniform in ``[0, max_phase]``; ``\gamma = \sqrt{1 - |\lambda|^2}`` (initialised so, then
    trained) normalises the state's scale for white-noise inputs. ``B`` and ``C`` are complex
    (``B ~ N(0, 1/(2I))``, ``C ~ N(0, 1/N)`` per part), ``D`` (I, O) a real feed-through (the paper's
    ``D`` is a vector because its input and output widths agree; a matrix allows any widths).
    ``activation`` (None: the identity) is applied to ``y_t``: the recurrence is linear, so a stack of
    LRU layers needs a nonlinearity between them to compute more than a linear filter (the paper's
    blocks put GELU and an MLP there): ``stack(rnn(lru(N, activation="gelu")), rnn(lru(N)))``.

    ``Cell.linear`` gives ``a = \lambda``, ``b = \gamma \odot B x``: ``rnn(lru(N), parallel="linear")``
    solves the recurrence with ``lax.associative_scan`` (equal to the scan to 1e-10 in float64).

    Params: ``nu_log``, ``theta_log``, ``gamma_log`` (N,); ``B_re``, ``B_im`` (I, N); ``C_re``, ``C_im``
    (N, O); ``D`` (I, O). State ``h`` (N,) complex; output ``y`` (O,), ``O = output_size`` (default N).

    Args:
      hidden_size: ``N``, the complex state's width.
      output_size: ``O`` (None: ``N``).
      r_min: the ring's inner radius, ``0 <= r_min < r_max``.
      r_max: the ring's outer radius, ``<= 1``.
      max_phase: phases are drawn in ``[0, max_phase]``.
      activation: applied to ``y_t``, a name, a callable or None.

    Returns:
      A :class:`Cell` with ``linear`` (a parallel form).

    Examples:
      >>> layer = rnn_jax.rnn(rnn_jax.lru(16, 4, r_min=0.9, r_max=0.999), parallel="linear")
      >>> ys, h = layer.apply(layer.init(jax.random.key(0), 3), jnp.ones((2, 100, 3)))
      >>> ys.shape, h.shape, h.dtype
      ((2, 100, 4), (2, 16), dtype('complex64'))
    """
    N = _check_size("hidden_size", hidden_size)
    O = N if output_size is None else _check_size("output_size", output_size)
    r_min = _checks.check_real(r_min, "r_min", minimum=0)
    r_max = _checks.check_real(r_max, "r_max", minimum=0)
    if not r_min <= r_max <= 1:
        raise ValueError(f"r_min, r_max: expected 0 <= r_min <= r_max <= 1, got r_min={r_min}, r_max={r_max}")
    max_phase = _checks.check_real(max_phase, "max_phase", minimum=0)
    if max_phase == 0:
        raise ValueError("max_phase: expected a phase range > 0, got 0")
    g = (lambda z: z) if activation is None else resolve_activation(activation)

    def init(key, input_size, dtype=jnp.float32):
        I = _check_size("input_size", input_size)
        k = jax.random.split(key, 7)
        u1 = jax.random.uniform(k[0], (N,), dtype)
        # |lambda| uniform by area on the ring: |lambda|^2 uniform in [r_min^2, r_max^2]; nu = log(-log|lambda|)
        # (clipped away from |lambda| = 1, where nu is -inf, and from 0, where it is +inf)
        mod2 = jnp.clip(u1 * (r_max**2 - r_min**2) + r_min**2, 1e-12, 1 - 1e-6)
        nu_log = jnp.log(-0.5 * jnp.log(mod2))
        theta_log = jnp.log(max_phase * jax.random.uniform(k[1], (N,), dtype, 1e-6, 1.0))
        gamma_log = 0.5 * jnp.log1p(-mod2)  # log sqrt(1 - |lambda|^2)
        return {
            "nu_log": nu_log,
            "theta_log": theta_log,
            "gamma_log": gamma_log,
            "B_re": jax.random.normal(k[2], (I, N), dtype) / jnp.sqrt(2.0 * I).astype(dtype),
            "B_im": jax.random.normal(k[3], (I, N), dtype) / jnp.sqrt(2.0 * I).astype(dtype),
            "C_re": jax.random.normal(k[4], (N, O), dtype) / jnp.sqrt(1.0 * N).astype(dtype),
            "C_im": jax.random.normal(k[5], (N, O), dtype) / jnp.sqrt(1.0 * N).astype(dtype),
            "D": jax.random.normal(k[6], (I, O), dtype) / jnp.sqrt(1.0 * I).astype(dtype),
        }

    def linear(params, x):
        lam = jnp.exp(-jnp.exp(params["nu_log"]) + 1j * jnp.exp(params["theta_log"]))  # (N,)
        Bx = jax.lax.complex(x @ params["B_re"], x @ params["B_im"])  # (..., N)
        return jnp.broadcast_to(lam, Bx.shape), jnp.exp(params["gamma_log"]) * Bx

    def step(params, h, x):
        a, b = linear(params, x)
        h = a * h + b
        return h, g(h.real @ params["C_re"] - h.imag @ params["C_im"] + x @ params["D"])

    return Cell(
        init=init,
        initial_state=lambda dtype=jnp.float32: jnp.zeros((N,), _complex_dtype(dtype)),
        step=step,
        output_size=O,
        name="lru",
        linear=linear,
    )


def modrelu(z: jax.Array, b: jax.Array) -> jax.Array:
    """modReLU (Arjovsky et al. 2016), real form: ``sign(z) * relu(|z| + b)``: keeps the sign, shrinks
    the magnitude by ``-b`` (a trained bias per unit), zero where ``|z| < -b``. ``b`` broadcasts over
    ``z``'s leading (batch) axes.

    Args:
      z: ``(..., H)``.
      b: ``(H,)``.

    Returns:
      ``(..., H)``.

    Examples:
      >>> rnn_jax.cells.modrelu(jnp.array([-2.0, 0.5, 3.0]), jnp.full(3, -1.0))
      Array([-1.,  0.,  2.], dtype=float32)
    """
    return jnp.sign(z) * jax.nn.relu(jnp.abs(z) + jnp.broadcast_to(b, z.shape))


def _henaff(key, H: int, dtype):
    """A skew-symmetric generator whose exponential is Henaff et al. (2016)'s initialisation: a block
    diagonal of 2x2 rotations by angles drawn uniformly in [-pi, pi] (a last 1x1 block of 1 when H is odd)."""
    theta = jax.random.uniform(key, (H // 2,), dtype, -jnp.pi, jnp.pi)
    i = jnp.arange(H // 2) * 2
    return jnp.zeros((H, H), dtype).at[i, i + 1].set(theta)


def orthogonal_rnn(
    hidden_size: int, *, recurrent_init: str = "henaff", kernel_init="he_normal", bias_bound: float = 0.01
) -> Cell:
    r"""Orthogonal recurrent cell kept orthogonal by construction (expRNN, Lezcano-Casado & Martinez-Rubio 2019).

    .. math::
        W = \exp(A - A^\top), \qquad h_t = \mathrm{modReLU}(x_t W_i + h_{t-1} W;\ b),
        \qquad \mathrm{modReLU}(z; b) = \operatorname{sign}(z)\,\mathrm{relu}(|z| + b)

    ``A`` (H, H) is the trained parameter; ``A - A^T`` is skew-symmetric, so ``W`` (its matrix
    exponential) is orthogonal for every value of ``A``, before and after any update: no projection,
    no drift. An orthogonal ``W`` preserves the norm of the state and of the error flowing back
    through it (all singular values 1); only modReLU's zeroed units shorten it, which is what lets
    this cell carry information over thousands of steps (the copy task, Arjovsky et al. 2016).

    ``recurrent_init``: ``"henaff"`` (``W`` a block diagonal of 2x2 rotations with angles uniform in
    [-pi, pi], Henaff et al. 2016) or ``"identity"`` (``A = 0``, ``W = I``). ``kernel_init`` for
    ``W_i`` (I, H); the modReLU bias ``b`` (H,) starts uniform in ``[-bias_bound, bias_bound]``.
    Params: ``W_i`` (I, H), ``A`` (H, H), ``b`` (H,). The state and output are ``h`` (H,).

    A batched call computes ``W`` once per sequence (``Cell.fused``: the exponential, then one scan
    with autodiff), and so do the generic unroller and the diagnostics (``Cell.prepare`` adds ``W`` to
    the params). ``step`` on raw params computes it at every call: in a loop of your own, call
    ``step`` on :func:`prepared` params.

    Args:
      hidden_size: ``H``.
      recurrent_init: ``"henaff"`` or ``"identity"``.
      kernel_init: the initialiser of ``W_i``.
      bias_bound: the modReLU bias's initial range.

    Returns:
      A :class:`Cell` with ``prepare`` (``W = expm(A - A^T)`` once per sequence).

    Examples:
      >>> cell = rnn_jax.orthogonal_rnn(6)
      >>> p = rnn_jax.cells.prepared(cell, cell.init(jax.random.key(0), 2))
      >>> W = p["W"]
      >>> bool(jnp.allclose(W @ W.T, jnp.eye(6), atol=1e-5))
      True
    """
    H = _check_size("hidden_size", hidden_size)
    if recurrent_init not in ("henaff", "identity"):
        raise ValueError(f"recurrent_init: expected 'henaff' or 'identity', got {recurrent_init!r}")
    bias_bound = _checks.check_real(bias_bound, "bias_bound", minimum=0)
    k_init = inits.get(kernel_init, H, argname="kernel_init")

    def init(key, input_size, dtype=jnp.float32):
        _check_size("input_size", input_size)
        k1, k2, k3 = jax.random.split(key, 3)
        A = _henaff(k2, H, dtype) if recurrent_init == "henaff" else jnp.zeros((H, H), dtype)
        return {
            "W_i": k_init(k1, (input_size, H), dtype),  # (I, H)
            "A": A,  # (H, H)
            "b": jax.random.uniform(k3, (H,), dtype, -bias_bound, bias_bound),
        }  # (H,)

    def recurrent(params):
        A = params["A"]
        wide = jnp.promote_types(A.dtype, jnp.float32)  # expm needs float32 or float64
        return jax.scipy.linalg.expm((A - A.T).astype(wide)).astype(A.dtype)  # (H, H), orthogonal

    def project(params, x):
        return x @ params["W_i"]

    def cell_step(params, W, h, gx):
        h = modrelu(gx + h @ W, params["b"])
        return h, h

    def step_projected(params, h, gx):
        return cell_step(params, params["W"] if "W" in params else recurrent(params), h, gx)

    def prepare(params):
        return {**params, "W": recurrent(params)}

    def fused(params, xs, h0, mask, *, unroll=1, hoist="auto", rule="vjp", static=None, pack=None):
        # autodiff: one rule, and no packed steps (their loops' lengths depend on the data, which reverse
        # mode cannot differentiate through without a hand-written backward pass)
        W = recurrent(params)
        gx = project(params, with_static(xs, static))  # (T, B, H): all input products at once

        def body(h, inp):
            new, _ = cell_step(params, W, h, inp[0])
            m = None if mask is None else inp[1]
            return _ops.select(m, new, h), _ops.zero_invalid(m, new)

        final, ys = jax.lax.scan(body, h0, (gx,) if mask is None else (gx, mask), unroll=unroll)
        return ys, final

    return Cell(
        init=init,
        initial_state=lambda dtype=jnp.float32: jnp.zeros((H,), dtype),
        step=_make_step(project, step_projected),
        output_size=H,
        name="orthogonal",
        fused=fused,
        prepare=prepare,
    )
