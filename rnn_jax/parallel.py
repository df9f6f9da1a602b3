"""Parallel-in-time evaluation of a nonlinear RNN: Newton iterations over the whole sequence (DEER).

A recurrence ``s_t = f(s_{t-1}, x_t)`` is a system of ``T`` equations in the unknown states
``S = (s_0, ..., s_{T-1})``. Lim et al. (ICLR 2024, "DEER") solve it with Newton's method: linearise
every step around the current guess,

.. math::  s_t \\approx f(\\bar s_{t-1}, x_t) + J_t (s_{t-1} - \\bar s_{t-1}),
           \\qquad J_t = \\partial f / \\partial s \\, (\\bar s_{t-1}, x_t),

and solve the resulting LINEAR recurrence ``s_t = J_t s_{t-1} + b_t`` for all ``t`` at once with
``jax.lax.associative_scan`` (depth ``log T``; the pairs ``(A, b)`` compose as
``(A_2 A_1, A_2 b_1 + b_2)``). Each iteration is parallel over time; after ``k`` iterations at least
the first ``k`` states are exact, so Newton converges in at most ``T`` iterations and usually in a few.

``method="newton"`` uses the full ``D x D`` Jacobians (``D`` = size of the flattened state), costing
``O(T D^3)`` work per iteration. ``method="diagonal"`` keeps only their diagonals (the quasi-Newton
variant of Gonzalez et al., NeurIPS 2024): ``O(T D)`` memory and scan work per iteration, more
iterations; reading the diagonal of a dense cell's Jacobian still costs ``O(T D^2)`` (the Jacobian is
formed, then its diagonal kept). A cell that declares a diagonal Jacobian (``Cell.diagonal``: IndRNN;
or ``Cell.linear``: minGRU, minLSTM) gets it exactly from one forward-mode product per step, O(T D):
both methods then take that exact Newton step, and so does the backward pass.

Gradients do not differentiate through the iterations: at the solution, the adjoint of the recurrence
``lambda_t = dE/ds_t + J_{t+1}^T lambda_{t+1}`` is itself a linear recurrence, solved in parallel by
the same associative scan (full Jacobians, exact), and the parameter gradients are one ``vjp`` of the
step vmapped over all timesteps (implicit differentiation, as in the DEER paper).

If the iterations have not converged after ``max_iters`` (``max |S_new - S| > tol``), the sequential
``lax.scan`` result is returned instead (``fallback=True``), so the answer is always the RNN's.
On a CPU the sequential scan is usually faster; the parallel form pays off on accelerators with long
sequences and small states (see benchmarks/README.md).
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Optional

import jax
import jax.flatten_util
import jax.numpy as jnp
from jax import lax

from rnn_jax import _checks, _ops
from rnn_jax._ops import shift_down
from rnn_jax.cells import Cell, prepared
from rnn_jax.unroll import check_inputs

__all__ = ["deer", "linear_recurrence", "linear_batch", "linear_solver", "DeerInfo", "METHODS", "LINEAR_SOLVERS"]

METHODS = ("newton", "diagonal")


class DeerInfo(NamedTuple):
    """What the Newton solve did: ``iterations`` run, ``converged`` (False: the sequential result was
    returned), ``residual`` = the last ``max |S_new - S|``.

    Attributes:
      iterations: Newton iterations run, ``batch``-shaped ints.
      converged: ``batch``-shaped bools.
      residual: the last update's ``max |S_new - S|``, ``batch``-shaped.

    Examples:
      >>> cell = rnn_jax.elman(4)
      >>> p = cell.init(jax.random.key(0), 2)
      >>> _, _, info = rnn_jax.parallel.deer(cell, p, jnp.ones((3, 20, 2)))
      >>> info.converged.tolist(), bool(jnp.all(info.iterations <= 20))
      ([True, True, True], True)
    """

    iterations: jax.Array
    converged: jax.Array
    residual: jax.Array


def _diagonal_combine(e1, e2):
    """Two steps ``s -> a1 s + b1`` then ``s -> a2 s + b2`` as one: ``s -> a2 a1 s + (a2 b1 + b2)``."""
    (a1, b1), (a2, b2) = e1, e2
    return a2 * a1, a2 * b1 + b2


def _diagonal_recurrence(a, b, s0):
    """All ``s_t = a_t * s_{t-1} + b_t`` along the leading axis by ``lax.associative_scan`` (any trailing shape)."""
    return lax.associative_scan(_diagonal_combine, (a, b.at[0].add(a[0] * s0)))[1]


def linear_recurrence(A, b, s0):
    """All ``s_t = A_t s_{t-1} + b_t`` (``t = 0..T-1``, ``s_{-1} = s0``) by ``lax.associative_scan``.

    ``A``: ``(T, D, D)`` matrices or ``(T, D)`` diagonals; ``b``: ``(T, D)``; returns ``(T, D)``.

    Args:
      A: ``(T, D, D)`` matrices or ``(T, D)`` diagonals.
      b: ``(T, D)``.
      s0: ``(D,)``.

    Returns:
      ``(T, D)``: every ``s_t``.

    Examples:
      >>> s = rnn_jax.parallel.linear_recurrence(jnp.full((4, 1), 0.5), jnp.ones((4, 1)), jnp.zeros(1))
      >>> s[:, 0].tolist()                                   # 1, 1.5, 1.75, 1.875
      [1.0, 1.5, 1.75, 1.875]
    """
    if A.ndim == 2:
        return _diagonal_recurrence(A, b, s0)

    def combine(e1, e2):
        (A1, b1), (A2, b2) = e1, e2
        return A2 @ A1, jnp.einsum("...ij,...j->...i", A2, b1) + b2

    return lax.associative_scan(combine, (A, b.at[0].add(A[0] @ s0)))[1]


LINEAR_SOLVERS = ("associative", "scan")


def linear_solver(solver: str = "auto") -> str:
    """The solver of ``h_t = a_t * h_{t-1} + b_t`` that ``rnn(cell, parallel="linear")`` uses: the one place
    that reads the backend. ``"auto"``: ``lax.scan`` of the elementwise update on CPU (measured faster
    there at every length, ``python -m benchmarks.parallel_forms``), ``lax.associative_scan`` elsewhere.

    Args:
      solver: ``"auto"``, ``"associative"`` or ``"scan"``.

    Returns:
      ``"associative"`` or ``"scan"``.

    Examples:
      >>> rnn_jax.parallel.linear_solver("associative")
      'associative'
      >>> rnn_jax.parallel.linear_solver() == ("scan" if jax.default_backend() == "cpu" else "associative")
      True
    """
    if solver == "auto":
        return "scan" if jax.default_backend() == "cpu" else "associative"
    if solver not in LINEAR_SOLVERS:
        raise ValueError(f"solver: expected 'auto' or one of {LINEAR_SOLVERS}, got {solver!r}")
    return solver


def linear_batch(cell: Cell, params, xs, lengths, state, *, reverse: bool = False, solver: str = "associative"):
    """A cell's diagonal linear recurrence (``Cell.linear``) over a time-major batch: every
    ``(a_t, b_t)`` from the inputs at once, then all ``h_t = a_t * h_{t-1} + b_t`` (``solver``:
    ``"associative"``, ``lax.associative_scan`` in O(log T) parallel steps; ``"scan"``, a sequential
    ``lax.scan`` of the elementwise update alone), then every output from ``step(params, h_{t-1}, x_t)``
    at once: all the cell's products leave the loop. Unchecked: ``xs (T, B, I)``, ``lengths (B,) | None``,
    ``state (B, H) | None``; returns ``(ys (T, B, O), final (B, H))`` equal to a loop of ``cell.step``:
    past a length, ``a = 1`` and ``b = 0`` keep the state, and outputs are zero.

    Args:
      cell: a :class:`rnn_jax.Cell` with ``linear``.
      params: its params.
      xs: ``(T, B, I)``, time-major.
      lengths: ``(B,)`` ints or None.
      state: ``(B, H)`` or None (the cell's initial state).
      reverse: run from the last valid step to the first.
      solver: ``"associative"`` or ``"scan"``.

    Returns:
      ``(ys (T, B, O), final (B, H))``.

    Examples:
      >>> cell = rnn_jax.min_gru(4)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> xs = jax.random.normal(jax.random.key(1), (9, 2, 3))
      >>> ys, h = rnn_jax.parallel.linear_batch(cell, p, xs, jnp.array([9, 5]), None)
      >>> ref, _ = rnn_jax.unroll(cell, p, xs.swapaxes(0, 1), jnp.array([9, 5]))   # the sequential loop
      >>> bool(jnp.allclose(ys.swapaxes(0, 1), ref, atol=1e-6))
      True
    """
    T, B = xs.shape[:2]
    state = _ops.start_state(cell.initial_state, xs, state)
    if T == 0:
        return jnp.zeros((0, B, cell.output_size), xs.dtype), state
    params = prepared(cell, params)
    if reverse:
        xs = _ops.flip_valid(xs, lengths)
    both = lambda f: jax.vmap(jax.vmap(f, (None, 0, 0)), (None, 0, 0))  # noqa: E731 - over (T, B)
    linear = _checks.require(cell.linear, f"{cell.name}: no linear form (Cell.linear)")
    a, b = both(lambda p, _, x: linear(p, x))(params, xs, xs)  # (T, B, H) each
    mask = _ops.time_mask(lengths, T)
    # the masking rule in the coefficients: past a length a = 1, b = 0 keep the state
    a, b = _ops.select(mask, a, jnp.ones_like(a)), _ops.zero_invalid(mask, b)
    if solver == "associative":
        hs = _diagonal_recurrence(a, b, state)  # (T, B, H)
    else:
        hs = lax.scan(lambda h, ab: (ab[0] * h + ab[1],) * 2, state, (a, b))[1]
    prev = jnp.concatenate([state[None], hs[:-1]])  # h_{t-1}
    ys = both(lambda p, h, x: cell.step(p, h, x)[1])(params, prev, xs)  # (T, B, O)
    ys = _ops.zero_invalid(mask, ys)
    return (_ops.flip_valid(ys, lengths) if reverse else ys), hs[-1]


def _flat_step(cell, params, unravel):
    """``f(s_prev (D,), (x, valid)) -> s (D,)`` on the flattened state; invalid steps keep ``s_prev``."""
    params = prepared(cell, params)  # once, not at every step

    def f(s, inp):
        x, valid = inp
        new = jax.flatten_util.ravel_pytree(cell.step(params, unravel(s), x)[0])[0]
        return _ops.select(valid, new, s)

    return f


def _jacobians(f, S_prev, inputs, diagonal, exact):
    """Each step's state Jacobian ``(T, D, D)``, or its diagonal ``(T, D)`` with ``diagonal``: for a cell
    whose Jacobian IS diagonal (``exact``: ``Cell.diagonal`` or ``Cell.linear``) one forward-mode product
    with a vector of ones per step gives it (O(T D)); otherwise the dense Jacobian's diagonal."""
    if diagonal and exact:
        return jax.vmap(lambda s, inp: jax.jvp(lambda s: f(s, inp), (s,), (jnp.ones_like(s),))[1])(S_prev, inputs)
    J = jax.vmap(jax.jacfwd(f), in_axes=(0, 0))(S_prev, inputs)  # (T, D, D)
    return jnp.diagonal(J, axis1=1, axis2=2) if diagonal else J


def _newton(f, s0, inputs, T, method, max_iters, tol, exact):
    """Newton (or diagonal quasi-Newton) solve of S = F(S); returns (S, iterations, residual). A cell with
    a diagonal Jacobian (``exact``) takes the diagonal form for both methods: it IS its Newton step."""
    diagonal = method == "diagonal" or exact
    F = jax.vmap(f)

    def cond(state):
        _, it, res = state
        return (it < max_iters) & (res > tol)

    def body(state):
        S, it, _ = state
        S_prev = shift_down(S, s0)
        A = _jacobians(f, S_prev, inputs, diagonal, exact)
        Ax = A * S_prev if diagonal else jnp.einsum("tij,tj->ti", A, S_prev)
        b = F(S_prev, inputs) - Ax
        S_new = linear_recurrence(A, b, s0)
        S_new = jnp.where(jnp.isfinite(S_new), S_new, S)  # a diverging linearisation does not poison S
        return S_new, it + 1, jnp.max(jnp.abs(S_new - S))

    S0 = jnp.zeros((T,) + s0.shape, s0.dtype)
    inf = jnp.array(jnp.inf, jnp.real(S0).dtype)  # the residual is real for a complex state too
    S, it, _ = lax.while_loop(cond, body, (S0, jnp.array(0, jnp.int32), inf))
    # Converged means S is the recurrence's solution: S = F(S) checked once more, every step. (The last
    # update's size is not enough: a non-finite linearisation is replaced by the previous iterate above,
    # so a NaN input or an overflowing state would look converged on a wrong, finite answer.)
    res = jnp.max(jnp.abs(F(shift_down(S, s0), inputs) - S))
    return S, it, jnp.where(jnp.isnan(res), jnp.inf, res)


def _sequential(f, s0, inputs):
    return lax.scan(lambda s, inp: (f(s, inp),) * 2, s0, inputs)[1]


@partial(jax.custom_vjp, nondiff_argnums=(0, 4, 5, 6, 7, 8))
def _solve(make_f, params, s0, inputs, method, max_iters, tol, fallback, exact):
    return _solve_fwd(make_f, params, s0, inputs, method, max_iters, tol, fallback, exact)[0]


def _solve_fwd(make_f, params, s0, inputs, method, max_iters, tol, fallback, exact):
    f = make_f(params)
    T = inputs[0].shape[0]
    if T == 0:  # nothing to solve
        zero = jnp.zeros((), jnp.real(s0).dtype)
        return (jnp.zeros((0,) + s0.shape, s0.dtype), DeerInfo(jnp.array(0, jnp.int32), jnp.array(True), zero)), (
            params,
            s0,
            inputs,
            jnp.zeros((0,) + s0.shape, s0.dtype),
        )
    S, it, res = _newton(f, s0, inputs, T, method, max_iters, tol, exact)
    converged = res <= tol
    if fallback:
        S = lax.cond(converged, lambda: S, lambda: _sequential(f, s0, inputs))
    return (S, DeerInfo(it, converged, res)), (params, s0, inputs, S)


def _solve_bwd(make_f, method, max_iters, tol, fallback, exact, res, cts):
    params, s0, inputs, S = res
    dS = cts[0]
    S_prev = shift_down(S, s0)
    f_of = lambda p, s, inp: make_f(p)(s, inp)  # noqa: E731
    # adjoint, reversed in time: lam_t = dS_t + J_{t+1}^T lam_{t+1} (diagonal J: (T, D), its own transpose)
    J = _jacobians(make_f(params), S_prev, inputs, exact, exact)  # (T, D, D), or (T, D) when exact
    JT_next = jnp.concatenate([J[1:], jnp.zeros_like(J[:1])], 0)
    JT_next = JT_next if exact else jnp.swapaxes(JT_next, 1, 2)
    lam = linear_recurrence(JT_next[::-1], dS[::-1], jnp.zeros_like(s0))[::-1]
    _, vjp = jax.vjp(lambda p, s, inp: jax.vmap(f_of, in_axes=(None, 0, 0))(p, s, inp), params, S_prev, inputs)
    dparams, dS_prev, dinputs = vjp(lam)
    return dparams, dS_prev[0], dinputs


_solve.defvjp(_solve_fwd, _solve_bwd)


def _deer_one(cell, params, xs, length, state0, reverse, method, max_iters, tol, fallback):
    """One sequence, time-major inputs ``xs (T, I)``, ``length`` a scalar."""
    T = xs.shape[0]
    s0, unravel = jax.flatten_util.ravel_pytree(state0)
    if reverse:
        xs = _ops.flip_valid(xs[:, None], length[None])[:, 0]
    valid = _ops.valid_steps(length, T)

    def make_f(p):
        return _flat_step(cell, p, unravel)

    exact = cell.diagonal or cell.linear is not None
    S, info = _solve(make_f, params, s0, (xs, valid), method, max_iters, tol, fallback, exact)
    S_prev = shift_down(S, s0)
    ready = prepared(cell, params)
    ys = jax.vmap(lambda s, x: cell.step(ready, unravel(s), x)[1])(S_prev, xs)
    ys = _ops.zero_invalid(valid, ys)
    if reverse:
        ys = _ops.flip_valid(ys[:, None], length[None])[:, 0]
    return ys, (unravel(S[-1]) if T else state0), info


def solve_batch(
    cell: Cell, params, xs, lengths, state, *, reverse=False, method="newton", max_iters=100, tol=None, fallback=True
):
    """Time-major core, unchecked: ``xs (T, B, I)``; returns ``(ys (T, B, O), final (B, ...), info (B,))``.
    Every sequence is solved on its own (Newton's iterations stop per sequence)."""
    T, B = xs.shape[:2]
    if tol is None:
        tol = 1e-10 if xs.dtype == jnp.float64 else 1e-5
    state = _ops.start_state(cell.initial_state, xs, state)
    lengths = jnp.full((B,), T, jnp.int32) if lengths is None else lengths
    one = partial(
        _deer_one, cell, params, reverse=reverse, method=method, max_iters=max_iters, tol=float(tol), fallback=fallback
    )
    if _checks._CHECKIFY.get():  # checkify cannot transform a batched while loop: one sequence after another
        ys, final, info = lax.map(lambda a: one(*a), (jnp.swapaxes(xs, 0, 1), lengths, state))
        return jnp.swapaxes(ys, 0, 1), final, info
    ys, final, info = jax.vmap(lambda x, L, s: one(x, L, s), in_axes=(1, 0, 0), out_axes=(1, 0, 0))(xs, lengths, state)
    return ys, final, info


def deer(
    cell: Cell,
    params,
    xs: jax.Array,
    lengths=None,
    initial_state=None,
    *,
    reverse: bool = False,
    method: str = "newton",
    max_iters: int = 100,
    tol: Optional[float] = None,
    fallback: bool = True,
):
    """Run ``cell`` over ``xs (*batch, T, I)`` in parallel over time (Newton / DEER).

    Same signature and semantics as :func:`rnn_jax.unroll` (lengths, reverse, initial state); returns
    ``(ys (*batch, T, O), final_state, info)`` with ``info`` a :class:`DeerInfo` of shape ``batch``.
    ``tol`` defaults to 1e-5 (float32) or 1e-10 (float64), on ``max |S_new - S|``.

    Args:
      cell: a :class:`rnn_jax.Cell`.
      params: its params.
      xs: ``(*batch, T, I)``.
      lengths: ints of shape ``batch``, or None.
      initial_state: the state before step 0 (with the batch axes), or None.
      reverse: run from the last valid step to the first.
      method: ``"newton"`` (the dense Jacobian) or ``"diagonal"`` (its diagonal, O(T H); exact for
        diagonal cells, a quasi-Newton step for others).
      max_iters: the most Newton iterations.
      tol: the convergence threshold on ``max |S_new - S|``, or None (by dtype).
      fallback: when not converged, return the sequential scan's result (True) or the last iterate.

    Returns:
      ``(ys (*batch, T, O), final_state, info)``.

    Examples:
      >>> cell = rnn_jax.indrnn(8)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 50, 3))
      >>> ys, h, info = rnn_jax.parallel.deer(cell, p, xs, method="diagonal")
      >>> bool(jnp.allclose(ys, rnn_jax.unroll(cell, p, xs)[0], atol=1e-4)), info.converged.tolist()
      (True, [True, True])
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    max_iters = _checks.check_int(max_iters, "max_iters", want="an int >= 1")
    xs_tm, lengths, state, batch = check_inputs(cell.init, cell.initial_state, params, xs, lengths, initial_state, cell)
    ys, final, info = solve_batch(
        cell,
        params,
        xs_tm,
        lengths,
        state,
        reverse=reverse,
        method=method,
        max_iters=max_iters,
        tol=tol,
        fallback=fallback,
    )
    return (_ops.from_time_major(ys, batch), _ops.unflatten_batch(final, batch), _ops.unflatten_batch(info, batch))
