"""Fused batched recurrences with hand-written derivatives: one driver, and a kernel spec per cell.

Autodiff of ``lax.scan`` accumulates every weight gradient inside the reverse loop: at each step it
adds an ``(H, G*H)`` outer product into a carried buffer, so the backward pass moves ``T`` times the
weight matrix through memory and runs ``T`` small products where one large one would do. This module
does what cuDNN does, in JAX:

* the forward loop does one ``(B, H) @ (H, G*H)`` product per step and keeps what the derivatives need;
  the input product ``x_t W_i`` is either taken for all timesteps before the loop as ONE
  ``(T*B, I) @ (I, G*H)`` product or once per step inside it, whichever measured faster
  (``hoist="auto"``, see :func:`_hoist`);
* the backward loop (a reverse scan) computes only the state gradients: one ``(B, G*H) @ (G*H, H)``
  product per step;
* every weight gradient is then ONE product over all timesteps and examples:
  ``dW_h = sum_{t,b} h_{t-1} dz_t^T``, ``dW_i = sum_{t,b} x_t dz_t^T`` (each bias gradient as one more
  row of one of them), and the input gradient ``dX = dZ W_i^T`` likewise.

**One driver, a spec per cell.** :func:`run` owns everything the cells share: the loops, the masking
rule (state frozen, output zero past a length: :func:`rnn_jax._ops.select`), packed steps, hoisting,
the custom VJP and JVP rules, and the weight-gradient products. A cell's :class:`Kernel` holds only its
own mathematics, each part a function of one step of a batch: ``step`` (the new state and what the
derivatives need, a NamedTuple), ``backward`` (the state's cotangent through one step), ``gradients``
(the weight gradients from the whole backward pass, with the driver's products) and ``tangent`` (the
state's tangent through one step; optional: given None, the driver derives it from ``jax.jvp`` of
``step``, :func:`derived_tangent`). Elman, LSTM and GRU are three specs (:data:`ELMAN`, :func:`elman_kernel`,
:data:`LSTM`, :data:`GRU`); a new fused cell is a spec and a ``Cell.fused`` that calls :func:`run`.

**Options are arguments.** ``unroll``, ``hoist``, ``rule`` and ``pack`` are arguments of :func:`run` (and
of ``Cell.fused``, ``rnn(cell, pack=...)``). The two facts the kernels read from JAX's global state,
the default backend (hoisting rules) and the number of devices in the process (packing and the form of
the weight-gradient products), are read in one place, :func:`platform`, when a call is traced, or passed
in (``platform=``).

**Packed steps.** A batch of at least ``pack`` rows (:data:`PACK_MIN_BATCH` by default; None: never)
with a mask runs each loop step on the leading rows only, up to the last row valid at that step or at
any later one (rounded up to one of at most eight levels, multiples of 8). The batch is first put in
order of decreasing length (a permutation whose cotangent is the inverse gather), so a padded batch does
work in proportion to its valid steps, as PyTorch's packed sequences and cuDNN's variable-length RNNs
do; the rows outside keep their state and get zero outputs, as the masked step gives them. Each level
is one loop over the range of steps that needs it, so the steps at which every row is valid run exactly
as without packing. Any mask gives the unpacked values (the rows follow the mask, not an assumed shape);
``unroll > 1`` scans every row, and so does a batch that ``jax.jit`` may have split over several
devices (a process with more than one device, outside ``shard_map``; each device packs its own part
inside ``shard_map``). Under ``jax.vmap`` with lengths that differ per mapped batch, each level's loop
runs as long as its longest mapped range (right, with no saving). With every length full nothing is
skipped and the sort costs up to 1.17x of the step (0.96-1.17x over five measurements of the Elman
classifier). :func:`packed_scan` is the same loop for any step function, and :func:`run_step` runs any
cell's ``step`` with it, differentiated by a backward loop of the step's own VJP: the generic scan packs
too with ``rnn(cell, pack="always")`` (reverse mode only, so not by default: the generic scan's batched
calls otherwise keep forward-mode derivatives). benchmarks/README.md has the measurements.

Each recurrence has two differentiation rules with the same forward loop (``rule=``):

* ``"vjp"`` (batched calls): the backward pass above, a ``jax.custom_vjp``. Under ``jax.vmap`` a
  custom VJP's backward pass is mapped too, so every weight gradient would be formed per example and
  summed afterwards: right, but slow (an Elman layer at (B, T, I, H) = (64, 50, 128, 512), vmapped
  over single sequences, took 4.0x Flax's forward+backward time that way).
* ``"jvp"`` (calls without batch dimensions, which is what ``jax.vmap`` over single sequences runs): a
  ``jax.custom_jvp`` whose tangent recurrence carries only the state's tangent: the weights' tangents
  enter through ``U = x_t dW_i + h_{t-1} dW_h + db``, formed for all timesteps before the loop. JAX
  derives the backward pass by transposing it: the reverse loop carries only the state's cotangent,
  and each weight gradient is the transpose of one product over all timesteps, which ``jax.vmap``
  batches into one product over the mapped examples too. It also gives forward-mode and higher-order
  derivatives, which a custom VJP does not.

An input bias may be shared, ``(G*H,)``, or one per row, ``(B, G*H)``: a decoder that reads its
context at every step takes the context's part of the input product once per sequence as such a bias
(``Cell.fused``'s ``static``), not at every step.

The kernels take arrays, never parameter dicts: a cell (:mod:`rnn_jax.cells`) owns its parameter names
and hands its kernel the matrices it needs (``Cell.fused``). Inputs are time-major: ``xs (T, B, I)``,
states ``(B, H)``, ``mask (T, B, 1)`` booleans (False past a sequence's length) or None. Variable
lengths follow the unroller's semantics exactly: frozen state and zero outputs past the length; the
final state is the last valid one. Padding is inert: values past a length reach neither the outputs nor
any gradient (masked steps compute on zeros). Tests check values and gradients against the generic
unroller to 1e-10 in float64.
"""

from __future__ import annotations

import functools
import operator
from functools import partial
from typing import Any, Callable, NamedTuple, Optional, Union

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_derivatives import SymbolicZero

from rnn_jax._ops import local_batch, select, shift_down, varying_like, zero_invalid

__all__ = [
    "Kernel",
    "Platform",
    "platform",
    "run",
    "run_step",
    "packed_scan",
    "Products",
    "Residuals",
    "elman_kernel",
    "derived_tangent",
    "LSTM",
    "GRU",
    "ElmanWeights",
    "ElmanKept",
    "LSTMWeights",
    "LSTMKept",
    "GRUWeights",
    "GRUKept",
    "PACK_MIN_BATCH",
]

Hoist = Union[bool, str]
PACK_MIN_BATCH = 16  # the default of ``pack``: smaller batches run every row at every step


class Platform(NamedTuple):
    """What the kernels read of JAX's global state, in one place (:func:`platform`).

    Attributes:
      backend: ``jax.default_backend()``: the hoisting rules differ on the CPU.
      devices: ``jax.device_count()``: with several devices a batch may be split over them, so it is not
        packed outside ``shard_map`` and the weight-gradient products are written as contractions.

    Examples:
      >>> rnn_jax.fused.Platform("cpu", 1).devices
      1
    """

    backend: str
    devices: int


