"""Central finite differences against autodiff, for any loss over any params pytree.

    report = gradcheck.check(loss, params)          # loss(params) -> scalar
    report.worst, report.per_leaf                    # worst relative error, and per leaf

The check runs in float64 (params are cast; inputs closed over by ``loss`` should be float64 too)
and needs ``jax_enable_x64``. Every coordinate is perturbed: ``(f(p + eps e_i) - f(p - eps e_i)) / 2 eps``,
all coordinates at once under ``jax.vmap``. The relative error of a leaf is
``max |g_ad - g_fd| / max(max |g_ad|, max |g_fd|, floor)``: scaled by the leaf's largest gradient,
so tiny entries do not turn rounding noise into huge ratios.

From the command line, on any cell or architecture with random params and data::

    python -m rnn_jax.gradcheck --cell lstm --arch bidirectional --length 5
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

__all__ = ["Report", "check", "finite_difference_grad", "relative_errors"]


@dataclasses.dataclass(frozen=True)
class Report:
    """``per_leaf``: leaf path -> relative error; ``worst``: their maximum; ``ok``: ``worst <= tol``.

    Attributes:
      per_leaf: leaf path -> relative error.
      worst: their maximum.
      tol: the largest worst error that passes.

    Examples:
      >>> r = rnn_jax.gradcheck.Report({"['W']": 2e-9, "['b']": 5e-10}, 2e-9, 1e-6)
      >>> r.ok
      True
      >>> print(r)
      ['W']  2.000e-09
      ['b']  5.000e-10
      worst  2.000e-09  (OK, tol 1e-06)
    """

    per_leaf: dict[str, float]
    worst: float
    tol: float

    @property
    def ok(self) -> bool:
        return self.worst <= self.tol

    def __str__(self) -> str:
        width = max(len(k) for k in self.per_leaf) if self.per_leaf else 4
        rows = [f"{k:<{width}}  {v:.3e}" for k, v in self.per_leaf.items()]
        verdict = "OK" if self.ok else "FAIL"
        return "\n".join(rows + [f"{'worst':<{width}}  {self.worst:.3e}  ({verdict}, tol {self.tol:.0e})"])


def _require_x64():
    if not jax.config.read("jax_enable_x64"):
        raise ValueError("gradcheck needs float64: call jax.config.update('jax_enable_x64', True) first")


def finite_difference_grad(loss: Callable[[Any], jax.Array], params, eps: float = 1e-6, chunk: int = 4096):
    """Central-difference gradient of ``loss`` at ``params`` (same pytree), in float64.

    Args:
      loss: ``params -> scalar``.
      params: any pytree of arrays (cast to float64).
      eps: the step: ``(loss(p + eps e_i) - loss(p - eps e_i)) / (2 eps)`` for every entry ``i``.
      chunk: how many entries are perturbed in one vmapped call (memory ``chunk x n``).

    Returns:
      A pytree like ``params``, float64.

    Examples:
      >>> jax.config.update("jax_enable_x64", True)
      >>> g = rnn_jax.gradcheck.finite_difference_grad(lambda p: jnp.sum(p["w"] ** 3), {"w": jnp.array([1.0, 2.0])})
      >>> [round(float(v), 6) for v in g["w"]]                   # 3 w^2
      [3.0, 12.0]
      >>> jax.config.update("jax_enable_x64", False)
    """
    _require_x64()
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    flat, unravel = ravel_pytree(params)
    f = jax.jit(jax.vmap(lambda v: loss(unravel(v))))
    n = flat.shape[0]
    out = []
    for start in range(0, n, chunk):
        idx = jnp.arange(start, min(start + chunk, n))
        E = jnp.zeros((idx.shape[0], n), jnp.float64).at[jnp.arange(idx.shape[0]), idx].set(eps)
        base = jnp.broadcast_to(flat, E.shape)
        out.append((f(base + E) - f(base - E)) / (2 * eps))
    return unravel(jnp.concatenate(out))


def relative_errors(g_a, g_b, floor: float = 1e-8) -> dict[str, float]:
    """Per-leaf ``max |a - b| / max(max |a|, max |b|, floor)``.

    Args:
      g_a: a pytree of arrays.
      g_b: a pytree of the same structure.
      floor: the smallest scale divided by (two zero leaves give 0, not nan).

    Returns:
      A dict: leaf path -> relative error.

    Examples:
      >>> rnn_jax.gradcheck.relative_errors({"w": jnp.array([1.0, 2.0])}, {"w": jnp.array([1.0, 2.1])})
      {"['w']": 0.04761...}
    """
    out = {}
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(g_a)[0], jax.tree_util.tree_leaves(g_b)):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        scale = max(np.abs(a).max(initial=0.0), np.abs(b).max(initial=0.0), floor)
        out[jax.tree_util.keystr(path) or "params"] = float(np.abs(a - b).max(initial=0.0) / scale)
    return out


def check(
    loss: Callable[[Any], jax.Array], params, *, eps: float = 1e-6, tol: float = 1e-6, grad: Callable | None = None
) -> Report:
    """Compare ``grad(params)`` (default ``jax.grad(loss)``) with central differences of ``loss``.

    Needs float64 (``jax.config.update("jax_enable_x64", True)``); ``params`` are cast to it.

    Args:
      loss: ``params -> scalar``.
      params: any pytree of arrays.
      eps: the finite-difference step.
      tol: the largest worst-leaf relative error that passes.
      grad: the gradient to check (default ``jax.grad(loss)``), e.g. a hand-written BPTT.

    Returns:
      A :class:`Report`: ``per_leaf`` (the relative error of each leaf), ``worst``, ``ok``.

    Examples:
      >>> jax.config.update("jax_enable_x64", True)
      >>> cell = rnn_jax.lstm(3)
      >>> p = cell.init(jax.random.key(0), 2, jnp.float64)
      >>> xs = jnp.ones((1, 6, 2), jnp.float64)
      >>> rnn_jax.gradcheck.check(lambda q: jnp.sum(rnn_jax.unroll(cell, q, xs)[0] ** 2), p).ok
      True
      >>> jax.config.update("jax_enable_x64", False)
    """
    _require_x64()
    params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
    g = (grad or jax.jit(jax.grad(loss)))(params)
    errs = relative_errors(g, finite_difference_grad(loss, params, eps))
    return Report(errs, max(errs.values(), default=0.0), tol)


# ---------------------------------------------------------------------------------------------
# Command line: any cell in any architecture, random params and data.

CLI_CELLS = ("elman", "jordan", "lstm", "gru", "orthogonal", "min_gru", "min_lstm", "indrnn", "lru")


def user_cell(spec: str, hidden: int):
    """``module:function`` (``function(hidden) -> Cell``), imported from the working directory or the
    path: a user's own cell factory for the command line."""
    import importlib

    from rnn_jax.cells import Cell

    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise ValueError(
            f"--cell: expected one of {', '.join(CLI_CELLS)} or module:function (a factory "
            f"hidden -> Cell, e.g. mycells:rg_lru), got {spec!r}"
        )
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        factory = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"--cell {spec}: cannot import {name} from {module}: {e}") from e
    cell = factory(hidden)
    if not isinstance(cell, Cell):
        raise ValueError(
            f"--cell {spec}: expected {name}({hidden}) to return an rnn_jax Cell, got {type(cell).__name__}"
        )
    return cell


