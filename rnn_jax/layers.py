"""Sequence layers built from cells, and combinators that return layers.

A :class:`Layer` works on ONE sequence: ``apply(params, xs (T, I), length=None, initial_state=None)
-> (ys (T, O), final_state)``. Combinators return layers, as ``optax.chain`` returns a transformation:

* :func:`rnn` turns a cell into a layer through the scan unroller;
* :func:`bidirectional` runs one layer forwards and one over the reversed valid prefix, and merges;
* :func:`stack` makes a deep RNN, with optional residual or highway connections between layers.

Batches: ``jax.vmap(layer.apply, in_axes=(None, 0, 0))`` or :func:`apply_batch`, which also checks
the batch's shapes and lengths before tracing.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

import jax
import jax.numpy as jnp

from rnn_jax import _checks
from rnn_jax._ops import affine
from rnn_jax import fused as _fused
from rnn_jax import parallel as _parallel
from rnn_jax.cells import Cell
from rnn_jax.unroll import flip_valid, unroll

__all__ = ["Layer", "rnn", "bidirectional", "stack", "apply_batch", "stream_init", "stream_step",
           "MERGES", "SKIPS"]


class Layer(NamedTuple):
    """A sequence layer.

    Attributes:
      init: ``(key, input_size, dtype=float32) -> params``.
      apply: ``(params, xs (T, I), length=None, initial_state=None) -> (ys (T, O), final_state)``.
      output_size: O.
      input_size: ``params -> I``.
      initial_state: ``(dtype=float32) -> state`` (zeros).
      step: ``(params, state, x (I,)) -> (state, y (O,))`` for online use, or None when the layer
        needs the future (bidirectional, reversed).
      name: for messages and tables.
      batched: ``(params, xs (B, T, I), lengths (B,) | None, initial_state | None) -> (ys (B, T, O),
        finals)``: a batch-major implementation equal to ``jax.vmap(apply)``, used by
        :func:`apply_batch`; None when the layer has none (``apply_batch`` then vmaps ``apply``).
    """

    init: Callable[..., Any]
    apply: Callable[..., tuple[jax.Array, Any]]
    output_size: int
    input_size: Callable[[Any], int]
    initial_state: Callable[..., Any]
    step: Optional[Callable[..., tuple[Any, jax.Array]]]
    name: str
    batched: Optional[Callable[..., tuple[jax.Array, Any]]] = None


def _check_call(layer_init, input_size, params, xs, length):
    """Shape and dtype checks shared by the combinators (trace time only)."""
    _checks.check_sequence(xs, input_size(params))
    _checks.check_params(_checks.expected_params(layer_init, xs.shape[1], xs.dtype), params)
    _checks.check_same_dtype(xs, params)
    _checks.check_length(length, xs.shape[0])


def rnn(cell: Cell, *, reverse: bool = False, unroll: int = 1, remat: Union[bool, int] = False,
        hoist_input: Union[bool, str] = "auto", fused: Optional[bool] = None, layout: str = "auto",
        parallel: Optional[str] = None) -> Layer:
    """A layer that runs ``cell`` over the sequence with :func:`rnn_jax.unroll.unroll`.

    ``reverse``, ``unroll``, ``remat`` and ``hoist_input`` are passed to the unroller
    (``hoist_input="auto"``: off in the generic unroller; in the fused recurrence
    :func:`rnn_jax.fused.choose_hoist` decides from measurements).

    ``fused``: batches through :func:`apply_batch` use the fused recurrence of :mod:`rnn_jax.fused`
    (hand-written backward pass, weight gradients as single products over all timesteps) when
    the cell has one (Elman tanh/relu/sigmoid, LSTM, GRU). ``None`` (default): when available and
    ``remat`` is off; ``True``: always (an error for other cells); ``False``: never. The per-sequence
    ``apply`` is always the generic unroller; both compute the same values and gradients.
    ``layout``: the fused recurrence's step layout, ``"batch"`` (states ``(B, H)``), ``"feature"``
    (states ``(H, B)``) or ``"auto"`` (:func:`rnn_jax.fused.choose_layout`, from measurements).

    ``parallel``: ``"newton"`` or ``"diagonal"`` evaluates the sequence in parallel over time with
    :func:`rnn_jax.parallel.deer` (falling back to the scan when it does not converge); None: the scan.
    """
    if not isinstance(cell, Cell):
        raise ValueError(f"cell: expected an rnn_jax Cell (e.g. rnn_jax.lstm(H)), got {type(cell).__name__}")
    if fused not in (None, True, False):
        raise ValueError(f"fused: expected None, True or False, got {fused!r}")
    if fused and cell.fused not in _fused.FUSED_KINDS:
        raise ValueError(f"fused=True: cell {cell.name!r} has no fused recurrence; fused cells are "
                         f"{_fused.FUSED_KINDS}")
    if hoist_input not in (True, False, "auto"):
        raise ValueError(f"hoist_input: expected True, False or 'auto', got {hoist_input!r}")
    if layout not in ("auto", "batch", "feature"):
        raise ValueError(f"layout: expected 'auto', 'batch' or 'feature', got {layout!r}")
    if parallel is not None and parallel not in _parallel.METHODS:
        raise ValueError(f"parallel: expected None or one of {_parallel.METHODS}, got {parallel!r}")
    if fused and parallel:
        raise ValueError("fused=True with parallel: choose one evaluation of the recurrence")
    if fused and remat:
        raise ValueError("fused=True with remat: the fused recurrence keeps every step's gates; "
                         "use remat with fused=False")
    unroll_factor = unroll

    def apply(params, xs, length=None, initial_state=None):
        if parallel:
            return _parallel.deer(cell, params, xs, length=length, initial_carry=initial_state,
                                  reverse=reverse, method=parallel)[:2]
        return _unroll(cell, params, xs, length=length, initial_carry=initial_state, reverse=reverse,
                       unroll=unroll_factor, remat=remat, hoist_input=hoist_input is True)

    batched = None
    if fused or (fused is None and not remat and not parallel and cell.fused in _fused.FUSED_KINDS):
        def batched(params, xs, lengths=None, initial_state=None):
            _checks.check_params(_checks.expected_params(cell.init, xs.shape[2], xs.dtype), params)
            _checks.check_same_dtype(xs, params)
            return _fused.unroll_batch(cell, params, xs, lengths=lengths, initial_carry=initial_state,
                                       reverse=reverse, unroll=unroll_factor, layout=layout, hoist=hoist_input)

    return Layer(init=cell.init, apply=apply, output_size=cell.output_size, input_size=cell.input_size,
                 initial_state=cell.initial_carry, step=None if reverse else cell.step,
                 name=("reversed " if reverse else "") + cell.name, batched=batched)


_unroll = unroll

MERGES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "concat": lambda a, b: jnp.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "mean": lambda a, b: 0.5 * (a + b),
    "mul": lambda a, b: a * b,
}


def bidirectional(fwd: Layer, bwd: Layer, merge: Union[str, Callable] = "concat") -> Layer:
    """Run ``fwd`` over the sequence and ``bwd`` over its reversed valid prefix; merge per step.

    ``merge`` is ``"concat"`` (O = O_f + O_b), ``"sum"``, ``"mean"``, ``"mul"`` (O_f == O_b) or a
    callable ``(y_f, y_b) -> y``, for which the output size is taken to be O_f. Output ``t`` of
    ``bwd`` is aligned with input ``t``, so ``ys[t]`` sees the whole valid sequence. Params are
    ``{"fwd": ..., "bwd": ...}``; the final state is ``(fwd_final, bwd_final)``, where ``bwd_final``
    is the state after reading ``x[0]``.
    """
    for name, layer in (("fwd", fwd), ("bwd", bwd)):
        if not isinstance(layer, Layer):
            raise ValueError(f"{name}: expected an rnn_jax Layer (e.g. rnn_jax.rnn(cell)), got {type(layer).__name__}")
    if callable(merge):
        merge_fn, out = merge, fwd.output_size
    elif merge in MERGES:
        merge_fn = MERGES[merge]
        if merge == "concat":
            out = fwd.output_size + bwd.output_size
        elif fwd.output_size != bwd.output_size:
            raise ValueError(f"merge={merge!r}: fwd and bwd output sizes must match, got "
                             f"{fwd.output_size} and {bwd.output_size}")
        else:
            out = fwd.output_size
    else:
        raise ValueError(f"merge: expected one of {sorted(MERGES)} or a callable, got {merge!r}")

    def init(key, input_size, dtype=jnp.float32):
        kf, kb = jax.random.split(key)
        return {"fwd": fwd.init(kf, input_size, dtype), "bwd": bwd.init(kb, input_size, dtype)}

    def input_size(params):
        return fwd.input_size(params["fwd"])

    def initial_state(dtype=jnp.float32):
        return (fwd.initial_state(dtype), bwd.initial_state(dtype))

    def apply(params, xs, length=None, initial_state=None):
        _check_call(init, input_size, params, xs, length)
        s_f, s_b = (None, None) if initial_state is None else initial_state
        ys_f, fin_f = fwd.apply(params["fwd"], xs, length, s_f)                  # (T, O_f)
        ys_b, fin_b = bwd.apply(params["bwd"], flip_valid(xs, length), length, s_b)
        ys_b = flip_valid(ys_b, length)                                         # (T, O_b), aligned
        return merge_fn(ys_f, ys_b), (fin_f, fin_b)

    batched = None
    if fwd.batched is not None and bwd.batched is not None:
        def batched(params, xs, lengths=None, initial_state=None):
            s_f, s_b = (None, None) if initial_state is None else initial_state
            flip = _flip_batch(lengths)
            ys_f, fin_f = fwd.batched(params["fwd"], xs, lengths, s_f)
            ys_b, fin_b = bwd.batched(params["bwd"], flip(xs), lengths, s_b)
            return merge_fn(ys_f, flip(ys_b)), (fin_f, fin_b)

    return Layer(init=init, apply=apply, output_size=out, input_size=input_size,
                 initial_state=initial_state, step=None, name=f"bidirectional({fwd.name}, {bwd.name})",
                 batched=batched)


def _flip_batch(lengths):
    """Reverse the valid prefix of every sequence of a batch ``(B, T, ...)``."""
    if lengths is None:
        return lambda a: a[:, ::-1]
    return lambda a: jnp.swapaxes(_fused.flip_valid_batch(jnp.swapaxes(a, 0, 1), lengths), 0, 1)


SKIPS = (None, "residual", "highway")


def stack(*layers: Layer, skip: Optional[str] = None, highway_bias: float = -1.0) -> Layer:
    """A deep RNN: each layer reads the outputs of the one below.

    ``skip`` connects layer ``l >= 2`` to its input ``x`` (the output of layer ``l - 1``):

    * ``None``: ``y = f(x)``;
    * ``"residual"``: ``y = f(x) + x`` (He et al. 2016);
    * ``"highway"``: ``y = g * f(x) + (1 - g) * x`` with a per-step transform gate
      ``g = sigmoid(x W_g + b_g)``, ``b_g`` initialised to ``highway_bias`` so that layers start
      close to carrying their input through (Srivastava et al. 2015).

    Skips need equal sizes, checked here. Params: ``{"layers": (p_1, ..., p_L), "gates": (...)}``,
    with one gate ``{"W": (O, O), "b": (O,)}`` per skip when ``skip="highway"``. The final state
    is the tuple of every layer's final state.
    """
    if not layers:
        raise ValueError("layers: expected at least one Layer, got none")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise ValueError(f"layers[{i}]: expected an rnn_jax Layer, got {type(layer).__name__}")
    if skip not in SKIPS:
        raise ValueError(f"skip: expected one of {SKIPS}, got {skip!r}")
    if skip is not None:
        for i in range(1, len(layers)):
            if layers[i].output_size != layers[i - 1].output_size:
                raise ValueError(f"skip={skip!r}: layers[{i}] output size {layers[i].output_size} must equal "
                                 f"its input size {layers[i - 1].output_size}")

    def init(key, input_size, dtype=jnp.float32):
        keys = jax.random.split(key, 2 * len(layers))
        ps, size = [], input_size
        for k, layer in zip(keys[: len(layers)], layers):
            ps.append(layer.init(k, size, dtype))
            size = layer.output_size
        gates = ()
        if skip == "highway":
            gates = tuple({"W": jax.nn.initializers.glorot_uniform()(k, (l.output_size, l.output_size), dtype),
                           "b": jnp.full((l.output_size,), highway_bias, dtype)}
                          for k, l in zip(keys[len(layers) + 1:], layers[1:]))
        return {"layers": tuple(ps), "gates": gates}

    def input_size(params):
        return layers[0].input_size(params["layers"][0])

    def initial_state(dtype=jnp.float32):
        return tuple(layer.initial_state(dtype) for layer in layers)

    def connect(params, i, x, y):
        if i == 0 or skip is None:
            return y
        if skip == "residual":
            return y + x
        gate = params["gates"][i - 1]
        g = jax.nn.sigmoid(affine(x, gate["W"], gate["b"]))  # (T, O) or (O,)
        return g * y + (1.0 - g) * x

    def apply(params, xs, length=None, initial_state=None):
        _check_call(init, input_size, params, xs, length)
        states = (None,) * len(layers) if initial_state is None else initial_state
        h, finals = xs, []
        for i, (layer, p, s) in enumerate(zip(layers, params["layers"], states)):
            ys, fin = layer.apply(p, h, length, s)  # (T, O_i)
            h = connect(params, i, h, ys)
            finals.append(fin)
        return h, tuple(finals)

    step = None
    if all(layer.step is not None for layer in layers):
        def step(params, state, x):
            new_states, h = [], x
            for i, (layer, p, s) in enumerate(zip(layers, params["layers"], state)):
                s, y = layer.step(p, s, h)
                h = connect(params, i, h, y)
                new_states.append(s)
            return tuple(new_states), h

    batched = None
    if all(layer.batched is not None for layer in layers):
        def batched(params, xs, lengths=None, initial_state=None):
            states = (None,) * len(layers) if initial_state is None else initial_state
            h, finals = xs, []
            for i, (layer, p, s) in enumerate(zip(layers, params["layers"], states)):
                ys, fin = layer.batched(p, h, lengths, s)  # (B, T, O_i)
                h = connect(params, i, h, ys)
                finals.append(fin)
            return h, tuple(finals)

    return Layer(init=init, apply=apply, output_size=layers[-1].output_size, input_size=input_size,
                 initial_state=initial_state, step=step,
                 name=f"stack[{', '.join(l.name for l in layers)}]" + (f"/{skip}" if skip else ""),
                 batched=batched)


def apply_batch(layer: Layer, params, xs: jax.Array, lengths: Optional[jax.Array] = None,
                initial_state: Any = None):
    """``layer.apply`` over a batch ``xs (B, T, I)`` with ``lengths (B,)``; returns ``(ys (B, T, O), finals)``.

    Checks the batch's shapes and (concrete) lengths before tracing, then runs ``layer.batched``
    (the fused recurrences of :mod:`rnn_jax.fused`) when the layer has it, else vmaps ``layer.apply``.
    """
    shape = getattr(xs, "shape", None)
    if shape is None or len(shape) != 3:
        raise ValueError(f"xs: expected shape (B, T, I), got "
                         f"{_checks.shape_str(shape) if shape is not None else type(xs).__name__}")
    I = layer.input_size(params)
    if shape[2] != I:
        raise ValueError(f"xs: expected shape (B, T, {I}) (feature size {I}), got {_checks.shape_str(shape)}")
    _checks.check_lengths(lengths, shape[0], shape[1])
    if layer.batched is not None:
        return layer.batched(params, xs, None if lengths is None else jnp.asarray(lengths), initial_state)
    in_axes = (None, 0, None if lengths is None else 0, None if initial_state is None else 0)
    return jax.vmap(layer.apply, in_axes=in_axes)(params, xs, lengths, initial_state)


def stream_init(layer: Layer, dtype=jnp.float32):
    """The state before the first timestep of online use (zeros)."""
    if layer.step is None:
        raise ValueError(f"layer: {layer.name} needs future inputs and cannot run online (no step)")
    return layer.initial_state(dtype)


def stream_step(layer: Layer, params, state, x: jax.Array):
    """Feed ONE timestep ``x (I,)``; returns ``(state, y (O,))``, equal to the offline unroll's output."""
    if layer.step is None:
        raise ValueError(f"layer: {layer.name} needs future inputs and cannot run online (no step)")
    shape = getattr(x, "shape", None)
    I = layer.input_size(params)
    if shape != (I,):
        raise ValueError(f"x: expected shape ({I},), got "
                         f"{_checks.shape_str(shape) if shape is not None else type(x).__name__}")
    return layer.step(params, state, x)