def platform() -> Platform:
    """The backend and the number of devices, read when a call is traced: the one place the kernels read
    JAX's global state (pass ``platform=`` to :func:`run` to decide them instead).

    Returns:
      A :class:`Platform`.

    Examples:
      >>> p = rnn_jax.fused.platform()
      >>> p.devices >= 1 and p.backend in ("cpu", "gpu", "tpu")
      True
    """
    return Platform(jax.default_backend(), jax.device_count())


_read_platform = platform  # run's argument of the same name shadows it there


class Kernel(NamedTuple):
    """A cell's batched recurrence, as the driver :func:`run` takes it: the cell's own mathematics and
    nothing else. ``w`` is the cell's weights, a NamedTuple whose first field is ``W_i`` (I, G*H) (the
    driver takes the input products); the state is a pytree whose first leaf is the output.

    Attributes:
      name: for messages.
      step: ``(w, state, gx (B, G*H), b (B, G*H)) -> (new_state, kept)``: one step of a batch, ``gx =
        x_t W_i`` and the input bias ``b`` (each cell adds them in its own order); the new state before
        masking and ``kept``, a NamedTuple of ``(B, ...)`` arrays the derivative rules read (formed while
        the step's operands are at hand; dropped by the compiler where no derivative is taken).
      backward_inputs: ``(w, states, kept, state0) -> per_step``: what the backward loop reads at each
        step, a pytree of ``(T, B, ...)`` arrays, from the forward loop's masked states (the state's
        pytree, leaves ``(T, B, ...)``) and its ``kept`` (stacked).
      backward: ``(wb, dnew, per_step_t) -> (dprev, emitted)``: ``wb`` what ``backward_weights`` made of the
        weights (``w`` itself by default); the cotangent ``dnew`` of a step's new state
        (zero past a length: the driver masks it and adds the frozen part) to the part of the previous
        state's cotangent that flows through the step, and the ``(B, ...)`` arrays the weight gradients
        need of this step (stacked by the driver).
      gradients: ``(w, b, xs, state0, states, kept, emitted, products) -> (dw, db, dxs)``: the gradients of
        the weights (a NamedTuple like ``w``), of the input bias ``b`` and of the inputs, from the whole
        backward pass, each one product over all timesteps with ``products`` (a :class:`Products`).
      tangent_inputs: ``(w, tw, b, tb, xs, txs, state0, states, kept) -> per_step``: the tangent loop's
        per-step inputs (the weights' and inputs' tangents enter here, formed for all steps at once;
        ``None`` marks an absent tangent). None (with ``tangent`` None): the driver derives both from
        ``jax.jvp`` of ``step`` (:func:`derived_tangent`): right for any step, and slower than a
        hand-written pair, which can reuse ``kept`` where the derived one recomputes the step's products.
      tangent: ``(w, tstate, per_step_t) -> new_tstate``: the state's tangent through one step (before
        masking); None: derived, as above.
      cpu_hoist: ``T -> (inference, training)``: whether to take the input products before the loop, on
        the CPU (measured per cell; other backends always hoist).
      backward_weights: ``w -> wb``, formed once before the backward loop and handed to every ``backward``
        step (the recurrent matrix's transpose, say), or None for ``w`` itself. A transpose written inside
        ``backward`` is copied at every step on the CPU: the GRU layer's forward+backward at B=1, T=1000,
        H=128 took 56 ms that way against 7.9 ms with the transpose formed once.

    Examples:
      >>> k = rnn_jax.fused.GRU
      >>> k.name, k.cpu_hoist(100)
      ('gru', (False, False))
      >>> w = rnn_jax.fused.GRUWeights(jnp.zeros((3, 12)), jnp.zeros((4, 12)), jnp.zeros(12))
      >>> h, kept = k.step(w, jnp.ones((2, 4)), jnp.zeros((2, 12)), jnp.zeros((2, 12)))   # one step of a batch
      >>> h.shape, type(kept).__name__, kept.c.shape
      ((2, 4), 'GRUKept', (2, 12))
    """

    name: str
    step: Callable
    backward_inputs: Callable
    backward: Callable
    gradients: Callable
    tangent_inputs: Optional[Callable]
    tangent: Optional[Callable]
    cpu_hoist: Callable[[int], tuple]
    backward_weights: Optional[Callable] = None


class _Config(NamedTuple):
    """The driver's static options for one call (hashable: a ``nondiff_argnum``)."""

    unroll: int
    hoist: tuple  # (inference, training)
    pack: Optional[int]  # the smallest batch that packs, or None
    devices: int


# ----------------------------------------------------------------------------------------------------
# Packed steps


