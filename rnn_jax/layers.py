"""Sequence layers built from cells, and combinators that return layers.

A :class:`Layer` takes batches: ``apply(params, xs (*batch, T, I), lengths=None, initial_state=None)
-> (ys (*batch, T, O), final_state)`` with zero or more leading batch dimensions, ``lengths`` of
shape ``batch`` and final-state leaves ``(*batch, ...)``. One call serves one sequence and a batch,
as Flax's ``nn.RNN`` does. Combinators return layers, as ``optax.chain`` returns a transformation:

* :func:`rnn` turns a cell into a layer: it runs the cell's fused recurrence (hand-written
  derivatives, :mod:`rnn_jax.fused`) when it has one, else one scan over time whose step is the
  cell vmapped over the batch (:func:`rnn_jax.unroll.scan`);
* :func:`bidirectional` runs one layer forwards and one over the reversed valid prefix, and merges;
* :func:`stack` makes a deep RNN, with optional residual or highway connections between layers.

Each layer is written once, on a time-major batch (``Layer.run``: ``xs (T, B, I)``, unchecked);
``apply`` checks its arguments once, at the edge, and converts to and from that layout.

A call without batch dimensions (``Layer.run(..., batched=False)``) runs the fused recurrence's JVP
rule: a custom backward pass under ``jax.vmap`` would build one weight gradient per example, while
the transpose of a custom JVP forms each as one product over the mapped examples. Batched calls are
the fast path; ``jax.vmap`` over single-sequence calls comes close to it.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp

from rnn_jax import _checks, _ops, runs
from rnn_jax import regularization as _reg
from rnn_jax._ops import affine, with_static
from rnn_jax.cells import Cell, check_cell
from rnn_jax.unroll import check_inputs

__all__ = ["Layer", "rnn", "bidirectional", "stack", "stream_init", "stream_step", "run_layer", "MERGES", "SKIPS"]


class Layer(NamedTuple):
    """A sequence layer.

    Attributes:
      init: ``(key, input_size, dtype=float32) -> params``.
      apply: ``(params, xs (*batch, T, I), lengths=None, initial_state=None, *, key=None) -> (ys (*batch,
        T, O), final_state)``: checked, batch-first; the function users call. ``key``: a
        ``jax.random.key`` draws the dropout and zoneout masks (training); None (the default) draws none
        (evaluation) (:mod:`rnn_jax.regularization`).
      run: ``(params, xs (T, B, I), lengths (B,) | None, state | None, batched=True, key=None) -> (ys
        (T, B, O), final_state)``: the unchecked time-major core that combinators and models compose
        (:func:`run_layer` passes ``key`` only when there is one, so a hand-written layer without
        randomness need not take it).
        ``batched=False`` marks a call without batch dimensions (B = 1), perhaps under ``jax.vmap``:
        fused recurrences then take their JVP rule (:mod:`rnn_jax.fused`). An :func:`rnn` layer's
        ``run`` also takes ``static (B, C)``: inputs that every step reads after ``x_t`` (a decoder's
        context), whose input product a fused cell takes once per sequence (``Cell.fused``).
      output_size: O.
      initial_state: ``(dtype=float32) -> state`` of ONE example (zeros).
      step: ``(params, state (B, ...), x (B, I)) -> (state, y (B, O))``, one timestep of a batch for
        online use, or None when the layer needs the future (bidirectional, reversed).
      name: for messages and tables.
      reads_backward: whether the layer's outputs at a sequence's last valid step come (in part) from a
        direction that has read only that step there (reversed and bidirectional layers, and stacks
        topped by one): a model's ``"last"`` readout of it would see one input (:mod:`rnn_jax.models`).
      parallel_info: for a layer that solves its recurrence by Newton's method (``rnn(cell,
        parallel="newton" | "diagonal")``), ``(params, xs, lengths=None, initial_state=None) ->``
        :class:`rnn_jax.parallel.DeerInfo` of shape ``batch``: per sequence the iterations run, whether
        they converged (False: ``apply`` returned the sequential scan's result there) and the residual.
        None for every other layer.
      how: for an :func:`rnn` layer, the way it runs (:mod:`rnn_jax.runs`: ``Scan``, ``Fused``, ``Linear`` or
        ``Newton``), checked against its cell; None for combinators.

    Examples:
      >>> layer = rnn_jax.rnn(rnn_jax.lstm(8))
      >>> p = layer.init(jax.random.key(0), 3)
      >>> ys, state = layer.apply(p, jnp.ones((2, 5, 3)), lengths=jnp.array([5, 3]))
      >>> ys.shape, state.h.shape, layer.output_size, layer.name
      ((2, 5, 8), (2, 8), 8, 'lstm')
    """

    init: Callable[..., Any]
    apply: Callable[..., tuple[jax.Array, Any]]
    run: Callable[..., tuple[jax.Array, Any]]
    output_size: int
    initial_state: Callable[..., Any]
    step: Optional[Callable[..., tuple[Any, jax.Array]]]
    name: str
    reads_backward: bool = False
    parallel_info: Optional[Callable[..., Any]] = None
    how: Any = None


def _layer(init, run, output_size, initial_state, step, name, reads_backward=False, cell=None) -> Layer:
    """Assemble a Layer whose public ``apply`` checks once and calls ``run`` on a time-major batch.
    ``cell``: the cell of an :func:`rnn` layer, checked against its step when the layer is initialised
    or applied (:func:`rnn_jax.check_cell`)."""

    def apply(params, xs, lengths=None, initial_state=None, *, key=None):
        key = _reg.check_key(key)
        xs_tm, lengths, state, batch = check_inputs(init, initial_state_fn, params, xs, lengths, initial_state, cell)
        ys, final = run_layer(layer, params, xs_tm, lengths, state, bool(batch), key)
        return _ops.from_time_major(ys, batch), _ops.unflatten_batch(final, batch)

    initial_state_fn = initial_state
    apply.__doc__ = (
        f"{name}: ``(params, xs (*batch, T, I), lengths=None, initial_state=None, *, key=None) -> "
        f"(ys (*batch, T, {output_size}), final_state)``; ``key``: dropout and zoneout masks "
        f"(training), None: none (evaluation)."
    )

    def checked_init(key, input_size, dtype=jnp.float32):
        _reg.init_key(key)
        if cell is not None:
            check_cell(cell, input_size, dtype)
        return init(key, input_size, dtype)

    checked_init.__doc__ = f"{name}: ``(key, input_size, dtype=float32) -> params``."
    layer = Layer(
        init=checked_init,
        apply=apply,
        run=run,
        output_size=output_size,
        initial_state=initial_state,
        step=step,
        name=name,
        reads_backward=reads_backward,
    )
    return layer


def run_layer(layer: Layer, params, xs, lengths=None, state=None, batched=True, key=None):
    """``layer.run(params, xs, lengths, state, batched)``, with ``key=key`` when a key is given (a layer
    written by hand without randomness need not take one).

    Args:
      layer: a :class:`Layer`.
      params: its params.
      xs: ``(T, B, I)``, time-major.
      lengths: ``(B,)`` ints or None.
      state: the state with leaves ``(B, ...)``, or None (zeros).
      batched: False for a call without batch dimensions (see ``Layer.run``).
      key: a ``jax.random.key`` for the dropout and zoneout masks, or None.

    Returns:
      ``(ys (T, B, O), final_state)``.

    Examples:
      >>> layer = rnn_jax.rnn(rnn_jax.gru(4), dropout=0.5)
      >>> p = layer.init(jax.random.key(0), 3)
      >>> ys, h = rnn_jax.layers.run_layer(layer, p, jnp.ones((6, 2, 3)), key=jax.random.key(1))
      >>> ys.shape
      (6, 2, 4)
    """
    if key is None:
        return layer.run(params, xs, lengths, state, batched)
    return layer.run(params, xs, lengths, state, batched, key=key)


def rnn(
    cell: Cell,
    how: Optional[runs.How] = None,
    *,
    reverse: bool = False,
    dropout: float = 0.0,
    recurrent_dropout: float = 0.0,
    zoneout: float = 0.0,
    **options: Any,
) -> Layer:
    """A layer that runs ``cell`` over the sequence, the way ``how`` says.

    ``how`` is one value (:mod:`rnn_jax.runs`), checked against the cell here: ``Fused(unroll, hoist, pack)``
    runs the cell's kernel, its fast recurrence with hand-written derivatives (Elman, LSTM, GRU, IndRNN, the
    orthogonal cell; the default of every cell that has one); ``Scan(unroll, remat, pack)`` the generic
    scan :func:`rnn_jax.unroll.scan`, autodiff through ``lax.scan`` (the default of the others);
    ``Linear(solver)`` a diagonal linear recurrence solved for all steps at once; ``Newton(diagonal, tol,
    max_iters)`` any cell solved in parallel over time. All compute the same values and gradients (tested
    to 1e-10 in float64). Batched calls of a kernel take its hand-written backward pass; calls without
    batch dimensions its tangent recurrence, which JAX transposes, so that ``jax.vmap`` over them still
    forms each weight gradient as one product (:mod:`rnn_jax.fused`).

    The keyword options of earlier versions spell the same values and stay accepted (not together with
    ``how``): ``unroll``, ``remat``, ``fused`` (None, True: ``Fused``, False: ``Scan``), ``hoist_input``,
    ``pack`` (True, False, ``"always"``: ``Scan(pack=True)``), ``parallel`` (``"linear"``: ``Linear``,
    ``"newton"`` / ``"diagonal"``: ``Newton``), ``linear_solver``, ``tol``, ``max_iters``
    (:func:`rnn_jax.runs.from_keywords`). ``layer.how`` is the value a layer runs by.

    Args:
      cell: the cell.
      how: :class:`rnn_jax.Scan`, :class:`rnn_jax.Fused`, :class:`rnn_jax.Linear`, :class:`rnn_jax.Newton`,
        or None (the cell's default: ``Fused()`` with a kernel, else ``Scan()``).
      reverse: read the valid prefix backwards (outputs stay aligned with their inputs).
      **options: the keyword spelling of ``how`` (above).
      dropout: variational dropout of the inputs: with a ``key``, each sequence's input features are
        dropped with this probability, one mask for all its steps (Gal & Ghahramani 2016).
      recurrent_dropout: variational dropout of the hidden vector entering every step (the state, or its
        first leaf: LSTM's ``h``, never its ``c``), one mask per sequence. For a GRU this drops ``h`` in
        the carry ``z h`` too.
      zoneout: with a ``key``, each unit of the state keeps its previous value with this probability at
        every step (Krueger et al. 2017); without one, the state is the expectation ``p h_prev + (1 - p)
        h_new``. The outputs are the step's.

    ``recurrent_dropout`` and ``zoneout`` act inside the step, so they run the generic scan
    (:mod:`rnn_jax.regularization`): ``recurrent_dropout`` only in calls with a key, ``zoneout`` always;
    with any ``how`` but ``Scan`` they are refused.

    Returns:
      A :class:`Layer`: ``apply(params, xs (*batch, T, I), lengths=None, initial_state=None, *, key=None)
      -> (ys (*batch, T, O), final_state)``.

    Examples:
      >>> layer = rnn_jax.rnn(rnn_jax.gru(16))
      >>> params = layer.init(jax.random.key(0), 3)
      >>> ys, h = layer.apply(params, jnp.ones((4, 10, 3)), jnp.array([10, 7, 3, 0]))
      >>> ys.shape, h.shape
      ((4, 10, 16), (4, 16))
      >>> rnn_jax.rnn(rnn_jax.min_gru(16), how=rnn_jax.Linear()).how       # solved for all steps at once
      Linear(solver='scan')
    """
    check_cell(cell)
    dropout = _reg.check_rate(dropout, "dropout")
    recurrent_dropout = _reg.check_rate(recurrent_dropout, "recurrent_dropout")
    zoneout = _reg.check_rate(zoneout, "zoneout", allow_one=False)
    how = runs.resolve(cell, how, options, inside_step=bool(recurrent_dropout or zoneout), zoneout=bool(zoneout))
    regularise = _reg.layer_regularisers(cell, dropout, recurrent_dropout, zoneout)
    scan_how = how if isinstance(how, runs.Scan) else runs.Scan(getattr(how, "unroll", 1))

    def run(params, xs, lengths=None, state=None, batched=True, static=None, key=None):
        xs, inside_step = regularise(key, xs, state)
        if inside_step:  # recurrent dropout (with a key) and zoneout act inside the step: the scan
            return scan_how.run(cell, params, with_static(xs, static), lengths, state, reverse, batched, **inside_step)
        if isinstance(how, runs.Fused):
            return how.run(cell, params, xs, lengths, state, reverse, batched, static=static)
        return how.run(cell, params, with_static(xs, static), lengths, state, reverse, batched)

    step = None if reverse else jax.vmap(cell.step, in_axes=(None, 0, 0))
    if step is not None and zoneout:  # online use is evaluation: zoneout's expectation, as apply without a key
        step = _reg.zoneout_expectation(step, zoneout)
    layer = _layer(
        cell.init,
        run,
        cell.output_size,
        cell.initial_state,
        step,
        ("reversed " if reverse else "") + cell.name,
        reads_backward=reverse,
        cell=cell,
    )
    layer = layer._replace(how=how)
    if isinstance(how, runs.Newton):
        layer = layer._replace(parallel_info=functools.partial(how.info, cell, reverse=reverse))
    return layer


MERGES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "concat": lambda a, b: jnp.concatenate([a, b], axis=-1),
    "sum": lambda a, b: a + b,
    "mean": lambda a, b: 0.5 * (a + b),
    "mul": lambda a, b: a * b,
}


def bidirectional(fwd: Layer, bwd: Layer, merge: Union[str, Callable] = "concat") -> Layer:
    """Run ``fwd`` over the sequence and ``bwd`` over its reversed valid prefix; merge per step.

    ``merge`` is ``"concat"`` (O = O_f + O_b), ``"sum"``, ``"mean"``, ``"mul"`` (O_f == O_b) or a
    callable ``(y_f, y_b) -> y`` on ``(..., O_f)`` arrays, for which the output size is taken to be
    O_f. Output ``t`` of ``bwd`` is aligned with input ``t``, so ``ys[..., t, :]`` sees the whole
    valid sequence. Params are ``{"fwd": ..., "bwd": ...}``; the final state is ``(fwd_final,
    bwd_final)``, where ``bwd_final`` is the state after reading ``x[0]``.

    Args:
      fwd: the layer that reads the sequence forwards.
      bwd: the layer run over each sequence's reversed valid prefix: built like ``fwd`` (``rnn(cell)``, not
        ``rnn(cell, reverse=True)``, which is refused: it would read the reversed prefix backwards, i.e.
        forwards; Keras refuses the same mismatch between its two layers' ``go_backwards``).
      merge: how the two outputs of a step are combined (see above).

    Returns:
      A :class:`Layer` with output size ``O_f + O_b`` (``"concat"``) or ``O_f``; it has no ``step``
      (it needs the future).

    Examples:
      >>> bi = rnn_jax.bidirectional(rnn_jax.rnn(rnn_jax.lstm(8)), rnn_jax.rnn(rnn_jax.lstm(8)))
      >>> ys, (fwd_final, bwd_final) = bi.apply(bi.init(jax.random.key(0), 3), jnp.ones((2, 5, 3)))
      >>> ys.shape, fwd_final.h.shape
      ((2, 5, 16), (2, 8))
    """
    for name, layer in (("fwd", fwd), ("bwd", bwd)):
        if not isinstance(layer, Layer):
            raise ValueError(f"{name}: expected an rnn_jax Layer (e.g. rnn_jax.rnn(cell)), got {type(layer).__name__}")
    if bwd.reads_backward:  # it would read the reversed sequence backwards: forwards again, with no error
        raise ValueError(
            f"bwd: bidirectional reverses each sequence for bwd itself, and {bwd.name} already reads "
            f"backwards (built with reverse=True, or bidirectional): the pair would read forwards "
            f"twice. Write rnn_jax.bidirectional(rnn_jax.rnn(cell), rnn_jax.rnn(cell)) (bwd without "
            f"reverse=True)"
        )
    if callable(merge):
        merge_fn, out = merge, fwd.output_size
    elif merge in MERGES:
        merge_fn = MERGES[merge]
        if merge == "concat":
            out = fwd.output_size + bwd.output_size
        elif fwd.output_size != bwd.output_size:
            raise ValueError(
                f"merge={merge!r}: fwd and bwd output sizes must match, got {fwd.output_size} and {bwd.output_size}"
            )
        else:
            out = fwd.output_size
    else:
        raise ValueError(f"merge: expected one of {sorted(MERGES)} or a callable, got {merge!r}")

    def init(key, input_size, dtype=jnp.float32):
        kf, kb = jax.random.split(key)
        return {"fwd": fwd.init(kf, input_size, dtype), "bwd": bwd.init(kb, input_size, dtype)}

    def initial_state(dtype=jnp.float32):
        return (fwd.initial_state(dtype), bwd.initial_state(dtype))

    def run(params, xs, lengths=None, state=None, batched=True, key=None):
        s_f, s_b = (None, None) if state is None else state
        k_f, k_b = (None, None) if key is None else (jax.random.fold_in(key, 0), jax.random.fold_in(key, 1))
        ys_f, fin_f = run_layer(fwd, params["fwd"], xs, lengths, s_f, batched, k_f)  # (T, B, O_f)
        ys_b, fin_b = run_layer(bwd, params["bwd"], _ops.flip_valid(xs, lengths), lengths, s_b, batched, k_b)
        return merge_fn(ys_f, _ops.flip_valid(ys_b, lengths)), (fin_f, fin_b)  # bwd outputs aligned

    return _layer(init, run, out, initial_state, None, f"bidirectional({fwd.name}, {bwd.name})", reads_backward=True)


SKIPS = (None, "residual", "highway")


def stack(*layers: Layer, skip: Optional[str] = None, highway_bias: float = -1.0, dropout: float = 0.0) -> Layer:
    """A deep RNN: each layer reads the outputs of the one below.

    ``skip`` connects layer ``l >= 2`` to its input ``x`` (the output of layer ``l - 1``):

    * ``None``: ``y = f(x)``;
    * ``"residual"``: ``y = f(x) + x`` (He et al. 2016);
    * ``"highway"``: ``y = g * f(x) + (1 - g) * x`` with a per-step transform gate
      ``g = sigmoid(x W_g + b_g)``, ``b_g`` initialised to ``highway_bias`` so that layers start
      close to carrying their input through (Srivastava et al. 2015).

    ``dropout``: in calls with a ``key``, every layer's outputs (the last one's too: what a model's head
    reads) are dropped with this probability, a fresh mask per step and unit (Zaremba et al. 2014);
    layer ``i``'s mask is ``jax.random.bernoulli(jax.random.fold_in(key, i), 1 - dropout, (B, T, O_i))``
    in the batch-first layout, and layer ``i`` itself gets ``jax.random.fold_in(key, L + i)``
    (:mod:`rnn_jax.regularization`). The skips read the dropped outputs.

    Skips need equal sizes, checked here. Params: ``{"layers": (p_1, ..., p_L), "gates": (...)}``,
    with one gate ``{"W": (O, O), "b": (O,)}`` per skip when ``skip="highway"``. The final state
    is the tuple of every layer's final state.

    Args:
      *layers: the layers, bottom first.
      skip: None, ``"residual"`` or ``"highway"``.
      highway_bias: the initial bias of the highway gates.
      dropout: the probability of dropping a layer's output unit in calls with a key.

    Returns:
      A :class:`Layer` with the top layer's output size.

    Examples:
      >>> deep = rnn_jax.stack(rnn_jax.rnn(rnn_jax.gru(8)), rnn_jax.rnn(rnn_jax.gru(8)), skip="residual", dropout=0.2)
      >>> p = deep.init(jax.random.key(0), 3)
      >>> ys, finals = deep.apply(p, jnp.ones((2, 5, 3)), key=jax.random.key(1))   # training: dropout on
      >>> ys.shape, len(finals)
      ((2, 5, 8), 2)
    """
    if not layers:
        raise ValueError("layers: expected at least one Layer, got none")
    for i, layer in enumerate(layers):
        if not isinstance(layer, Layer):
            raise ValueError(f"layers[{i}]: expected an rnn_jax Layer, got {type(layer).__name__}")
    if skip not in SKIPS:
        raise ValueError(f"skip: expected one of {SKIPS}, got {skip!r}")
    dropout = _reg.check_rate(dropout, "dropout")
    if skip is not None:
        for i in range(1, len(layers)):
            if layers[i].output_size != layers[i - 1].output_size:
                raise ValueError(
                    f"skip={skip!r}: layers[{i}] output size {layers[i].output_size} must equal "
                    f"its input size {layers[i - 1].output_size}"
                )

    def init(key, input_size, dtype=jnp.float32):
        keys = jax.random.split(key, 2 * len(layers))
        ps, size = [], input_size
        for k, layer in zip(keys[: len(layers)], layers):
            ps.append(layer.init(k, size, dtype))
            size = layer.output_size
        gates = ()
        if skip == "highway":
            gates = tuple(
                {
                    "W": jax.nn.initializers.glorot_uniform()(k, (l.output_size, l.output_size), dtype),
                    "b": jnp.full((l.output_size,), highway_bias, dtype),
                }
                for k, l in zip(keys[len(layers) + 1 :], layers[1:])
            )
        return {"layers": tuple(ps), "gates": gates}

    def initial_state(dtype=jnp.float32):
        return tuple(layer.initial_state(dtype) for layer in layers)

    def connect(params, i, x, y):
        if i == 0 or skip is None:
            return y
        if skip == "residual":
            return y + x
        gate = params["gates"][i - 1]
        g = jax.nn.sigmoid(affine(x, gate["W"], gate["b"]))  # (..., O)
        return g * y + (1.0 - g) * x

    def run(params, xs, lengths=None, state=None, batched=True, key=None):
        states = (None,) * len(layers) if state is None else state
        h, finals, L = xs, [], len(layers)
        for i, (layer, p, s) in enumerate(zip(layers, params["layers"], states)):
            k = None if key is None else jax.random.fold_in(key, L + i)
            ys, fin = run_layer(layer, p, h, lengths, s, batched, k)  # (T, B, O_i)
            if key is not None and dropout:
                ys = _reg.dropout_time_major(jax.random.fold_in(key, i), ys, dropout)
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

    name = f"stack[{', '.join(l.name for l in layers)}]" + (f"/{skip}" if skip else "")
    return _layer(
        init, run, layers[-1].output_size, initial_state, step, name, reads_backward=layers[-1].reads_backward
    )


def _online(layer: Layer) -> Layer:
    if not isinstance(layer, Layer):
        raise ValueError(f"layer: expected an rnn_jax Layer, got {type(layer).__name__}")
    if layer.step is None:
        raise ValueError(f"layer: {layer.name} needs future inputs and cannot run online (no step)")
    return layer


def stream_init(layer: Layer, batch_shape: tuple = (), dtype=jnp.float32):
    """The state before the first timestep of online use: zeros with leaves ``(*batch_shape, ...)``.

    Args:
      layer: a layer that can run online (``layer.step`` is not None: not reversed, not bidirectional).
      batch_shape: the leading batch dimensions.
      dtype: the state's floating dtype.

    Returns:
      The zero state, with leaves ``(*batch_shape, ...)``.

    Examples:
      >>> layer = rnn_jax.rnn(rnn_jax.lstm(4))
      >>> rnn_jax.stream_init(layer, (3,)).c.shape
      (3, 4)
    """
    _online(layer)
    try:
        batch_shape = tuple(_checks.check_int(d, "batch_shape") for d in batch_shape)
    except (ValueError, TypeError):
        raise ValueError(f"batch_shape: expected a tuple of positive ints, got {batch_shape!r}") from None
    return jax.tree.map(lambda a: jnp.zeros(batch_shape + a.shape, a.dtype), layer.initial_state(dtype))


def stream_step(layer: Layer, params, state, x: jax.Array):
    """Feed ONE timestep ``x (*batch, I)``; returns ``(state, y (*batch, O))``, equal to the offline
    ``apply``'s output at that step.

    Args:
      layer: a layer that can run online.
      params: its params.
      state: the state before this step (:func:`stream_init`, or the last call's), leaves ``(*batch, ...)``.
      x: ``(*batch, I)``, one timestep.

    Returns:
      ``(state, y)``: the state after the step and the output ``(*batch, O)``.

    Examples:
      >>> layer = rnn_jax.rnn(rnn_jax.gru(4))
      >>> p = layer.init(jax.random.key(0), 2)
      >>> state = rnn_jax.stream_init(layer, (3,))
      >>> state, y = rnn_jax.stream_step(layer, p, state, jnp.ones((3, 2)))
      >>> y.shape
      (3, 4)
    """
    _online(layer)
    shape = getattr(x, "shape", None)
    if shape is None or len(shape) < 1:
        raise ValueError(
            f"x: expected shape (*batch, I), got {_checks.shape_str(shape) if shape is not None else type(x).__name__}"
        )
    batch = tuple(shape[:-1])
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise ValueError(f"x: expected a floating dtype, got {x.dtype}")
    try:
        from rnn_jax.cells import input_size_of

        I = input_size_of(layer.init, params)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError):
        I = None  # malformed params: check_params names what is wrong below
    if I is not None and shape[-1] != I:  # the input is what is wrong, not the params it does not fit
        raise ValueError(
            f"x: expected shape (*batch, {I}) (feature size {I}, from params), got {_checks.shape_str(shape)}"
        )
    _checks.check_params(_checks.expected_params(layer.init, shape[-1], x.dtype), params)
    _checks.check_same_dtype(x, params, "x")
    _checks.check_batch_state(state, layer.initial_state(x.dtype), batch, x.dtype, "state")
    step = _checks.require(layer.step, f"{layer.name}: no step")
    new, y = step(params, _ops.flatten_batch(state, batch), x.reshape((-1, shape[-1])))
    return _ops.unflatten_batch(new, batch), y.reshape(batch + y.shape[1:])
