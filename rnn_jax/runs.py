"""How a layer runs its cell over time: one value, chosen once, passed to :func:`rnn_jax.rnn` as ``how``.

=================================  ==========================================================================
``Scan(unroll=1, remat=False)``    one ``lax.scan`` of the cell's ``step`` vmapped over the batch; autodiff
                                   BPTT. Every cell; the only one that takes ``remat``, recurrent dropout
                                   and zoneout. ``pack=True``: skip finished rows (:func:`rnn_jax.fused.run_step`).
``Fused(unroll=1, hoist="auto",    the cell's kernel (``Cell.fused``: Elman, LSTM, GRU, IndRNN, the orthogonal
pack=True)``                       cell): hand-written derivatives, one weight-gradient product per sequence.
                                   The default of every cell that has one.
``Linear(solver="auto")``          a diagonal linear recurrence (``Cell.linear``: minGRU, minLSTM, LRU) solved
                                   for all steps at once (:func:`rnn_jax.parallel.linear_batch`).
``Newton(diagonal=False, tol=None, any cell evaluated in parallel over time by Newton's method (DEER,
max_iters=100)``                   :func:`rnn_jax.parallel.deer`), the scan's result where it does not converge.
=================================  ==========================================================================

Each value checks itself against the cell when the layer is built (``check(cell)``: a clear error for a
way the cell cannot run) and runs a time-major batch (``run``). All give the same values and gradients
(tested to 1e-10 in float64); they differ in speed, memory and what they support.

Examples:
  >>> layer = rnn_jax.rnn(rnn_jax.gru(8), how=rnn_jax.Scan(unroll=4))
  >>> layer.how
  Scan(unroll=4, remat=False, pack=False)
  >>> rnn_jax.rnn(rnn_jax.gru(8)).how                                  # the cell's kernel, by default
  Fused(unroll=1, hoist='auto', pack=True)
  >>> rnn_jax.rnn(rnn_jax.gru(8), how=rnn_jax.Linear())
  Traceback (most recent call last):
  ...
  ValueError: how=Linear(): cell 'gru' declares no linear recurrence (Cell.linear; min_gru, min_lstm and lru ...
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Union

import jax

from rnn_jax import _checks, _ops
from rnn_jax import fused as _fused
from rnn_jax import parallel as _parallel
from rnn_jax.cells import Cell, prepared
from rnn_jax.unroll import check_knobs, scan

__all__ = ["Scan", "Fused", "Linear", "Newton", "How", "default", "from_keywords", "resolve"]


@dataclasses.dataclass(frozen=True)
class Scan:
    """One ``lax.scan`` over time whose step is the cell vmapped over the batch (:func:`rnn_jax.unroll.scan`).

    Attributes:
      unroll: the ``lax.scan`` unroll factor.
      remat: False, True or a chunk size: rematerialise the steps in the backward pass.
      pack: run batched calls with lengths as packed steps (finished rows skipped, same values) with a
        backward loop of the step's own VJP (:func:`rnn_jax.fused.run_step`); reverse mode only.

    Examples:
      >>> rnn_jax.Scan(remat=16).check(rnn_jax.lstm(4))
      Scan(unroll=1, remat=16, pack=False)
    """

    unroll: int = 1
    remat: Union[bool, int] = False
    pack: bool = False

    def check(self, cell: Cell) -> Scan:
        """This value, its options checked (a ValueError naming the option otherwise)."""
        unroll, remat = check_knobs(self.unroll, self.remat)
        if self.pack not in (True, False):
            raise ValueError(f"how=Scan(pack={self.pack!r}): expected True or False")
        if self.pack and remat:
            raise ValueError("how=Scan(pack=True, remat=...): packed steps keep every step's state; choose one")
        return dataclasses.replace(self, unroll=unroll, remat=remat)

    def run(self, cell, params, xs, lengths, state, reverse, batched, **regularisers):
        """Time-major ``xs (T, B, I)`` -> ``(ys (T, B, O), final)``; ``regularisers``: the scan's
        ``hidden_mask`` and ``zoneout`` (:mod:`rnn_jax.regularization`)."""
        if not (self.pack and batched and lengths is not None) or regularisers:
            return scan(
                cell, params, xs, lengths, state, reverse=reverse, unroll=self.unroll, remat=self.remat, **regularisers
            )

        def packed(params, xs, state, mask):
            return _fused.run_step(cell, prepared(cell, params), xs, state, mask, unroll=self.unroll)

        return _loop(cell, packed, params, xs, lengths, state, reverse)


@dataclasses.dataclass(frozen=True)
class Fused:
    """The cell's kernel (``Cell.fused``, :mod:`rnn_jax.fused`): hand-written derivatives, each weight gradient
    one product over the whole batch; packed steps for padded batches.

    Attributes:
      unroll: the loop's unroll factor.
      hoist: take the input product of all steps before the loop: True, False or ``"auto"`` (the kernels
        decide from measurements).
      pack: skip the rows whose sequences have ended, in batches of 16 or more with lengths (same values).

    Examples:
      >>> rnn_jax.rnn(rnn_jax.elman(4), how=rnn_jax.Fused(pack=False)).how.pack
      False
    """

    unroll: int = 1
    hoist: Union[bool, str] = "auto"
    pack: bool = True

    def check(self, cell: Cell) -> Fused:
        """This value, checked against ``cell`` (which must have a kernel)."""
        if cell.fused is None:
            raise ValueError(f"fused=True: cell {cell.name!r} has no fused recurrence (Elman, LSTM and GRU have)")
        if self.hoist not in (True, False, "auto"):
            raise ValueError(f"hoist_input: expected True, False or 'auto', got {self.hoist!r}")
        if self.pack not in (True, False):
            raise ValueError(f"how=Fused(pack={self.pack!r}): expected True or False")
        return dataclasses.replace(self, unroll=check_knobs(self.unroll, False)[0])

    def run(self, cell, params, xs, lengths, state, reverse, batched, static=None):
        """Time-major ``xs (T, B, I)`` -> ``(ys (T, B, O), final)``; ``static (B, C)``: inputs every step
        reads after ``x_t`` (a decoder's context), whose input product the kernel takes once per sequence."""
        # pack=False reaches a kernel that takes ``pack``; one of one's own without it runs as it is
        # (packing skips padded steps: the values are the same either way)
        fused = _checks.require(cell.fused, f"{cell.name}: no kernel")
        options = {} if self.pack or not _checks.takes_keyword(fused, "pack") else {"pack": None}
        rule = "vjp" if batched else "jvp"

        def kernel(params, xs, state, mask):
            out = fused(
                params, xs, state, mask, unroll=self.unroll, hoist=self.hoist, rule=rule, static=static, **options
            )
            _check_kernel_outputs(cell, xs, state, *out)
            return out

        return _loop(cell, kernel, params, xs, lengths, state, reverse)


@dataclasses.dataclass(frozen=True)
class Linear:
    """A diagonal linear recurrence ``h_t = a_t * h_{t-1} + b_t`` (``Cell.linear``) solved for all steps at once.

    Attributes:
      solver: ``"associative"`` (``lax.associative_scan``, O(log T) depth), ``"scan"`` (a sequential scan of
        the elementwise update) or ``"auto"``: ``"scan"`` on CPU, where it measured faster, else
        ``"associative"`` (:func:`rnn_jax.parallel.linear_solver`).

    Examples:
      >>> rnn_jax.rnn(rnn_jax.min_gru(4), how=rnn_jax.Linear("associative")).how
      Linear(solver='associative')
    """

    solver: str = "auto"

    def check(self, cell: Cell) -> Linear:
        """This value, checked against ``cell`` (which must declare ``Cell.linear``); ``"auto"`` resolved."""
        if cell.linear is None:
            raise ValueError(
                f"how=Linear(): cell {cell.name!r} declares no linear recurrence (Cell.linear; min_gru, "
                f"min_lstm and lru do); write how=rnn_jax.Newton() to solve any cell in parallel, or "
                f"leave how out"
            )
        return Linear(_parallel.linear_solver(self.solver))

    def run(self, cell, params, xs, lengths, state, reverse, batched):
        """Time-major ``xs (T, B, I)`` -> ``(ys (T, B, O), final)``."""
        return _parallel.linear_batch(cell, params, xs, lengths, state, reverse=reverse, solver=self.solver)


@dataclasses.dataclass(frozen=True)
class Newton:
    """Any cell evaluated in parallel over time by Newton's method on the whole sequence (DEER,
    :func:`rnn_jax.parallel.deer`), the scan's result where it does not converge.

    Attributes:
      diagonal: take only the diagonal of each step's Jacobian (quasi-Newton: cheaper, more iterations).
      tol: the stopping rule ``max |S_new - S| <= tol`` (None: 1e-5 in float32, 1e-10 in float64).
      max_iters: the most iterations.

    Examples:
      >>> layer = rnn_jax.rnn(rnn_jax.gru(4), how=rnn_jax.Newton(tol=1e-6))
      >>> info = layer.parallel_info(layer.init(jax.random.key(0), 2), jnp.ones((3, 20, 2)))
      >>> bool(info.converged.all())
      True
    """

    diagonal: bool = False
    tol: Optional[float] = None
    max_iters: int = 100

    @property
    def method(self) -> str:
        return "diagonal" if self.diagonal else "newton"

    def check(self, cell: Cell) -> Newton:
        """This value, its stopping rule checked."""
        tol = None if self.tol is None else _checks.check_real(self.tol, "tol", minimum=0)
        return Newton(bool(self.diagonal), tol, _checks.check_int(self.max_iters, "max_iters", want="an int >= 1"))

    def info(self, cell, params, xs, lengths=None, initial_state=None, *, reverse=False):
        """What the solve does on a batch-first ``xs (*batch, T, I)``: :class:`rnn_jax.parallel.DeerInfo`
        (a layer's ``parallel_info``)."""
        return _parallel.deer(
            cell,
            params,
            xs,
            lengths,
            initial_state,
            reverse=reverse,
            method=self.method,
            max_iters=self.max_iters,
            tol=self.tol,
        )[2]

    def run(self, cell, params, xs, lengths, state, reverse, batched):
        """Time-major ``xs (T, B, I)`` -> ``(ys (T, B, O), final)``."""
        return _parallel.solve_batch(
            cell,
            params,
            xs,
            lengths,
            state,
            reverse=reverse,
            method=self.method,
            max_iters=self.max_iters,
            tol=self.tol,
        )[:2]


How = Union[Scan, Fused, Linear, Newton]


def _loop(cell, body, params, xs, lengths, state, reverse):
    """A kernel's or packed step's call on a time-major batch: the start state, the weights marked as varying
    inside ``shard_map`` (so autodiff sums their per-device gradients: the custom rules return those), the
    valid prefix reversed for ``reverse``, the mask by length; ``body(params, xs, state, mask)``."""
    state = _ops.start_state(cell.initial_state, xs, state)
    params = _ops.varying_like(params, xs)
    xs = _ops.flip_valid(xs, lengths) if reverse else xs
    ys, final = body(params, xs, state, _ops.time_mask(lengths, xs.shape[0]))
    return (_ops.flip_valid(ys, lengths) if reverse else ys), final


def _check_kernel_outputs(cell, xs, state, ys, final) -> None:
    """A cell's ``fused`` must return ``ys (T, B, output_size)`` and a final state shaped as the state it
    was given: a kernel of one's own that does not is refused, naming what it returned."""
    want = xs.shape[:2] + (cell.output_size,)
    if getattr(ys, "shape", None) != want:
        got = _checks.shape_str(ys.shape) if hasattr(ys, "shape") else type(ys).__name__
        raise ValueError(
            f"{cell.name}: its fused kernel returned outputs of shape {got}, expected "
            f"(T, B, output_size) = {_checks.shape_str(want)}"
        )

    def shapes(t):
        return jax.tree.map(lambda a: tuple(jax.numpy.shape(a)), t)

    if jax.tree.structure(final) != jax.tree.structure(state) or shapes(final) != shapes(state):  # type: ignore[operator]
        raise ValueError(
            f"{cell.name}: its fused kernel returned a final state {shapes(final)}, expected the "
            f"structure and shapes of the state it was given, {shapes(state)}"
        )


def default(cell: Cell) -> How:
    """The way a cell runs when ``how`` is left out: its kernel when it has one, else the scan.

    Args:
      cell: the cell.

    Returns:
      ``Fused()`` or ``Scan()``.

    Examples:
      >>> rnn_jax.runs.default(rnn_jax.lstm(4)), rnn_jax.runs.default(rnn_jax.jordan(4, 2))
      (Fused(unroll=1, hoist='auto', pack=True), Scan(unroll=1, remat=False, pack=False))
    """
    return Fused() if cell.fused is not None else Scan()


_KEYWORD_DEFAULTS = dict(
    unroll=1,
    remat=False,
    hoist_input="auto",
    fused=None,
    parallel=None,
    tol=None,
    max_iters=100,
    linear_solver="auto",
    pack=True,
)


def from_keywords(cell: Cell, zoneout: bool = False, **kw: Any) -> How:
    """The ``how`` that :func:`rnn_jax.rnn`'s keyword options (``unroll``, ``remat``, ``hoist_input``, ``fused``,
    ``parallel``, ``tol``, ``max_iters``, ``linear_solver``, ``pack``) spell, checked as one: the same layer
    as passing that value. ``zoneout``: the layer has zoneout, which runs inside the scan.

    Args:
      cell: the cell.
      zoneout: whether the layer has zoneout.
      **kw: the keyword options given.

    Returns:
      A :class:`Scan`, :class:`Fused`, :class:`Linear` or :class:`Newton`.

    Examples:
      >>> rnn_jax.runs.from_keywords(rnn_jax.min_gru(4), parallel="linear", linear_solver="scan")
      Linear(solver='scan')
      >>> rnn_jax.runs.from_keywords(rnn_jax.gru(4), unroll=2, fused=False)
      Scan(unroll=2, remat=False, pack=False)
    """
    unknown = sorted(set(kw) - set(_KEYWORD_DEFAULTS))
    if unknown:
        raise TypeError(f"rnn() got unexpected keyword arguments {unknown}")
    o = {**_KEYWORD_DEFAULTS, **kw}
    fused, parallel, pack = o["fused"], o["parallel"], o["pack"]
    unroll, remat = check_knobs(o["unroll"], o["remat"])
    if fused not in (None, True, False):
        raise ValueError(f"fused: expected None, True or False, got {fused!r}")
    if pack not in (True, False, "always"):
        raise ValueError(f"pack: expected True, False or 'always', got {pack!r}")
    if parallel is not None and parallel not in _parallel.METHODS + ("linear",):
        raise ValueError(f"parallel: expected None or one of {_parallel.METHODS + ('linear',)}, got {parallel!r}")
    if (o["tol"] is not None or o["max_iters"] != 100) and parallel not in _parallel.METHODS:
        raise ValueError(
            f"tol, max_iters: Newton's stopping rule, for parallel='newton' or 'diagonal' only (parallel={parallel!r})"
        )
    if o["linear_solver"] != "auto" and parallel != "linear":
        _parallel.linear_solver(o["linear_solver"])
        raise ValueError(
            f"linear_solver={o['linear_solver']!r}: the solver of parallel='linear' only (parallel="
            f"{parallel!r}); drop it, or pass parallel='linear'"
        )
    if parallel and fused:
        raise ValueError("fused=True with parallel: choose one evaluation of the recurrence")
    if parallel and remat:
        raise ValueError(f"parallel={parallel!r} with remat: the parallel form keeps every step's coefficients")
    if pack == "always" and remat:
        raise ValueError("pack='always' with remat: packed steps keep every step's state; choose one")
    if fused and remat:
        raise ValueError(
            "fused=True with remat: the fused recurrence keeps every step's gates; use remat with fused=False"
        )
    if parallel == "linear":
        if cell.linear is None:
            raise ValueError(
                f"parallel='linear': cell {cell.name!r} declares no linear recurrence (Cell.linear; "
                f"min_gru, min_lstm and lru do); 'newton' or 'diagonal' solve any cell"
            )
        return Linear(o["linear_solver"])
    if parallel:
        return Newton(parallel == "diagonal", o["tol"], o["max_iters"])
    if fused or (fused is None and cell.fused is not None and not remat and not zoneout):
        return Fused(unroll, o["hoist_input"], bool(pack))
    if o["hoist_input"] not in (True, False, "auto"):
        raise ValueError(f"hoist_input: expected True, False or 'auto', got {o['hoist_input']!r}")
    return Scan(unroll, remat, pack == "always")


def resolve(cell: Cell, how: Optional[How], options: dict, inside_step: bool = False, zoneout: bool = False) -> How:
    """The way :func:`rnn_jax.rnn` runs ``cell``: ``how``, or the value its keyword ``options`` spell (not both),
    checked against the cell. ``inside_step``: the layer has recurrent dropout or zoneout, which act inside
    the step and so need the scan (an explicit other way is refused; the default kernel stays for calls
    without them); ``zoneout``: it has zoneout, which every call applies.

    Args:
      cell: the cell.
      how: a :data:`How`, or None.
      options: ``rnn``'s keyword options (:func:`from_keywords`).
      inside_step: whether the layer regularises inside the step.
      zoneout: whether the layer has zoneout.

    Returns:
      The checked :data:`How`.

    Examples:
      >>> rnn_jax.runs.resolve(rnn_jax.gru(4), None, {"unroll": 2})
      Fused(unroll=2, hoist='auto', pack=True)
      >>> rnn_jax.runs.resolve(rnn_jax.gru(4), None, {}, inside_step=True, zoneout=True)
      Scan(unroll=1, remat=False, pack=False)
    """
    if how is not None and options:
        raise ValueError(
            f"how={how!r} with {sorted(options)}: give the way of running once, as how "
            f"(e.g. how=rnn_jax.Scan(unroll=4)), or as keywords, not both"
        )
    if how is not None and not isinstance(how, (Scan, Fused, Linear, Newton)):
        raise ValueError(f"how: expected rnn_jax.Scan(...), Fused(...), Linear(...) or Newton(...), got {how!r}")
    chosen = how is not None or bool(options.get("fused") or options.get("parallel"))
    how = (from_keywords(cell, zoneout, **options) if how is None else how).check(cell)
    if inside_step and chosen and not isinstance(how, Scan):
        raise ValueError(
            f"recurrent_dropout, zoneout: act inside the step, with the generic scan only "
            f"(how={how!r}); write how=rnn_jax.Scan(), or leave how out"
        )
    return how
