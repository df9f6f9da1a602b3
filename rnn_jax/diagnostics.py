"""Gradient-flow diagnostics: where vanishing and exploding gradients come from.

* :func:`error_reach`: ``||dE/dh_k||`` for every step k < T - 1, where E is a loss of the LAST output:
  how much of the error at the end reaches step k. One backward pass: a zero perturbation is added to
  the state entering every step, and the gradient with respect to it is ``dE/dstate_{k}``.
* :func:`jacobian_norms`: ``||dh_T/dh_k||_2`` (spectral norm of the product of step Jacobians
  ``J_T ... J_{k+1}``), the seeds' :math:`\\partial s_t / \\partial s_k` term.
* :func:`recurrent_spectrum`: spectral radius and singular values of the recurrent matrix (per gate
  block for gated cells). For a linearised tanh RNN, ``||dh_T/dh_k|| <= (max_sv * max|g'|)^(T-k)``:
  a largest singular value below 1 makes gradients vanish exponentially (Pascanu et al. 2013).
* :func:`plot_reach` and :func:`plot_heatmap` draw a curve per model and a heat map over training.

All work on ONE sequence; the state of gated cells is flattened (for LSTM: ``[h, c]``).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.flatten_util import ravel_pytree

from rnn_jax.cells import Cell, prepared

__all__ = [
    "error_reach",
    "jacobian_norms",
    "step_jacobian_singular_values",
    "recurrent_spectrum",
    "plot_reach",
    "plot_heatmap",
]


def _states(cell: Cell, params, xs, initial_state=None):
    """Carries after every step, flattened: ``(T, C)``, and the unravel function. ``params`` prepared."""
    state0 = cell.initial_state(xs.dtype) if initial_state is None else initial_state
    flat0, unravel = ravel_pytree(state0)

    def body(c, x):
        c, _ = cell.step(params, c, x)
        return c, ravel_pytree(c)[0]

    _, C = lax.scan(body, state0, xs)
    return C, unravel, flat0


def error_reach(
    cell: Cell, params, xs, loss_of_last: Callable[[jax.Array], jax.Array], initial_state=None
) -> jax.Array:
    """``(T - 1,)`` norms ``||dE/dstate_k||`` for ``k = 0 .. T-2`` (the state after step k), where
    ``E = loss_of_last(y_{T-1})``.

    Args:
      cell: a :class:`rnn_jax.Cell`.
      params: its params.
      xs: one sequence, ``(T, I)``.
      loss_of_last: ``y_{T-1} (O,) -> scalar``.
      initial_state: the state before step 0 (one example), or None (the cell's).

    Returns:
      ``(T - 1,)``: how much error from the last step reaches each earlier state.

    Examples:
      >>> cell = rnn_jax.elman(16)
      >>> p = cell.init(jax.random.key(0), 1)
      >>> p = dict(p, W_h=0.5 * p["W_h"])                              # contracting: the error vanishes
      >>> r = rnn_jax.diagnostics.error_reach(cell, p, jnp.ones((30, 1)), jnp.sum)
      >>> r.shape, bool(r[0] < 1e-6 * r[-1])
      ((29,), True)
    """
    state0 = cell.initial_state(xs.dtype) if initial_state is None else initial_state
    T = xs.shape[0]
    flat0, unravel = ravel_pytree(state0)
    params = prepared(cell, params)

    def loss(deltas):  # deltas (T, C): added to the state entering each step
        def body(c, inp):
            x, d = inp
            return cell.step(params, unravel(ravel_pytree(c)[0] + d), x)

        _, ys = lax.scan(body, state0, (xs, deltas))
        return loss_of_last(ys[-1])

    g = jax.grad(loss)(jnp.zeros((T, flat0.shape[0]), xs.dtype))  # g[t] = dE / d state_{t-1}
    return jnp.linalg.norm(g[1:], axis=-1)


def _step_jacobians(cell: Cell, params, xs, initial_state=None):
    """``(T, C, C)``: ``J_t = d state_t / d state_{t-1}`` along the trajectory from ``initial_state``."""
    params = prepared(cell, params)  # once for the trajectory and the Jacobians
    C, unravel, flat0 = _states(cell, params, xs, initial_state)
    prev = jnp.concatenate([flat0[None], C[:-1]], 0)  # carries before each step

    def step_jac(c_flat, x):
        return jax.jacfwd(lambda cf: ravel_pytree(cell.step(params, unravel(cf), x)[0])[0])(c_flat)

    return jax.vmap(step_jac)(prev, xs)


def jacobian_norms(cell: Cell, params, xs, initial_state=None) -> jax.Array:
    """``(T,)``: entry k is ``||d state_{T-1} / d state_k||_2`` (entry ``T-1`` is 1: the identity).

    Args:
      cell: a :class:`rnn_jax.Cell`.
      params: its params.
      xs: one sequence, ``(T, I)``.
      initial_state: the state before step 0 (one example), or None.

    Returns:
      ``(T,)`` spectral norms.

    Examples:
      >>> cell = rnn_jax.orthogonal_rnn(8, recurrent_init="identity")
      >>> p = cell.init(jax.random.key(0), 1)
      >>> n = rnn_jax.diagnostics.jacobian_norms(cell, p, jnp.ones((20, 1)))
      >>> n.shape, float(n[-1])
      ((20,), 1.0)
    """
    J = _step_jacobians(cell, params, xs, initial_state)  # (T, C, C)

    def back(M, Jt):  # M = d c_{T-1} / d c_t ; going back one step multiplies by J_t
        return M @ Jt, M

    _, Ms = lax.scan(back, jnp.eye(J.shape[-1], dtype=xs.dtype), J, reverse=True)  # Ms[k] = d c_{T-1} / d c_k
    return jnp.linalg.norm(Ms, ord=2, axis=(1, 2))


def step_jacobian_singular_values(cell: Cell, params, xs, initial_state=None) -> jax.Array:
    """``(T, C)``: the singular values (descending) of each step's Jacobian ``d state_t / d state_{t-1}``.

    The error reaching ``k`` steps back is the product of ``k`` of these Jacobians: when every one
    has all its singular values at 1 (an orthogonal recurrence with its units active) the error's
    norm is kept exactly; values below 1 shrink it geometrically (vanishing), above 1 may grow it.

    Args:
      cell: a :class:`rnn_jax.Cell`.
      params: its params.
      xs: one sequence, ``(T, I)``.
      initial_state: the state before step 0 (one example), or None.

    Returns:
      ``(T, C)``, ``C`` the state's size (``2H`` for an LSTM's ``(h, c)``).

    Examples:
      >>> cell = rnn_jax.orthogonal_rnn(6)
      >>> p = cell.init(jax.random.key(0), 1)
      >>> p = dict(p, b=jnp.full(6, -1e-3), W_i=jnp.ones((1, 6)))   # every unit active: singular values 1
      >>> sv = rnn_jax.diagnostics.step_jacobian_singular_values(cell, p, jnp.ones((5, 1)))
      >>> sv.shape, bool(jnp.allclose(sv, 1.0, atol=1e-5))
      ((5, 6), True)
    """
    return jnp.linalg.svd(_step_jacobians(cell, params, xs, initial_state), compute_uv=False)


def recurrent_spectrum(params, gates: int | None = None) -> dict:
    """Spectral radius and singular values of the recurrent matrix, each of its ``gates`` blocks of
    ``(H, H)`` (by default ``W.shape[1] // W.shape[0]``: 4 for an LSTM, 3 for a GRU, 1 for an Elman cell).

    ``params`` holds ``W_h`` (Elman, LSTM, GRU) or, once prepared (:func:`rnn_jax.prepared`), the
    orthogonal cell's ``W``.

    Args:
      params: a cell's params, with ``W_h`` or a prepared ``W``.
      gates: the number of ``(H, H)`` blocks, or None (from the shape).

    Returns:
      ``{block: {"spectral_radius", "max_singular_value", "min_singular_value", "singular_values"}}``,
      the block ``"W_h"`` for one block, ``"block0"``, ``"block1"``, ... for gated cells.

    Examples:
      >>> p = rnn_jax.gru(8).init(jax.random.key(0), 3)
      >>> s = rnn_jax.diagnostics.recurrent_spectrum(p)
      >>> sorted(s), round(s["block0"]["max_singular_value"], 4)          # orthogonal blocks
      (['block0', 'block1', 'block2'], 1.0)
    """
    W = params.get("W_h", params.get("W")) if isinstance(params, dict) else None
    if W is None or np.ndim(W) != 2:
        raise ValueError(
            "params: expected a recurrent matrix 'W_h' (H, G*H), or the prepared 'W' of the "
            f"orthogonal cell (rnn_jax.prepared(cell, params)); got keys "
            f"{sorted(params) if isinstance(params, dict) else type(params).__name__}"
        )
    W = np.asarray(W, np.float64)
    H = W.shape[0]
    if gates is None:
        gates = W.shape[1] // H
    if gates < 1 or W.shape[1] != gates * H:
        raise ValueError(f"gates: the recurrent matrix {W.shape} is not {gates} blocks of ({H}, {H})")
    out = {}
    for i, block in enumerate(np.split(W, gates, axis=1)):
        sv = np.linalg.svd(block, compute_uv=False)
        name = f"block{i}" if gates > 1 else "W_h"
        out[name] = {
            "spectral_radius": float(np.abs(np.linalg.eigvals(block)).max()),
            "max_singular_value": float(sv[0]),
            "min_singular_value": float(sv[-1]),
            "singular_values": sv.tolist(),
        }
    return out


def plot_reach(curves: dict, path: str, title: str = "", ylabel: str = "||dE_T / dh_k||") -> str:
    """One curve per model over k (log scale): ``{name: values (T,)}``.

    Args:
      curves: ``{name: values (T,)}``, e.g. :func:`error_reach` of several models.
      path: the image file to write (its suffix picks the format).
      title: the figure's title.
      ylabel: the y axis's label.

    Returns:
      ``path``.

    Examples:
      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "reach.png")
      >>> rnn_jax.diagnostics.plot_reach({"tanh": jnp.logspace(-6, 0, 30)}, path) == path, os.path.exists(path)
      (True, True)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    smallest = np.inf
    for name, v in curves.items():
        v = np.asarray(v, np.float64)
        zero = v <= 0  # exactly zero (dead units, or float underflow): not drawable on a log axis
        label = name
        if zero.any():
            beyond = int(np.argmax(~zero[::-1]) if zero.all() else len(v) - 1 - np.flatnonzero(zero).max())
            label = f"{name} (0 beyond {beyond} steps)"
        ax.plot(np.arange(len(v)) - (len(v) - 1), np.where(zero, np.nan, v), label=label)
        if (~zero).any():
            smallest = min(smallest, v[~zero].min())
    ax.set_yscale("log")
    if np.isfinite(smallest):
        ax.set_ylim(bottom=smallest / 10)
    ax.set_xlabel("k - T (steps before the end)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_heatmap(rows, train_steps, path: str, title: str = "") -> str:
    """``rows (n_snapshots, T)`` of reach values: log10 heat map, training step against k.

    Args:
      rows: ``(n_snapshots, T)`` reach values, one row per training snapshot.
      train_steps: the training step of each row (its first and last value set the y axis).
      path: the image file to write.
      title: the figure's title.

    Returns:
      ``path``.

    Examples:
      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "heat.png")
      >>> rows = jnp.logspace(-6, 0, 30)[None].repeat(3, 0)
      >>> os.path.exists(rnn_jax.diagnostics.plot_heatmap(rows, [0, 50, 100], path))
      True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    R = np.log10(np.maximum(np.asarray(rows, np.float64), 1e-30))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    T = R.shape[1]
    im = ax.imshow(
        R, aspect="auto", origin="lower", cmap="viridis", extent=(-(T - 1) - 0.5, 0.5, train_steps[0], train_steps[-1])
    )
    fig.colorbar(im, ax=ax, label="log10 ||dE_T / dh_k||")
    ax.set_xlabel("k - T (steps before the end)")
    ax.set_ylabel("training step")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