def _build(args):
    import rnn_jax as rj

    if args.cell not in CLI_CELLS:
        cell = user_cell(args.cell, args.hidden)
        make_cell = lambda: cell  # noqa: E731
    else:
        make_cell = None
    make_cell = (
        make_cell
        or {
            "elman": lambda: rj.elman(args.hidden, args.activation),
            "jordan": lambda: rj.jordan(args.hidden, 3),
            "lstm": lambda: rj.lstm(args.hidden),
            "gru": lambda: rj.gru(args.hidden),
            "orthogonal": lambda: rj.orthogonal_rnn(args.hidden),
            "min_gru": lambda: rj.min_gru(args.hidden),
            "min_lstm": lambda: rj.min_lstm(args.hidden),
            "indrnn": lambda: rj.indrnn(args.hidden),
            "lru": lambda: rj.lru(args.hidden),
        }[args.cell]
    )
    one = lambda **kw: rj.rnn(make_cell(), **kw)  # noqa: E731
    archs = {
        "rnn": lambda: one(),
        "reverse": lambda: one(reverse=True),
        "bidirectional": lambda: rj.bidirectional(one(), one(), merge="concat"),
        "stack": lambda: rj.stack(one(), one(), skip=args.skip),
    }
    return archs[args.arch]()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m rnn_jax.gradcheck",
        description="Check autodiff gradients of an rnn_jax layer against finite differences.",
    )
    p.add_argument(
        "--cell",
        default="lstm",
        help=f"{', '.join(CLI_CELLS)}, or module:function for your own "
        "cell (a factory hidden -> Cell, imported from the working directory)",
    )
    p.add_argument("--activation", default=None, help="Elman activation: tanh (default), relu, sigmoid")
    p.add_argument("--arch", choices=["rnn", "reverse", "bidirectional", "stack"], default="rnn")
    p.add_argument("--skip", choices=["none", "residual", "highway"], default="none")
    p.add_argument("--input", type=int, default=3, help="input size I")
    p.add_argument("--hidden", type=int, default=4, help="hidden size H")
    p.add_argument("--steps", type=int, default=6, help="sequence length T")
    p.add_argument("--length", type=int, default=None, help="valid length (default: T)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-6)
    args = p.parse_args(argv)
    args.skip = None if args.skip == "none" else args.skip
    if args.activation is not None and args.cell != "elman":
        p.error(f"--activation is the Elman cell's; --cell {args.cell} takes none")
    args.activation = args.activation or "tanh"
    if not math.isfinite(args.tol) or args.tol <= 0:
        p.error(f"--tol must be a finite positive number, got {args.tol}")
    if args.cell not in CLI_CELLS and ":" not in args.cell:
        p.error(f"--cell: expected one of {', '.join(CLI_CELLS)} or module:function, got {args.cell!r}")
    jax.config.update("jax_enable_x64", True)
    for name in ("input", "hidden", "steps"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be a positive int, got {getattr(args, name)}")
    if args.length is not None and not 0 <= args.length <= args.steps:
        p.error(f"--length must be in [0, {args.steps}], got {args.length}")
    try:
        layer = _build(args)
    except ValueError as e:
        p.error(str(e))
    k1, k2, k3 = jax.random.split(jax.random.key(args.seed), 3)
    params = layer.init(k1, args.input, jnp.float64)
    params = jax.tree.map(
        lambda a, k: a + 0.3 * jax.random.normal(k, a.shape, a.dtype),
        params,
        jax.tree_util.tree_unflatten(
            jax.tree_util.tree_structure(params), list(jax.random.split(k2, len(jax.tree_util.tree_leaves(params))))
        ),
    )
    xs = jax.random.normal(k3, (2, args.steps, args.input), jnp.float64)  # a batch: the fused path
    lengths = jnp.array([args.steps, args.steps if args.length is None else args.length])
    target = jnp.sin(jnp.arange(2 * args.steps * layer.output_size, dtype=jnp.float64)).reshape(2, args.steps, -1)

    def loss(p):
        ys, _ = layer.apply(p, xs, lengths)
        return jnp.sum((ys - target) ** 2)

    report = check(loss, params, tol=args.tol)
    print(f"{layer.name}: I={args.input} H={args.hidden} T={args.steps} length={args.length}")
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