def _levels(B: int, pack: Optional[int] = PACK_MIN_BATCH):
    """The row counts a step may be cut to: at most eight, each a multiple of 8, the last ``B``; None
    for a batch smaller than ``pack`` (or ``pack`` None)."""
    if pack is None or B < pack:
        return None
    unit = 8 * -(-B // 64)
    return tuple(range(unit, B, unit)) + (B,)


def _mask_levels(mask, pack: Optional[int], devices: int):
    """``_levels`` of a masked batch that packs, or None: no mask, a batch too small, or one that
    ``jax.jit`` may have split over devices (``local_batch``: rows taken by position, or sorted, would
    move between them)."""
    return None if mask is None or not local_batch(mask, devices) else _levels(mask.shape[1], pack)


def packed_scan(
    step,
    carry,
    xs,
    mask,
    *,
    reverse: bool = False,
    unroll: int = 1,
    pack: Optional[int] = PACK_MIN_BATCH,
    devices: Optional[int] = None,
    shared=None,
):
    """``lax.scan(step, carry, xs, reverse=reverse)``, each step run on the leading rows only: as
    many as the last row valid at that step or at any later one, rounded up to a level of
    ``_levels``. Those counts fall with time, so each level is one loop over a range of steps on its
    rows alone; the rows after them keep their carry and get zero outputs, which is what the masked
    step gives them (the caller's step must give exactly that). Every leaf of ``carry``, of ``xs``'s
    per-step slices and of the outputs has the batch as its leading axis. Any mask is right; a batch
    in order of decreasing length gains the most. ``unroll > 1``, ``pack=None`` and the batches
    ``_mask_levels`` declines scan every row; inside ``shard_map`` each device packs its own part.

    Args:
      step: ``(carry, x_t) -> (carry, y_t)``, leaves ``(B, ...)`` (or ``(k, ...)`` for a packed step).
      carry: leaves ``(B, ...)``.
      xs: leaves ``(T, B, ...)``.
      mask: ``(T, B, 1)`` booleans or None.
      reverse: run from the last step to the first.
      unroll: steps per iteration of the compiled loop (1: packed loops; more: one plain scan).
      pack: the smallest batch that packs, or None.
      devices: the number of devices in the process (None: :func:`platform`'s).
      shared: a second carry without the batch axis (every step adds to it, e.g. a parameter gradient),
        or None; with it ``step`` is ``(carry, shared, x_t) -> (carry, shared, y_t)``.

    Returns:
      ``(carry, ys)`` as ``lax.scan`` returns them; ``(carry, shared, ys)`` with ``shared``.

    Examples:
      >>> mask = (jnp.arange(5)[:, None] < jnp.array([5, 2] + [1] * 14)[None, :])[..., None]   # B = 16
      >>> step = lambda c, x: (jnp.where(x[1], c + x[0], c), jnp.where(x[1], c + x[0], 0.0))
      >>> xs = (jnp.ones((5, 16, 1)), mask)
      >>> c, ys = rnn_jax.fused.packed_scan(step, jnp.zeros((16, 1)), xs, mask)
      >>> c[:3, 0].tolist(), bool(jnp.all(ys == jax.lax.scan(step, jnp.zeros((16, 1)), xs)[1]))
      ([5.0, 2.0, 1.0], True)
    """
    devices = platform().devices if devices is None else devices
    if shared is None:
        c, _, ys = _packed(_no_shared(step), carry, (), xs, mask, reverse, unroll, pack, devices)
        return c, ys
    return _packed(step, carry, shared, xs, mask, reverse, unroll, pack, devices)


def _no_shared(step):
    def with_shared(c, s, x):
        c, y = step(c, x)
        return c, s, y

    return with_shared


def _packed(step, carry, shared, xs, mask, reverse, unroll, pack, devices):
    """:func:`packed_scan`'s loops: ``step(carry, shared, x_t) -> (carry, shared, y_t)``; ``carry``'s leaves
    have the batch axis, ``shared``'s have not."""
    levels = None if unroll != 1 else _mask_levels(mask, pack, devices)
    if levels is None or mask.shape[0] == 0:

        def plain(cs, x):
            c, s, y = step(cs[0], cs[1], x)
            return (c, s), y

        (carry, shared), ys = lax.scan(plain, (carry, shared), xs, reverse=reverse, unroll=unroll)
        return carry, shared, ys
    T, B = mask.shape[:2]
    last = jnp.max(jnp.where(mask[..., 0], jnp.arange(1, B + 1), 0), axis=1)  # (T,) last valid row + 1
    need = lax.cummax(last, axis=0, reverse=True)  # rows needed at step t or later: falls with t
    ends = [jnp.sum(need > k) for k in levels[:-1]] + [0]  # level j runs steps [ends[j], ends[j - 1])
    spans = [(k, ends[j], T if j == 0 else ends[j - 1]) for j, k in enumerate(levels)]
    y_shapes = jax.eval_shape(step, carry, shared, jax.tree.map(lambda a: a[0], xs))[2]
    ys = varying_like(jax.tree.map(lambda s: jnp.zeros((T,) + s.shape, s.dtype), y_shapes), xs)  # shard_map

    def level(k, lo, hi, carry, shared, ys):
        def body(i, c_s_ys):
            c, s, ys = c_s_ys
            t = lo + hi - 1 - i if reverse else i
            x = jax.tree.map(lambda a: lax.dynamic_slice(a, (t,) + (0,) * (a.ndim - 1), (1, k) + a.shape[2:])[0], xs)
            c, s, y = step(c, s, x)
            return c, s, jax.tree.map(lambda b, v: lax.dynamic_update_slice(b, v[None], (t,) + (0,) * v.ndim), ys, y)

        c, shared, ys = lax.fori_loop(lo, hi, body, (jax.tree.map(lambda a: a[:k], carry), shared, ys))
        return jax.tree.map(lambda a, top: jnp.concatenate([top, a[k:]]) if k < B else top, carry, c), shared, ys

    for k, lo, hi in spans if reverse else spans[::-1]:
        carry, shared, ys = level(k, lo, hi, carry, shared, ys)
    return carry, shared, ys


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _permute(a, order, axis):
    """``a`` with its ``axis`` put in the order ``order`` (a permutation); its cotangent is put back by
    a gather (autodiff of ``take`` would scatter-add)."""
    return jnp.take(a, order, axis=axis)


def _permute_fwd(a, order, axis):
    return jnp.take(a, order, axis=axis), order


def _permute_bwd(axis, order, ct):
    return jnp.take(ct, jnp.argsort(order), axis=axis), None


_permute.defvjp(_permute_fwd, _permute_bwd)


def _by_length(rule: str, cfg: _Config, call, xs, state0, mask, b):
    """``call(xs, state0, mask, b)`` on the batch's rows in order of decreasing valid length, so that
    the rows a step needs lead the batch (:func:`packed_scan`); results in the caller's order. ``b``: an
    input bias, shared ``(G*H,)`` or one per row ``(B, G*H)``."""
    if _mask_levels(mask, cfg.pack, cfg.devices) is None:
        return call(xs, state0, mask, b)
    # the JVP rule needs a forward-mode derivative, which a custom VJP has not: take's own
    permute = _permute if rule == "vjp" else (lambda a, order, axis: jnp.take(a, order, axis=axis))
    order = jnp.argsort(-jnp.sum(mask[..., 0], axis=0), stable=True)
    undo = jnp.argsort(order)
    ys, final = call(
        permute(xs, order, 1),
        jax.tree.map(lambda a: permute(a, order, 0), state0),
        jnp.take(mask, order, axis=1),
        b if b is None or b.ndim == 1 else permute(b, order, 0),
    )
    return permute(ys, undo, 1), jax.tree.map(lambda a: permute(a, undo, 0), final)


# ----------------------------------------------------------------------------------------------------
# Helpers of the specs: biases, tangents, the weight-gradient products


def bias(b, shape):
    """An input bias for a step on ``shape = (k, G*H)``: shared ``(G*H,)``, or one per row ``(B, G*H)``
    of which a packed step takes the leading ``k``."""
    return jnp.broadcast_to(b if b.ndim == 1 else b[: shape[0]], shape)


def _checked_bias(b, xs):
    """``b`` if it is an input bias of ``xs (T, B, I)``'s recurrence, shared or per row (``bias``)."""
    if b.ndim == 2 and b.shape[0] != xs.shape[1] or b.ndim not in (1, 2):
        raise ValueError(f"b: expected shape (G*H,) or (B={xs.shape[1]}, G*H), got {b.shape}")
    return b


def _pass(m, d):
    """The part of a state's cotangent that flows straight through an invalid (frozen) step."""
    return None if m is None else jnp.where(m, jnp.zeros_like(d), d)


def _add(a, b):
    return a if b is None else a + b


def _tangent(t):
    """A tangent, or None where it is a symbolic zero (that input is not being differentiated)."""
    return None if isinstance(t, SymbolicZero) else t


def linear(shape, dtype, *terms):
    """The sum of the ``(a, b)`` products ``a @ b`` and the ``(bias,)`` broadcasts whose tangent parts
    are present (None marks an absent tangent); zeros of ``shape`` when none is."""
    parts = []
    for term in terms:
        if any(t is None for t in term):
            continue
        parts.append(term[0] @ term[1] if len(term) == 2 else jnp.broadcast_to(term[0], shape))
    return functools.reduce(operator.add, parts) if parts else jnp.zeros(shape, dtype)


def _or_zeros(t, like):
    return jnp.zeros_like(like) if t is None else t


def blocks(a, n):
    """``(..., n*H) -> n arrays (..., H)``."""
    return jnp.split(a, n, axis=-1)


class Products(NamedTuple):
    """The weight-gradient products, one over all timesteps and examples (the driver's; a spec's
    ``gradients`` calls them). ``split``: the batch may be split over devices (see :meth:`weight`).

    Attributes:
      split: write each product as a contraction over ``(T, B)`` (several devices) rather than on the
        ``(T*B, .)`` matrices.

    Examples:
      >>> S, dZ = jnp.ones((5, 2, 3)), jnp.ones((5, 2, 4))
      >>> rnn_jax.fused.Products(False).weight(S, dZ)[0].tolist()          # sum over the 10 (t, b) rows
      [10.0, 10.0, 10.0, 10.0]
      >>> dW, db = rnn_jax.fused.Products(False).weight_bias(S, dZ, jnp.zeros(4))
      >>> dW.shape, db.tolist()
      ((3, 4), [10.0, 10.0, 10.0, 10.0])
    """

    split: bool

    def weight(self, S_prev, dZ):
        """``sum_{t,b} s_{t-1} dz_t^T``: one product over all timesteps and examples.

        For a batch on one device it is written on the ``(T*B, .)`` matrices: an einsum over the 3-D
        arrays compiled to copies of both operands before the product, and made training steps
        (B = 32-64) 2-17 % slower in 13 of 15 side-by-side comparisons (5 % faster in two). For one
        sequence (B = 1) the einsum was faster (Elman fwd+bwd at T=100, H=128: 0.50 against 0.65 ms).

        When the process has several devices the batch may be split over them (data parallelism), and a
        ``(T*B, .)`` matrix cannot carry a split of its ``B`` part: the partitioner then gathers every
        ``(T, B, .)`` operand onto every device and repeats the whole product on each. The contraction
        over ``(T, B)`` is split instead (a local product per device, one sum of the ``(H, G*H)``
        results): data-parallel training steps on two CPU devices took 0.63-0.79x as long as with the
        matrices. On one device that form was 0-6 % slower, so it is used only when there are several
        devices. benchmarks/README.md has the measurements.
        """
        if S_prev.shape[1] == 1:
            return jnp.einsum("tbh,tbg->hg", S_prev, dZ)
        if self.split:
            return lax.dot_general(S_prev, dZ, (((0, 1), (0, 1)), ((), ())))
        rows = (((0,), (0,)), ((), ()))
        return lax.dot_general(S_prev.reshape(-1, S_prev.shape[-1]), dZ.reshape(-1, dZ.shape[-1]), rows)

    def weight_bias(self, S_prev, dZ, b):
        """``(sum_{t,b} s_{t-1} dz_t^T, sum_{t,b} dz_t)``: the bias gradient as one more row of the weight
        gradient's product (``S_prev`` with a column of ones), not a pass of its own over ``dZ``: the GRU
        classifier's weight and bias gradients took 0.86-0.87x as long that way (measured alone). For a
        bias ``b`` per row ``(B, G*H)`` its gradient is a sum over time alone."""
        if b.ndim == 2:
            return self.weight(S_prev, dZ), jnp.sum(dZ, axis=0)
        g = self.weight(jnp.concatenate([S_prev, jnp.ones(S_prev.shape[:2] + (1,), S_prev.dtype)], axis=2), dZ)
        return g[:-1], g[-1]

    def inputs(self, W_i, xs, dGX):
        """``(dW_i, dxs)``: each one product over all timesteps and examples."""
        return self.weight(xs, dGX), dGX @ W_i.T


def _hoist(hoist: Hoist, cpu_rule: tuple, backend: Optional[str] = None) -> tuple:
    """``(hoist for inference, hoist for training)`` from the user's choice or, for ``"auto"``, from
    measurements (``python -m benchmarks.choices``, 2-core CPU, float32; benchmarks/README.md).

    For the gated cells the hoisted forward alone was up to 2.2x SLOWER on the CPU (GRU, B=16, T=1000:
    89 against 41 ms; LSTM, B=64, H=512: 99 against 72 ms), while in training the two were within 8 %
    of each other, hoisting ahead for the LSTM at T <= 100. For the Elman cell (one gate, a small
    buffer) hoisting was ahead or level everywhere. GPUs and TPUs hoist. ``cpu_rule`` is the
    recurrence's own ``(inference, training)`` choice on the CPU (``Kernel.cpu_hoist``).
    """
    if hoist is True or hoist is False:
        return hoist, hoist
    if hoist != "auto":
        raise ValueError(f"hoist: expected True, False or 'auto', got {hoist!r}")
    if (_read_platform().backend if backend is None else backend) != "cpu":
        return True, True
    return tuple(cpu_rule)


# ----------------------------------------------------------------------------------------------------
# The driver


class Residuals(NamedTuple):
    """What the forward loop keeps for the derivative rules: the masked states (the state's pytree,
    leaves ``(T, B, ...)``) and the spec's ``kept`` NamedTuple, stacked.

    Attributes:
      states: the masked states after every step, the state's pytree with leaves ``(T, B, ...)``.
      kept: the kernel's ``kept`` NamedTuple, leaves ``(T, B, ...)``.

    Examples:
      >>> r = rnn_jax.fused.Residuals(jnp.zeros((5, 2, 4)), rnn_jax.fused.ElmanKept())
      >>> r.states.shape
      (5, 2, 4)
    """

    states: Any
    kept: Any


def _first(tree):
    return jax.tree.leaves(tree)[0]


def _forward(kernel: Kernel, cfg: _Config, w, b, xs, state0, mask, keep: bool):
    """The forward loop: ``((ys, final), Residuals | None)``."""
    hoist_now = cfg.hoist[1 if keep else 0]
    inputs, proj = (xs @ w.W_i, lambda u: u) if hoist_now else (xs, lambda u: u @ w.W_i)

    def step(state, inp):
        u_t, m_t = inp
        gx = proj(u_t)
        new, kept = kernel.step(w, state, gx, bias(b, gx.shape))
        new = select(m_t, new, state)
        return new, (Residuals(new, kept) if keep else _first(new))

    final, out = packed_scan(step, state0, (inputs, mask), mask, unroll=cfg.unroll, pack=cfg.pack, devices=cfg.devices)
    ys = zero_invalid(mask, _first(out.states) if keep else out)
    return (ys, final), (out if keep else None)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _vjp_kernel(kernel, cfg, w, b, xs, state0, mask):
    return _forward(kernel, cfg, w, b, xs, state0, mask, keep=False)[0]


def _vjp_fwd(kernel, cfg, w, b, xs, state0, mask):
    out, res = _forward(kernel, cfg, w, b, xs, state0, mask, keep=True)
    return out, (w, b, xs, state0, mask, res)


def _vjp_bwd(kernel, cfg, saved, cts):
    w, b, xs, state0, mask, res = saved
    dys, dfinal = cts

    def step(dstate, inp):
        dy, per_step, m_t = inp
        leaves, tree = jax.tree.flatten(dstate)
        dnew = zero_invalid(m_t, jax.tree.unflatten(tree, [leaves[0] + dy] + leaves[1:]))  # the new state's
        dprev, emitted = kernel.backward(wb, dnew, per_step)
        return jax.tree.map(lambda a, d: _add(a, _pass(m_t, d)), dprev, dstate), emitted

    per_step = kernel.backward_inputs(w, res.states, res.kept, state0)
    wb = w if kernel.backward_weights is None else kernel.backward_weights(w)  # once, not at every step
    dstate0, emitted = packed_scan(
        step, dfinal, (dys, per_step, mask), mask, reverse=True, unroll=cfg.unroll, pack=cfg.pack, devices=cfg.devices
    )
    dw, db, dxs = kernel.gradients(w, b, xs, state0, res.states, res.kept, emitted, Products(cfg.devices > 1))
    return dw, db, dxs, dstate0, None


_vjp_kernel.defvjp(_vjp_fwd, _vjp_bwd)


@partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def _jvp_kernel(kernel, cfg, w, b, xs, state0, mask):
    return _forward(kernel, cfg, w, b, xs, state0, mask, keep=False)[0]


def derived_tangent(kernel: Kernel) -> tuple:
    """``(tangent_inputs, tangent)`` of a kernel spec, derived from ``jax.jvp`` of its ``step``: the tangent
    of step ``t`` is the step's JVP in the state, at the state it read, plus ``U_t``, its JVP in the weights,
    input products and bias, which needs no earlier tangent and so is formed for every step at once
    (vmapped over time: under transposition each weight gradient is one product over all steps, as in the
    hand-written rules). Each step of the tangent loop recomputes the step's primal (its recurrent product)
    where a hand-written ``tangent`` reads ``kept``: forward+backward of single sequences under ``jax.vmap``
    measured 1.1-1.3x (IndRNN), 1.3-1.5x (Elman), 1.4-2.2x (GRU), 1.7-3.2x (LSTM) the hand-written rule's
    time (B 1-64, T 100, H 64-256, one CPU process: ``python -m benchmarks.derived_tangent``), so the
    built-in kernels keep theirs; a kernel of one's own can leave the pair out.

    Args:
      kernel: a :class:`Kernel` (its ``step`` is used).

    Returns:
      ``(tangent_inputs, tangent)`` with the signatures of :class:`Kernel`'s fields.

    Examples:
      >>> k = rnn_jax.fused.elman_kernel(jnp.tanh)
      >>> derived = k._replace(tangent_inputs=None, tangent=None)         # the driver derives the pair
      >>> w = rnn_jax.fused.ElmanWeights(jnp.ones((2, 3)) / 4, jnp.eye(3) / 2)
      >>> xs, h0, b = jnp.ones((5, 1, 2)), jnp.zeros((1, 3)), jnp.zeros(3)
      >>> f = lambda kern, W: rnn_jax.fused.run(kern, w._replace(W_h=W), b, xs, h0, rule="jvp")[0].sum()
      >>> bool(jnp.allclose(jax.grad(lambda W: f(derived, W))(w.W_h), jax.grad(lambda W: f(k, W))(w.W_h)))
      True
    """

    def tangent_inputs(w, tw, b, tb, xs, txs, state0, states, kept):
        prev = jax.tree.map(shift_down, states, state0)  # the state each step read, (T, B, ...)
        gx = xs @ w.W_i  # (T, B, G*H)
        tgx = linear(gx.shape, gx.dtype, (xs, tw.W_i), (txs, w.W_i))
        tw_ = jax.tree.map(_or_zeros, tw, w, is_leaf=lambda t: t is None)
        bb = jnp.broadcast_to(b, gx.shape[1:])
        tb_ = jnp.broadcast_to(_or_zeros(tb, b), bb.shape)

        def rest(p, g, tg):  # the step's JVP in everything but the state, at one step
            return jax.jvp(lambda w_, g_, b_: kernel.step(w_, p, g_, b_)[0], (w, g, bb), (tw_, tg, tb_))[1]

        U = jax.vmap(rest)(prev, gx, tgx)
        return prev, gx, U, jnp.broadcast_to(bb, gx.shape)  # the bias per step too: the loop reads only per_step

    def tangent(w, tstate, per_step_t):
        p, g, u, bb = per_step_t
        d = jax.jvp(lambda s: kernel.step(w, s, g, bb)[0], (p,), (tstate,))[1]
        return jax.tree.map(operator.add, d, u)

    return tangent_inputs, tangent


def _jvp_rule(kernel, cfg, primals, tangents):
    w, b, xs, state0, mask = primals
    zero = lambda t: isinstance(t, SymbolicZero)  # noqa: E731
    tw, tb, txs, tstate0, _ = (jax.tree.map(_tangent, t, is_leaf=zero) for t in tangents)
    out, res = _forward(kernel, cfg, w, b, xs, state0, mask, keep=True)
    tangent_inputs, tangent = (
        (kernel.tangent_inputs, kernel.tangent) if kernel.tangent is not None else derived_tangent(kernel)
    )
    per_step = tangent_inputs(w, tw, b, tb, xs, txs, state0, res.states, res.kept)

    def step(t, inp):
        per_step_t, m_t = inp
        new = select(m_t, tangent(w, t, per_step_t), t)
        return new, _first(new)

    t0 = jax.tree.map(lambda t, s: _or_zeros(t, s), tstate0, state0, is_leaf=lambda t: t is None)
    tT, dYs = lax.scan(step, t0, (per_step, mask), unroll=cfg.unroll)
    return out, (zero_invalid(mask, dYs), tT)


_jvp_kernel.defjvp(_jvp_rule, symbolic_zeros=True)


def run(
    kernel: Kernel,
    w,
    b,
    xs,
    state0,
    mask=None,
    *,
    unroll: int = 1,
    hoist: Hoist = "auto",
    rule: str = "vjp",
    pack: Optional[int] = PACK_MIN_BATCH,
    platform: Optional[Platform] = None,
):
    """Run a cell's :class:`Kernel` over a time-major batch, with the derivative rule asked for.

    Args:
      kernel: the cell's spec.
      w: its weights, a NamedTuple whose first field is ``W_i`` (I, G*H).
      b: the input bias, ``(G*H,)`` or one per row ``(B, G*H)``.
      xs: ``(T, B, I)``.
      state0: the state before step 0, leaves ``(B, ...)``; its first leaf is the output.
      mask: ``(T, B, 1)`` booleans (False past a sequence's length) or None.
      unroll: steps per iteration of the compiled loops.
      hoist: take all input products before the loop (True, False or ``"auto"``: the kernel's measured
        rule on the CPU, always on other backends).
      rule: ``"vjp"`` (a hand-written backward pass, for batched calls) or ``"jvp"`` (a tangent recurrence
        that JAX transposes, for calls under ``jax.vmap``; forward mode and higher derivatives too).
      pack: the smallest batch whose padded steps are skipped (packed steps), or None (never).
      platform: the backend and device count to plan for, or None (:func:`platform`, read now).

    Returns:
      ``(ys (T, B, O), final_state)``: the outputs (zero past each length) and the last valid states.

    Examples:
      >>> cell = rnn_jax.gru(4)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> xs, mask = jnp.ones((6, 2, 3)), (jnp.arange(6)[:, None] < jnp.array([6, 2]))[..., None]
      >>> w = rnn_jax.fused.GRUWeights(p["W_i"], p["W_h"], p["b_h"])
      >>> ys, h = rnn_jax.fused.run(rnn_jax.fused.GRU, w, p["b_i"], xs, jnp.zeros((2, 4)), mask)
      >>> bool(jnp.all(ys[2:, 1] == 0)), bool(jnp.allclose(h[1], ys[1, 1]))
      (True, True)
    """
    if rule not in ("vjp", "jvp"):
        raise ValueError(f"rule: expected 'vjp' or 'jvp', got {rule!r}")
    if pack is not None and (not isinstance(pack, int) or isinstance(pack, bool) or pack < 1):
        raise ValueError(f"pack: expected None or an int >= 1 (the smallest batch that packs), got {pack!r}")
    plat = _read_platform() if platform is None else platform
    cfg = _Config(unroll, _hoist(hoist, kernel.cpu_hoist(xs.shape[0]), plat.backend), pack, plat.devices)
    fn = _vjp_kernel if rule == "vjp" else _jvp_kernel
    return _by_length(
        rule, cfg, lambda xs, s0, mask, b: fn(kernel, cfg, w, b, xs, s0, mask), xs, state0, mask, _checked_bias(b, xs)
    )


# ----------------------------------------------------------------------------------------------------
# Any cell's step, packed: a backward pass from the step's own VJP


def _generic_forward(cell, cfg, params, xs, state0, mask):
    vstep = jax.vmap(cell.step, in_axes=(None, 0, 0))

    def step(s, inp):
        x_t, m_t = inp
        new, y = vstep(params, s, x_t)
        new = select(m_t, new, s)
        return new, (new, zero_invalid(m_t, y))

    final, (states, ys) = packed_scan(
        step, state0, (xs, mask), mask, unroll=cfg.unroll, pack=cfg.pack, devices=cfg.devices
    )
    return (ys, final), states


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _generic(cell, cfg, params, xs, state0, mask):
    return _generic_forward(cell, cfg, params, xs, state0, mask)[0]


def _generic_fwd(cell, cfg, params, xs, state0, mask):
    out, states = _generic_forward(cell, cfg, params, xs, state0, mask)
    return out, (params, xs, state0, mask, states)


def _generic_bwd(cell, cfg, res, cts):
    params, xs, state0, mask, states = res
    dys, dfinal = cts
    vstep = jax.vmap(cell.step, in_axes=(None, 0, 0))
    prev = jax.tree.map(shift_down, states, state0)  # the state each step started from

    def step(dstate, dparams, inp):
        s_prev, x_t, dy, m_t = inp
        _, vjp = jax.vjp(lambda p, s, x: vstep(p, s, x), params, s_prev, x_t)
        dp, ds, dx = vjp((zero_invalid(m_t, dstate), zero_invalid(m_t, dy)))
        dstate = jax.tree.map(lambda a, d: _add(a, _pass(m_t, d)), ds, dstate)
        return dstate, jax.tree.map(operator.add, dparams, dp), dx

    zeros = jax.tree.map(jnp.zeros_like, params)
    dstate0, dparams, dxs = packed_scan(
        step,
        dfinal,
        (prev, xs, dys, mask),
        mask,
        reverse=True,
        unroll=cfg.unroll,
        pack=cfg.pack,
        devices=cfg.devices,
        shared=zeros,
    )
    return dparams, dxs, dstate0, None


_generic.defvjp(_generic_fwd, _generic_bwd)


def run_step(
    cell,
    params,
    xs,
    state0,
    mask,
    *,
    unroll: int = 1,
    pack: Optional[int] = PACK_MIN_BATCH,
    platform: Optional[Platform] = None,
):
    """Any cell's ``step`` over a time-major batch with packed steps, differentiated in reverse mode by a
    backward loop of the step's own VJP (packed too): what ``rnn(cell, pack="always")`` runs for a cell
    without a kernel (or with ``fused=False``). Reverse mode only (``jax.jvp`` raises JAX's custom-VJP
    error); the parameters' gradient is accumulated in the backward loop, one ``(params)`` add per step.

    Args:
      cell: a :class:`rnn_jax.Cell`.
      params: its (prepared) params.
      xs: ``(T, B, I)``, zero past each length.
      state0: the state before step 0, leaves ``(B, ...)``.
      mask: ``(T, B, 1)`` booleans or None.
      unroll: steps per iteration of the compiled loops (1: packed loops).
      pack: the smallest batch that packs, or None.
      platform: the device count to plan for, or None (:func:`platform`).

    Returns:
      ``(ys (T, B, O), final_state)``, equal to the generic scan's.

    Examples:
      >>> cell = rnn_jax.jordan(8, 2)
      >>> p = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((6, 20, 3)); mask = (jnp.arange(6)[:, None] < jnp.arange(20) % 7)[..., None]
      >>> s0 = jax.tree.map(lambda a: jnp.broadcast_to(a, (20,) + a.shape), cell.initial_state())
      >>> ys, fin = rnn_jax.fused.run_step(cell, p, xs * mask, s0, mask)
      >>> ref, _ = rnn_jax.unroll(cell, p, (xs * mask).swapaxes(0, 1), jnp.arange(20) % 7)
      >>> bool(jnp.allclose(ys.swapaxes(0, 1), ref, atol=1e-6))
      True
    """
    plat = _read_platform() if platform is None else platform
    cfg = _Config(unroll, (False, False), pack, plat.devices)
    return _by_length(
        "vjp", cfg, lambda xs, s0, mask, b: _generic(cell, cfg, params, xs, s0, mask), xs, state0, mask, None
    )


# ----------------------------------------------------------------------------------------------------
# Elman: h_t = g(a_t), a_t = x_t W_i + h_{t-1} W_h + b


class ElmanWeights(NamedTuple):
    """The Elman kernel's weights.

    Attributes:
      W_i: ``(I, H)``.
      W_h: ``(H, H)``.

    Examples:
      >>> rnn_jax.fused.ElmanWeights(jnp.zeros((3, 4)), jnp.eye(4)).W_h.shape
      (4, 4)
    """

    W_i: jax.Array  # (I, H)
    W_h: jax.Array  # (H, H)


class ElmanKept(NamedTuple):
    """What the Elman kernel keeps of each step for its derivatives.

    Attributes:
      a: the pre-activations ``(B, H)``, kept only when ``g'`` is not written from ``g``'s output (None
        otherwise: the states suffice).

    Examples:
      >>> rnn_jax.fused.ElmanKept().a is None
      True
    """

    a: Any = None  # (B, H) pre-activations, kept only when g' is not written from g's output


def _recurrent_transpose(w):
    """The built-in kernels' ``backward_weights``: ``W_h`` transposed, once."""
    return w.W_h.T


def _lead(u, ndim: int):
    """A vector ``(H,)`` with leading unit axes, to multiply an ``(..., H)`` array of ``ndim`` axes."""
    return u.reshape((1,) * (ndim - 1) + u.shape)


def elman_kernel(activation: Callable, derivative: Optional[Callable] = None, *, diagonal: bool = False) -> Kernel:
    """The Elman recurrence's spec for ``g = activation``. ``derivative``: ``g'`` written as a function of
    the OUTPUT ``s = g(a)`` (``1 - s^2`` for tanh), which lets the forward pass keep only the states; None
    makes the backward pass take ``g``'s own VJP at the kept pre-activations (exact for any ``g``, one more
    ``(T, B, H)`` buffer). Build it once per cell: the spec is part of the compiled program's key.

    ``diagonal=True``: the IndRNN recurrence ``h_t = g(x_t W_i + b + u * h_{t-1})`` (Li et al. 2018), ``W_h``
    the vector ``u (H,)``: every step's product an elementwise one, the input products and the weight
    gradients each one product over all steps (the generic scan of the IndRNN cell takes ``x_t W_i`` and
    a ``(I, H)`` weight-gradient product at every step: two layers at T = 5000, B = 50, H = 128 took
    1.08 s a forward+backward that way).

    Args:
      activation: ``g``.
      derivative: ``g'`` of the output, or None.
      diagonal: an elementwise recurrent weight ``u (H,)`` instead of a matrix ``W_h (H, H)``.

    Returns:
      A :class:`Kernel`.

    Examples:
      >>> k = rnn_jax.fused.elman_kernel(jnp.tanh, lambda s: 1 - s * s)
      >>> k.name, k.cpu_hoist(100)
      ('elman', (True, True))
      >>> rnn_jax.fused.elman_kernel(jax.nn.relu, diagonal=True).name
      'indrnn'
    """
    g = activation
    recur = (lambda h, u: h * _lead(u, h.ndim)) if diagonal else (lambda h, W_h: h @ W_h)

    def step(w, h, gx, b):
        a = gx + recur(h, w.W_h) + b
        return g(a), ElmanKept(a if derivative is None else None)

    def backward_inputs(w, states, kept, h0):
        return states if derivative is not None else kept.a

    def backward(W_hT, dh, k):
        if derivative is not None:
            da = dh * derivative(k)  # g'(a) written with s = g(a)
        else:
            da = jax.vjp(g, k)[1](dh)[0]  # any g: its own VJP at the kept pre-activation
        return recur(da, W_hT), da

    def gradients(w, b, xs, h0, Hs, kept, dA, products):
        dW_i, dxs = products.inputs(w.W_i, xs, dA)
        if diagonal:
            dW_h, db = jnp.sum(dA * shift_down(Hs, h0), axis=(0, 1)), jnp.sum(dA, axis=(0, 1) if b.ndim == 1 else 0)
        else:
            dW_h, db = products.weight_bias(shift_down(Hs, h0), dA, b)
        return ElmanWeights(dW_i, dW_h), db, dxs

    def tangent_inputs(w, tw, b, tb, xs, txs, h0, Hs, kept):
        H_prev = shift_down(Hs, h0)
        if diagonal:
            U = linear(Hs.shape, Hs.dtype, (xs, tw.W_i), (txs, w.W_i), (tb,))
            U = U if tw.W_h is None else U + H_prev * _lead(tw.W_h, 3)
        else:
            U = linear(Hs.shape, Hs.dtype, (xs, tw.W_i), (txs, w.W_i), (H_prev, tw.W_h), (tb,))  # (T, B, H)
        return U, (derivative(Hs) if derivative is not None else kept.a)  # g'(a_t), or a_t for g's own JVP

    def tangent(w, dh, inp):
        u, k = inp
        da = u + recur(dh, w.W_h)
        return k * da if derivative is not None else jax.jvp(g, (k,), (da,))[1]

    return Kernel(
        "indrnn" if diagonal else "elman",
        step,
        backward_inputs,
        backward,
        gradients,
        tangent_inputs,
        tangent,
        lambda T: (True, True),
        (lambda w: w.W_h) if diagonal else _recurrent_transpose,
    )


# ----------------------------------------------------------------------------------------------------
# LSTM (i, f, g, o): z = x_t W_i + h W_h + b; c' = f c + i g; h' = o tanh(c')


class LSTMWeights(NamedTuple):
    """The LSTM kernel's weights (gates ``i, f, g, o``).

    Attributes:
      W_i: ``(I, 4H)``.
      W_h: ``(H, 4H)``.

    Examples:
      >>> rnn_jax.fused.LSTMWeights(jnp.zeros((3, 16)), jnp.zeros((4, 16))).W_i.shape
      (3, 16)
    """

    W_i: jax.Array  # (I, 4H)
    W_h: jax.Array  # (H, 4H)


class LSTMKept(NamedTuple):
    """What the LSTM kernel keeps of each step: its four gate activations, each ``(B, H)``.

    Attributes:
      i: the input gate.
      f: the forget gate.
      g: the candidate.
      o: the output gate.

    Examples:
      >>> w = rnn_jax.fused.LSTMWeights(jnp.zeros((3, 16)), jnp.zeros((4, 16)))
      >>> z = jnp.zeros((2, 4))
      >>> (h, c), kept = rnn_jax.fused.LSTM.step(w, (z, z), jnp.zeros((2, 16)), jnp.zeros((2, 16)))
      >>> kept._fields, float(kept.f[0, 0])
      (('i', 'f', 'g', 'o'), 0.5)
    """

    i: jax.Array
    f: jax.Array
    g: jax.Array
    o: jax.Array


def _lstm_step(w, state, gx, b):
    h, c = state
    H = h.shape[-1]
    z = gx + h @ w.W_h + b  # (B, 4H)
    i = jax.nn.sigmoid(z[:, :H])
    f = jax.nn.sigmoid(z[:, H : 2 * H])
    g = jnp.tanh(z[:, 2 * H : 3 * H])
    o = jax.nn.sigmoid(z[:, 3 * H :])
    c_new = f * c + i * g
    return (o * jnp.tanh(c_new), c_new), LSTMKept(i, f, g, o)


def _lstm_backward_inputs(w, states, kept, state0):
    Cs = states[1]
    return Cs, shift_down(Cs, state0[1]), kept


def _lstm_backward(W_hT, dnew, per_step):
    dh, dc = dnew  # cotangents of the new h and c (zero past a length)
    c, c_prev, (i, f, g, o) = per_step
    tc = jnp.tanh(c)
    dc = dc + dh * o * (1.0 - tc * tc)
    dz = jnp.concatenate(
        [dc * g * i * (1.0 - i), dc * c_prev * f * (1.0 - f), dc * i * (1.0 - g * g), dh * tc * o * (1.0 - o)], axis=1
    )
    return (dz @ W_hT, dc * f), dz


def _lstm_gradients(w, b, xs, state0, states, kept, dZ, products):
    dW_i, dxs = products.inputs(w.W_i, xs, dZ)
    dW_h, db = products.weight_bias(shift_down(states[0], state0[0]), dZ, b)
    return LSTMWeights(dW_i, dW_h), db, dxs


def _lstm_tangent_inputs(w, tw, b, tb, xs, txs, state0, states, kept):
    Hs, Cs = states
    I, F, G, O = kept
    H = Hs.shape[-1]
    U = linear(I.shape[:2] + (4 * H,), Hs.dtype, (xs, tw.W_i), (txs, w.W_i), (shift_down(Hs, state0[0]), tw.W_h), (tb,))
    # dc' = f dc + K_i dz_i + K_f dz_f + K_g dz_g; dh' = P dz_o + Q dc'. The factors are separate
    # arrays: slicing one inside the loop would be a loop of its own once JAX splits the known part out.
    K = (G * I * (1.0 - I), shift_down(Cs, state0[1]) * F * (1.0 - F), I * (1.0 - G * G))
    tc = jnp.tanh(Cs)
    return U, K, F, tc * O * (1.0 - O), O * (1.0 - tc * tc)


def _lstm_tangent(w, tstate, inp):
    dh, dc = tstate
    u, (ki, kf, kg), f, p, q = inp
    dz_i, dz_f, dz_g, dz_o = blocks(u + dh @ w.W_h, 4)  # (B, H) each
    dc_new = f * dc + ki * dz_i + kf * dz_f + kg * dz_g
    return p * dz_o + q * dc_new, dc_new


LSTM = Kernel(
    "lstm",
    _lstm_step,
    _lstm_backward_inputs,
    _lstm_backward,
    _lstm_gradients,
    _lstm_tangent_inputs,
    _lstm_tangent,
    lambda T: (False, T <= 100),
    _recurrent_transpose,
)
"""The LSTM's spec (gates ``i, f, g, o``; one input bias, the sum of PyTorch's two)."""


# ----------------------------------------------------------------------------------------------------
# GRU (r, z, n): gh = h W_h + b_h; r, z = sigma(gx + gh); n = tanh(gx_n + r gh_n); h' = (1-z) n + z h


class GRUWeights(NamedTuple):
    """The GRU kernel's weights (gates ``r, z, n``); the recurrent bias is among them, inside the reset gate's

    product.

    Attributes:
      W_i: ``(I, 3H)``.
      W_h: ``(H, 3H)``.
      b_h: ``(3H,)``.

    Examples:
      >>> rnn_jax.fused.GRUWeights(jnp.zeros((3, 12)), jnp.zeros((4, 12)), jnp.zeros(12)).b_h.shape
      (12,)
    """

    W_i: jax.Array  # (I, 3H)
    W_h: jax.Array  # (H, 3H)
    b_h: jax.Array  # (3H,): inside the reset gate's product


class GRUKept(NamedTuple):
    """What the GRU kernel keeps of each step: the factors of its derivatives, formed in the step.

    Attributes:
      c: ``(B, 3H)``: ``d h' / d gh`` in the ``r, z, n`` blocks.
      z: ``(B, H)``: the update gate.
      a: ``(B, H)``: ``d h' / d a_n = (1 - z)(1 - n^2)``.

    Examples:
      >>> rnn_jax.fused.GRUKept._fields
      ('c', 'z', 'a')
    """

    c: jax.Array  # (B, 3H): d h' / d gh, the r, z, n blocks
    z: jax.Array  # (B, H)
    a: jax.Array  # (B, H): d h' / d a_n = (1 - z)(1 - n^2)


def _gru_step(w, h, gx, b_i):
    H = h.shape[-1]
    gx = gx + b_i
    gh = h @ w.W_h + jnp.broadcast_to(w.b_h, gx.shape)
    r = jax.nn.sigmoid(gx[:, :H] + gh[:, :H])
    z = jax.nn.sigmoid(gx[:, H : 2 * H] + gh[:, H : 2 * H])
    hn = gh[:, 2 * H :]
    n = jnp.tanh(gx[:, 2 * H :] + r * hn)
    # What the derivative rules need of this step, formed here while its operands are at hand:
    # d h'/d a_n = (1 - z)(1 - n^2) =: a and the factors c = d h' / d gh (r, z, n blocks), so that
    # d gh = dh' * c. Formed after the loop from kept r, z, n, gh_n, they took four passes over
    # (T, B, H) arrays and a concatenation of the (T, B, 3H) result (3.6 ms of a 37 ms GRU
    # classifier step, profile); with the input gradients below, the GRU classifier's and character
    # model's steps took 0.92-0.95x as long (four runs), the encoder-decoder's 1.00-1.02x.
    a = (1.0 - z) * (1.0 - n * n)
    c = jnp.concatenate([a * hn * r * (1.0 - r), (h - n) * z * (1.0 - z), a * r], axis=1)
    return (1.0 - z) * n + z * h, GRUKept(c, z, a)


def _gru_backward_inputs(w, states, kept, h0):
    return kept.c, kept.z


# Every gate cotangent is the state's cotangent dh times a factor kept by the forward pass (c, a),
# so the loop carries dh alone (one product, two elementwise passes per step; measured 2-3 %
# faster on the training-step benchmark's GRU steps than forming the gate cotangents inside it).
def _gru_backward(W_hT, dh, per_step):
    c, z = per_step
    dgh = jnp.tile(dh, (1, 3)) * c
    return dgh @ W_hT + dh * z, dh


def _gru_gradients(w, b_i, xs, h0, Hs, kept, dH, products):
    H = Hs.shape[-1]
    C, A = kept.c, kept.a
    dGH = jnp.tile(dH, (1, 1, 3)) * C
    # The input's gate cotangents are dGH's but for the n block, dH * a against dGH's dH * a * r: the
    # difference E is one (T, B, H) array, not a second (T, B, 3H) one (the GRU classifier's step:
    # 0.94-0.98x, three runs; the encoder-decoder's, whose inputs need their gradient, 0.98-1.03x).
    E = dH * (A - C[..., 2 * H :])
    (dW_i, db_i), (dW_e, db_e) = products.weight_bias(xs, dGH, b_i), products.weight_bias(xs, E, b_i)
    dW_i, db_i = dW_i.at[:, 2 * H :].add(dW_e), db_i.at[..., 2 * H :].add(db_e)
    dxs = dGH @ w.W_i.T + E @ w.W_i[:, 2 * H :].T
    dW_h, db_h = products.weight_bias(shift_down(Hs, h0), dGH, w.b_h)
    return GRUWeights(dW_i, dW_h, db_h), db_i, dxs


def _gru_tangent_inputs(w, tw, b_i, tb_i, xs, txs, h0, Hs, kept):
    C, Z, A = kept
    shape = C.shape
    TGX = linear(shape, Hs.dtype, (xs, tw.W_i), (txs, w.W_i), (tb_i,))  # tangent of x W_i + b_i
    V = linear(shape, Hs.dtype, (shift_down(Hs, h0), tw.W_h), (tw.b_h,))  # ... of h W_h + b_h but dh
    # dh' = (1 - z) dn + (h - n) dz + z dh = sum over blocks of C (gx_r + gh_r, gx_z + gh_z, gh_n)
    # + A gx_n + z dh, with the backward pass's factors C; all but C (dh W_h) + z dh is known now.
    gx_r, gx_z, gx_n = blocks(TGX, 3)
    E = sum(blocks(C * (V + jnp.concatenate([gx_r, gx_z, jnp.zeros_like(gx_n)], axis=2)), 3)) + A * gx_n
    return C, Z, E


def _gru_tangent(w, dh, inp):
    c, z, e = inp
    return sum(blocks(c * (dh @ w.W_h), 3)) + z * dh + e


GRU = Kernel(
    "gru",
    _gru_step,
    _gru_backward_inputs,
    _gru_backward,
    _gru_gradients,
    _gru_tangent_inputs,
    _gru_tangent,
    lambda T: (False, False),
    _recurrent_transpose,
)
"""The GRU's spec (gates ``r, z, n``, reset after the recurrent product; ``b_h`` among the weights)."""
