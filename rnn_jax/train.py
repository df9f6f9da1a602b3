"""Training: optax chains, a jitted step, and a fit loop that loses nothing.

* :func:`optimizer` builds ``optax.chain(clip..., optimiser)``: clipping (by value, then by global
  norm) comes first, as the seeds prescribe for exploding gradients.
* :func:`make_step` jits one update of a batched loss; an update whose loss or gradients are not
  finite is not applied, and the step reports it.
* :func:`fit` runs the loop: progress bar (loss, tokens/s, ETA), ``metrics.jsonl``, atomic
  checkpoints, exact resume, early stopping on a validation metric, a clear stop on NaN/Inf that
  keeps the last good checkpoint. ``seeds=k`` trains k seeds at once under ``jax.vmap``.

Batches are a pure function of the step number (``batch_fn(step)``), so a resumed run sees exactly
the batches an uninterrupted one would, and reaches the same parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization
from jax import lax

from rnn_jax import _checks
from rnn_jax import callbacks as _cb

__all__ = [
    "optimizer",
    "TrainState",
    "update",
    "make_step",
    "fit",
    "run_loop",
    "FitResult",
    "RunFiles",
    "EarlyStopping",
    "epoch_batches",
    "save_checkpoint",
    "load_checkpoint",
    "checkpoint_info",
    "sweep",
    "OPTIMIZERS",
    "SCHEDULES",
]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "adagrad", "rmsprop")
SCHEDULES = ("constant", "cosine", "exponential", "warmup_cosine")


def schedule(
    lr: float, kind: str = "constant", steps: int = 1000, warmup: int = 0, decay_rate: float = 0.1
) -> optax.Schedule:
    """Learning-rate schedule: constant, cosine decay to 0 over ``steps``, exponential decay by
    ``decay_rate`` over ``steps``, or linear warm-up then cosine."""
    if kind == "constant":
        return optax.constant_schedule(lr)
    if kind == "cosine":
        return optax.cosine_decay_schedule(lr, steps)
    if kind == "exponential":
        return optax.exponential_decay(lr, steps, decay_rate)
    if kind == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(0.0, lr, max(warmup, 1), max(steps, warmup + 1))
    raise ValueError(f"schedule: expected one of {SCHEDULES}, got {kind!r}")


def optimizer(
    name: str = "adam",
    lr: float = 1e-3,
    *,
    clip_value: Optional[float] = None,
    clip_norm: Optional[float] = None,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    lr_schedule: str = "constant",
    steps: int = 1000,
    warmup: int = 0,
) -> optax.GradientTransformation:
    """``optax.chain(clip_by_value?, clip_by_global_norm?, <optimiser>)``.

    Args:
      name: ``sgd`` (plain gradient descent), ``momentum``, ``nesterov``, ``adam``, ``adamw``,
        ``adagrad``, ``rmsprop``.
      lr: peak learning rate; ``lr_schedule`` shapes it over ``steps`` (see :func:`schedule`).
      clip_value: clip every gradient entry into ``[-clip_value, clip_value]``.
      clip_norm: rescale the whole gradient to global norm at most ``clip_norm`` (Pascanu et al. 2013).
      momentum: for ``momentum`` and ``nesterov``.
      weight_decay: for ``adamw`` (decoupled).
      lr_schedule: ``constant``, ``cosine``, ``exponential`` or ``warmup_cosine``.
      steps: the schedule's length in updates.
      warmup: the warm-up updates of ``warmup_cosine``.

    Returns:
      An ``optax.GradientTransformation``.

    Examples:
      >>> tx = rnn_jax.train.optimizer("adam", 1e-3, clip_norm=1.0)
      >>> params = {"w": jnp.zeros(3)}
      >>> updates, _ = tx.update({"w": jnp.array([30.0, 40.0, 0.0])}, tx.init(params), params)
      >>> updates["w"].shape
      (3,)
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"name: expected one of {OPTIMIZERS}, got {name!r}")
    for arg, v in (("lr", lr), ("clip_value", clip_value), ("clip_norm", clip_norm)):
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise ValueError(f"{arg}: expected a finite positive number, got {v!r}")
    sched = schedule(lr, lr_schedule, steps, warmup)
    opt = {
        "sgd": lambda: optax.sgd(sched),
        "momentum": lambda: optax.sgd(sched, momentum=momentum),
        "nesterov": lambda: optax.sgd(sched, momentum=momentum, nesterov=True),
        "adam": lambda: optax.adam(sched),
        "adamw": lambda: optax.adamw(sched, weight_decay=weight_decay),
        "adagrad": lambda: optax.adagrad(sched),
        "rmsprop": lambda: optax.rmsprop(sched),
    }[name]()
    chain = []
    if clip_value is not None:
        chain.append(optax.clip(clip_value))
    if clip_norm is not None:
        chain.append(optax.clip_by_global_norm(clip_norm))
    return optax.chain(*chain, opt)


class TrainState(NamedTuple):
    """Everything a run needs to continue: step count, params, optimiser state.

    Attributes:
      step: the number of updates taken, an int array (per seed with ``seeds``).
      params: the parameters.
      opt_state: the optimiser's state.

    Examples:
      >>> import optax
      >>> st = rnn_jax.train.init_state({"w": jnp.zeros(3)}, optax.adam(1e-3))
      >>> int(st.step), st.params["w"].shape
      (0, (3,))
    """

    step: jax.Array
    params: Any
    opt_state: Any


def init_state(params, tx: optax.GradientTransformation) -> TrainState:
    """A fresh state. ``params`` are copied: the jitted step donates (reuses) the state's buffers."""
    params = jax.tree.map(jnp.array, params)
    return TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params))


def update(
    loss_fn: Callable,
    tx: optax.GradientTransformation,
    state: TrainState,
    batch,
    key=None,
    carry=None,
    with_grads: bool = False,
):
    """One update of ``state`` by the gradient of ``loss_fn`` on ``batch``: the step that :func:`fit`,
    :func:`make_step`, :func:`sweep` and :func:`rnn_jax.tbptt.train` all take (jit it, or call it inside jit).

    ``loss_fn(params, batch) -> (loss, aux dict)``; with ``key``, it is called with ``key=key``; with
    ``carry``, with ``carry=carry`` and returns ``(loss, (aux dict, new carry))``: the new carry leaves
    without gradient (truncated BPTT). A non-finite loss or gradient leaves the params and optimiser state
    unchanged (the step count still advances). Metrics: ``aux`` plus ``loss``, ``grad_norm`` (before
    clipping) and ``finite``.

    Args:
      loss_fn: ``(params, batch) -> (loss, aux dict)`` (see above for ``key`` and ``carry``).
      tx: the optax transformation.
      state: the :class:`TrainState` to update.
      batch: what ``loss_fn`` reads.
      key: a ``jax.random.key`` for the loss (dropout), or None.
      carry: the carry entering this update, or None.
      with_grads: also return the gradient.

    Returns:
      ``(state, metrics, new carry or None)``, and the gradient last when ``with_grads``.

    Examples:
      >>> import optax
      >>> tx = optax.sgd(0.5)
      >>> st, m, _ = rnn_jax.train.update(lambda p, b: (jnp.sum((p["w"] - b) ** 2), {}), tx,
      ...                                 rnn_jax.train.init_state({"w": jnp.zeros(2)}, tx), jnp.ones(2))
      >>> st.params["w"].tolist(), float(m["loss"]), int(st.step)
      ([1.0, 1.0], 2.0, 1)
    """
    kw = {} if key is None else {"key": key}
    if carry is not None:
        kw["carry"] = carry
    (loss, aux), grads = jax.value_and_grad(
        lambda p: _checked_loss(loss_fn(p, batch, **kw), carry is not None), has_aux=True
    )(state.params)
    if carry is not None:
        aux, new_carry = aux
        new_carry = lax.stop_gradient(new_carry)  # truncated BPTT: no gradient crosses a window boundary
        spec = lambda t: jax.tree.map(lambda a: (jnp.shape(a), jnp.result_type(a)), t)  # noqa: E731
        if jax.tree.structure(new_carry) != jax.tree.structure(carry) or spec(new_carry) != spec(carry):  # type: ignore[operator]
            raise ValueError(
                f"loss_fn: the new carry it returned ({describe(new_carry)}) differs in structure, "
                f"shape or dtype from the carry it was given ({describe(carry)}); return the next "
                f"window's carry, shaped as this one"
            )
    else:
        new_carry = None
    gnorm = optax.tree_utils.tree_norm(grads)
    finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    kept = jax.tree.map(lambda n, o: jnp.where(finite, n, o), (params, opt_state), (state.params, state.opt_state))
    out = TrainState(state.step + 1, *kept), dict(aux, loss=loss, grad_norm=gnorm, finite=finite), new_carry
    return out + (grads,) if with_grads else out


def describe(tree, limit: int = 300) -> str:
    """A short account of a value a user function returned: its type and, per leaf, dtype and shape."""
    if tree is None:
        return "None"
    try:
        shapes = jax.tree.map(
            lambda a: (
                f"{jnp.result_type(a).name}{list(jnp.shape(a))}"
                if hasattr(a, "shape") or isinstance(a, (int, float, bool, complex))
                else repr(a)
            ),
            tree,
        )
    except Exception:  # noqa: BLE001 - only for a message
        shapes = repr(tree)
    text = f"an array {shapes}" if hasattr(tree, "shape") else f"{type(tree).__name__} {shapes}"
    return text if len(text) <= limit else text[:limit] + "..."


def _checked_loss(out, with_carry: bool):
    """``loss_fn``'s return value, its structure checked (at trace time): ``(scalar loss, aux dict)``, or
    ``(loss, (aux dict, new carry))`` with a carry."""
    want = "(loss, (aux dict, new carry))" if with_carry else "(loss, aux dict), e.g. (loss, {})"
    if not (isinstance(out, tuple) and len(out) == 2):
        raise ValueError(f"loss_fn: expected it to return {want}, got {describe(out)}")
    loss, aux = out
    if not hasattr(loss, "shape") and not isinstance(loss, (int, float)) or jnp.shape(loss) != ():
        raise ValueError(f"loss_fn: expected a scalar loss as the first of {want}, got {describe(loss)}")
    if with_carry:
        if not (isinstance(aux, tuple) and len(aux) == 2):
            raise ValueError(f"loss_fn: with carry=, expected it to return {want}, got (loss, {describe(aux)})")
        metrics = aux[0]
    else:
        metrics = aux
    if not isinstance(metrics, dict):
        raise ValueError(f"loss_fn: expected the aux of {want} to be a dict of metrics, got {describe(metrics)}")
    return out


def _check_batch(batch, step: int):
    """``batch_fn(step)``'s value: arrays (or numbers) in a pytree, no strings or other objects. (None, or no
    leaves at all, is a batch for a loss that reads none; a loss that does read it fails on its first call,
    and fit's message names what batch_fn returned.)"""
    leaves = jax.tree.leaves(batch)
    if any(not (hasattr(a, "shape") or isinstance(a, (int, float, bool))) for a in leaves):
        raise ValueError(
            f"batch_fn: expected batch_fn({step}) to return a batch (an array, or a tuple or dict "
            f"of arrays, that loss_fn takes), got {describe(batch)}"
        )
    return batch


def _make_update(loss_fn, tx, seeds, seed_batches, with_key, with_carry):
    """The jitted ``(state, batch, key, carry, reset) -> (state, metrics, carry)`` of :func:`fit`: ``reset``
    (a bool) puts ``carry`` back to its initial value ``carry0`` (the last argument) before the update."""

    def one(state, batch, key, carry, reset, carry0):
        if with_carry:
            carry = jax.tree.map(lambda c, z: jnp.where(reset, z, c), carry, carry0)
        return update(loss_fn, tx, state, batch, key if with_key else None, carry if with_carry else None)

    if seeds is not None:
        one = jax.vmap(
            one,
            in_axes=(
                0,
                0 if seed_batches else None,
                0 if with_key else None,
                0 if with_carry else None,
                None,
                0 if with_carry else None,
            ),
        )
    return jax.jit(one, donate_argnums=(0, 3))


def make_step(
    loss_fn: Callable, tx: optax.GradientTransformation, seeds: Optional[int] = None, seed_batches: bool = False
):
    """``step(state, batch) -> (state, metrics)``, jitted.

    ``loss_fn(params, batch) -> (loss, aux)``: the loss of a batch (models take batches), ``aux`` a
    dict of scalar metrics. Metrics add ``loss``, ``grad_norm`` (before clipping) and ``finite``.
    A non-finite loss or gradient leaves the params and optimiser state unchanged (the step count
    still advances, so that every seed's count stays that of the batches seen). With ``seeds`` (an
    int) the state carries a leading seed axis of that size and the step is vmapped over it (the
    same batch for every seed; with ``seed_batches`` each seed gets its own batch, the batch's leaves
    carrying the same leading axis: cross-validation folds, bootstrap replicates).

    Args:
      loss_fn: ``(params, batch) -> (loss, aux)``.
      tx: an optax optimiser.
      seeds: the size of a leading seed axis of the state, or None.
      seed_batches: whether the batch carries the seed axis too.

    Returns:
      The jitted ``step(state, batch) -> (state, metrics)``.

    Examples:
      >>> import optax
      >>> tx = optax.sgd(0.5)
      >>> step = rnn_jax.train.make_step(lambda p, b: (jnp.sum((p["w"] - b) ** 2), {}), tx)
      >>> st, m = step(rnn_jax.train.init_state({"w": jnp.zeros(2)}, tx), jnp.ones(2))
      >>> st.params["w"].tolist(), float(m["loss"]), bool(m["finite"])
      ([1.0, 1.0], 2.0, True)
    """
    if seed_batches and seeds is None:
        raise ValueError("seed_batches=True needs seeds (the size of the leading seed axis)")

    def one(state: TrainState, batch):
        return update(loss_fn, tx, state, batch)[:2]

    if seeds is not None:
        one = jax.vmap(one, in_axes=(0, 0 if seed_batches else None))
    return jax.jit(one, donate_argnums=0)


def epoch_batches(n: int, batch_size: int, key: jax.Array, drop_last: bool = True):
    """``indices(step) -> (batch_size,)`` example indices: a fresh permutation every epoch, derived
    from ``key`` and the epoch number alone (so any step can be recomputed after a resume).

    Args:
      n: the number of examples.
      batch_size: examples per step (at most ``n``).
      key: a ``jax.random.key``.
      drop_last: drop an epoch's last, smaller batch.

    Returns:
      ``indices(step)``, with ``indices.steps_per_epoch``.

    Examples:
      >>> idx = rnn_jax.train.epoch_batches(10, 4, jax.random.key(0))
      >>> idx.steps_per_epoch, idx(0).shape
      (2, (4,))
      >>> len(set(idx(0).tolist()) | set(idx(1).tolist()))   # an epoch draws without repeats
      8
    """
    batch_size = _checks.check_int(batch_size, "batch_size")
    if batch_size > n:
        raise ValueError(f"batch_size: expected at most the number of examples {n}, got {batch_size}")
    per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
    cache: dict = {}

    def indices(step: int) -> np.ndarray:
        epoch, i = divmod(int(step), per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))
        perm = cache[epoch]
        return perm[i * batch_size : (i + 1) * batch_size]

    indices.steps_per_epoch = per_epoch  # type: ignore[attr-defined]
    return indices


# ---------------------------------------------------------------------------------------------
# Checkpoints: flax msgpack with a SHA-256 of the payload, written to a temporary file and renamed
# (atomic on POSIX). Loading verifies the checksum: a flipped byte is an error, never a silent load.


def save_checkpoint(path: str, state: Any, extra: Optional[dict] = None) -> None:
    """Write ``state`` (any pytree of arrays) and ``extra`` (JSON) to ``path`` atomically, with a SHA-256
    of the payload that :func:`load_checkpoint` verifies.

    Args:
      path: the file to write (its folder is made).
      state: a pytree of arrays (a :class:`TrainState`, params, ...).
      extra: JSON-serialisable metadata (step, best metric, ...).

    Returns:
      None; the file holds the state once the call returns (a crash leaves the previous file).

    Examples:
      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.msgpack")
      >>> rnn_jax.train.save_checkpoint(path, {"w": jnp.arange(3.0)}, {"step": 7})
      >>> state, extra = rnn_jax.train.load_checkpoint(path, {"w": jnp.zeros(3)})
      >>> state["w"].tolist(), extra["step"], rnn_jax.train.checkpoint_info(path)["step"]
      ([0.0, 1.0, 2.0], 7, 7)
    """
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    payload = serialization.msgpack_serialize(
        {"state": serialization.to_state_dict(jax.device_get(state)), "extra": json.dumps(extra or {})}
    )
    blob = serialization.msgpack_serialize(
        {"format": "rnn_jax-checkpoint-1", "payload": payload, "sha256": hashlib.sha256(payload).hexdigest()}
    )
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_checkpoint(path: str) -> dict:
    """A checkpoint file's verified payload ``{"state": ..., "extra": json}``."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint: no file at {path}")
    with open(path, "rb") as f:
        data = f.read()
    try:
        outer = serialization.msgpack_restore(data)
        payload = outer["payload"]
        ok = hashlib.sha256(payload).hexdigest() == outer["sha256"]
    except Exception as e:  # noqa: BLE001 - any decode failure means a corrupt file
        raise ValueError(f"checkpoint: {path} is corrupt or not an rnn_jax checkpoint ({type(e).__name__}: {e})") from e
    if not ok:
        raise ValueError(f"checkpoint: {path} is corrupt (its SHA-256 checksum does not match its contents)")
    return serialization.msgpack_restore(payload)


def load_checkpoint(path: str, template: Any):
    """Returns ``(state, extra)``; ``template`` gives the structure (e.g. a freshly initialised state).
    Raises ``ValueError`` for a corrupt file (checksum mismatch, undecodable) or a structure mismatch.

    Args:
      path: a file written by :func:`save_checkpoint`.
      template: a pytree with the saved state's structure.

    Returns:
      ``(state, extra)``: the state (like ``template``) and the metadata dict.

    Examples:
      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.msgpack")
      >>> rnn_jax.train.save_checkpoint(path, {"w": jnp.ones(2)}, {"step": 3})
      >>> rnn_jax.train.load_checkpoint(path, {"w": jnp.zeros(2)})[0]["w"].tolist()
      [1.0, 1.0]
      >>> rnn_jax.train.load_checkpoint(path, {"w": jnp.zeros(2), "b": jnp.zeros(1)})
      Traceback (most recent call last):
      ...
      ValueError: ...
    """
    raw = _read_checkpoint(path)
    try:
        state = serialization.from_state_dict(template, raw["state"])
    except (ValueError, KeyError, TypeError) as e:
        raise ValueError(f"checkpoint: {path} does not match the model/optimiser being restored ({e})") from e
    bad = [
        jax.tree_util.keystr(k)
        for (k, t), a in zip(jax.tree_util.tree_flatten_with_path(template)[0], jax.tree_util.tree_leaves(state))
        if np.shape(t) != np.shape(a)
    ]
    if bad:
        raise ValueError(f"checkpoint: {path} holds arrays of other shapes than the template at {bad[:3]}")
    state = jax.tree.map(lambda t, a: jnp.asarray(a, dtype=getattr(t, "dtype", None)), template, state)
    return state, json.loads(raw["extra"])


def checkpoint_info(path: str) -> dict:
    """The metadata a checkpoint was saved with (``step``, ``best``, ``train_s``, ...), without its arrays'
    template; the same checks as :func:`load_checkpoint`.

    Args:
      path: a file written by :func:`save_checkpoint`.

    Returns:
      The metadata dict.

    Examples:
      >>> import os, tempfile
      >>> path = os.path.join(tempfile.mkdtemp(), "ckpt.msgpack")
      >>> rnn_jax.train.save_checkpoint(path, {"w": jnp.ones(2)}, {"step": 3, "best": None})
      >>> rnn_jax.train.checkpoint_info(path)
      {'step': 3, 'best': None}
    """
    return json.loads(_read_checkpoint(path)["extra"])


# ---------------------------------------------------------------------------------------------
# The parts of a run: its folder (checkpoints and metrics log), early stopping, and the loop.


class RunFiles:
    """A run folder: ``metrics.jsonl`` (one JSON row per log), ``checkpoint.msgpack`` (last good state)
    and ``best.msgpack``. A folder that already holds a run is never reused without ``resume``; with
    ``resume``, rows logged after the checkpoint and a torn last line (a run killed mid-write) are
    dropped. Only ``writer`` (process 0) writes.

    Args:
      run_dir: the folder, or None (nothing is written).
      resume: continue a run the folder holds.
      writer: whether this process writes (process 0 of a multi-process run).

    Examples:
      >>> import os, tempfile
      >>> d = tempfile.mkdtemp()
      >>> files = rnn_jax.train.RunFiles(d, resume=False)
      >>> files.log({"step": 10, "loss": 1.0})
      >>> rnn_jax.train.RunFiles(d, resume=False)
      Traceback (most recent call last):
      ...
      ValueError: run_dir: ... already holds a run (metrics.jsonl or checkpoint.msgpack); pass resume=True to ...
      >>> rnn_jax.train.RunFiles(d, resume=True).rows(upto_step=10)
      [{'step': 10, 'loss': 1.0}]
    """

    def __init__(self, run_dir: Optional[str], resume: bool, writer: bool = True):
        self.dir, self.writer = run_dir, writer
        self.ckpt = os.path.join(run_dir, "checkpoint.msgpack") if run_dir else None
        self.metrics = os.path.join(run_dir, "metrics.jsonl") if run_dir else None
        if run_dir and not resume and any(os.path.exists(p) for p in (self.ckpt, self.metrics) if p):
            raise ValueError(
                f"run_dir: {run_dir} already holds a run (metrics.jsonl or checkpoint.msgpack); "
                f"pass resume=True to continue it, or choose a new folder"
            )
        if run_dir and writer:
            os.makedirs(run_dir, exist_ok=True)

    def has_checkpoint(self) -> bool:
        return self.ckpt is not None and os.path.exists(self.ckpt)

    def rows(self, upto_step: int) -> list:
        """The rows logged at or before ``upto_step``; the file is rewritten to hold just those."""
        if not (self.metrics and os.path.exists(self.metrics)):
            return []
        rows = []
        with open(self.metrics) as f:
            lines = f.read().split("\n")
        if lines and not lines[-1].strip():
            lines.pop()
        for n, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                if n < len(lines):  # a damaged row with rows after it: the records no longer describe the run
                    raise ValueError(
                        f"resume: line {n} of {self.metrics} is damaged ({line[:80]!r}) and "
                        f"{len(lines) - n} rows follow it; nothing was changed. Repair or delete that "
                        f"line, then resume"
                    ) from None
                print(
                    f"[rnn_jax] {self.metrics}: its last line was torn (the run stopped while writing "
                    f"it); dropped: {line[:80]!r}",
                    file=sys.stderr,
                )
                break
            if row.get("step", 0) <= upto_step:
                rows.append(row)
        if self.writer:
            with open(self.metrics, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
        return rows

    def log(self, row: dict) -> None:
        if self.metrics and self.writer:
            with open(self.metrics, "a") as f:
                f.write(json.dumps(row) + "\n")

    def save(self, state, extra: dict, name: str = "checkpoint.msgpack") -> None:
        if self.dir:
            from rnn_jax import distributed

            host = jax.tree.map(distributed.to_host, state)  # every process takes part in gathers
            if self.writer:
                save_checkpoint(os.path.join(self.dir, name), host, extra)


class EarlyStopping:
    """Tracks the best evaluation of ``monitor`` (``mode`` min or max; the mean over seeds) and counts
    evaluations without improvement; with ``target``, also whether the latest evaluation reached it
    (at most ``target`` for mode min, at least for max). A monitored key that an evaluation does not
    return is an error.

    Attributes:
      monitor: the evaluation's key to watch (e.g. ``"val_loss"``).
      mode: ``"min"`` or ``"max"``.
      patience: evaluations without improvement before stopping, or None (never).
      best: the best evaluation row so far.
      bad_evals: evaluations since the best.
      target: a value that ends the run when reached, or None.

    Examples:
      >>> es = rnn_jax.train.EarlyStopping("val_loss", "min", patience=2)
      >>> [es.update({"step": s, "val_loss": v}) for s, v in [(1, 1.0), (2, 0.5), (3, 0.7)]]   # new best?
      [True, True, False]
      >>> es.stop, es.update({"step": 4, "val_loss": 0.6}), es.stop     # a second evaluation without one
      (False, False, True)
      >>> es.best["step"]
      2
    """

    def __init__(
        self,
        monitor: str,
        mode: str,
        patience: Optional[int],
        best: Optional[dict] = None,
        bad_evals: int = 0,
        target: Optional[float] = None,
    ):
        if mode not in ("min", "max"):
            raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
        if patience is not None:
            patience = _checks.check_int(patience, "patience", want="None or a positive int")
        if target is not None and not (isinstance(target, (int, float)) and np.isfinite(target)):
            raise ValueError(f"stop_at: expected None or a finite number, got {target!r}")
        self.monitor, self.mode, self.patience, self.best, self.bad_evals = monitor, mode, patience, best, bad_evals
        self.target, self.reached = target, False

    def update(self, row: dict) -> bool:
        """Record an evaluation; True when it is the best so far."""
        if self.monitor not in row:
            returned = sorted(k for k in row if k not in ("step", "kind", "wall_s"))
            raise ValueError(
                f"monitor: the evaluation returned {returned}, not {self.monitor!r}; pass monitor= one of those"
            )
        value = float(np.mean(row[self.monitor]))
        if self.target is not None:
            self.reached = value <= self.target if self.mode == "min" else value >= self.target
        best = None if self.best is None else float(np.mean(self.best[self.monitor]))
        if best is None or (value < best if self.mode == "min" else value > best):
            self.best, self.bad_evals = dict(row), 0
            return True
        self.bad_evals += 1
        return False

    @property
    def stop(self) -> bool:
        return self.reached or (self.patience is not None and self.bad_evals >= self.patience)


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns.

    Attributes:
      state: the :class:`TrainState` after the last update (with a leading seed axis for ``seeds``).
      status: ``"done"``, ``"early_stopped"``, ``"reached"`` (the target), ``"budget"`` (``max_seconds``)
        or ``"diverged"``.
      message: a sentence saying why the run stopped.
      history: every logged metrics row (dicts with ``step``, ``loss``, ..., ``wall_s``).
      best: the best evaluation row, when ``eval_fn`` was given.
      carry: the carry after the last update, with ``fit(carry=...)``.

    Examples:
      >>> import optax
      >>> res = rnn_jax.train.fit(lambda p, b: (jnp.sum((p["w"] - 3.0) ** 2), {}), {"w": jnp.zeros(2)},
      ...                   optax.sgd(0.1), lambda step: None, steps=50, log_every=25)
      >>> res.status, [r["step"] for r in res.history], round(float(res.state.params["w"][0]), 3)
      ('done', [25, 50], 3.0)
    """

    state: TrainState
    status: str  # "done", "early_stopped", "reached", "budget" or "diverged"
    message: str
    history: list  # every logged metrics row
    best: Optional[dict] = None  # the best evaluation row, when eval_fn was given
    carry: Any = None  # the carry after the last update, with fit(carry=...)


def _positive_int(name, v):
    return _checks.check_int(v, name)


def _seed_axis(params, seeds, what="params"):
    """``seeds``: None (no seed axis) or the size of the leading seed axis of ``params`` (or of a batch), checked."""
    if seeds is None:
        return
    _positive_int("seeds", seeds)
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        if np.ndim(leaf) < 1 or np.shape(leaf)[0] != seeds:
            raise ValueError(
                f"{what}{jax.tree_util.keystr(path)}: expected a leading seed axis of size {seeds} "
                f"(seeds={seeds}), got shape {tuple(np.shape(leaf))}"
            )


def fit(
    loss_fn: Callable,
    params,
    tx: optax.GradientTransformation,
    batch_fn: Callable[[int], Any],
    steps: int,
    *,
    run_dir: Optional[str] = None,
    eval_fn: Optional[Callable[[Any], dict]] = None,
    eval_every: int = 100,
    log_every: int = 10,
    checkpoint_every: int = 100,
    resume: bool = False,
    monitor: str = "val_loss",
    mode: str = "min",
    patience: Optional[int] = None,
    stop_at: Optional[float] = None,
    tokens_per_batch: Optional[int] = None,
    seeds: Optional[int] = None,
    seed_batches: bool = False,
    eval_stacked: bool = False,
    key=None,
    carry=None,
    reset: Optional[Callable[[int], bool]] = None,
    max_seconds: Optional[float] = None,
    progress: bool | str = True,
    desc: str = "train",
    mesh=None,
    callbacks: Sequence[Any] = (),
) -> FitResult:
    """Train ``params`` for ``steps`` updates. Returns a :class:`FitResult`.

    ``fit`` is :func:`update` (jitted) in :func:`run_loop`, followed after every update by callbacks
    (:mod:`rnn_jax.callbacks`) that its arguments choose: divergence, the train log, evaluation with early
    stopping (an :class:`EarlyStopping`), checkpoints (a :class:`RunFiles`), a wall-clock budget and a
    progress bar; ``callbacks`` adds one's own after those.

    Args:
      loss_fn: ``(params, batch) -> (loss, aux dict)``; with ``key``, called as ``loss_fn(params, batch,
        key=k)``; with ``carry``, as ``loss_fn(params, batch, carry=c)`` (both keywords when both are
        given) and returning ``(loss, (aux dict, new carry))``.
      params: the initial parameters (with ``seeds``: a leading seed axis on every leaf).
      tx: the optax transformation (:func:`optimizer`).
      batch_fn: ``step -> batch``; must be a pure function of the step for exact resume.
      steps: the number of updates (the run ends earlier when it stops early, diverges or runs out of
        ``max_seconds``).
      run_dir: where ``metrics.jsonl``, ``checkpoint.msgpack`` (last good) and ``best.msgpack`` go;
        a folder holding a run is refused unless ``resume``.
      eval_fn: ``params -> dict`` of validation metrics, every ``eval_every`` steps and at the end;
        it must return ``monitor``. With ``seeds`` it is called once per seed, on that seed's params
        (each value logged as the list over seeds), unless ``eval_stacked``: then once, on the stacked
        params (an evaluation that maps the seeds itself, e.g. with ``jax.vmap``).
      resume: continue from ``run_dir/checkpoint.msgpack`` if it exists (params, optimiser state,
        carry, early-stopping record and the wall-clock already spent).
      monitor: the ``eval_fn`` metric that early stopping and ``best.msgpack`` follow (its mean over seeds).
      mode: ``"min"`` or ``"max"``: whether a smaller or a larger ``monitor`` is better.
      patience: stop after this many evaluations without improvement (None: never).
      stop_at: stop (status ``"reached"``) at the first evaluation whose ``monitor`` is at most this
        value (mode min) or at least it (mode max), e.g. once a task counts as solved.
      seeds: None, or the number of seeds trained at once (vmapped): the size of the leading seed axis
        of ``params`` (as in :func:`sweep`).
      seed_batches: with ``seeds``, ``batch_fn`` returns one batch per seed (leaves with the same leading
        seed axis), e.g. one per cross-validation fold; by default every seed sees the same batch.
      key: a ``jax.random.key`` for the randomness of training (dropout): update ``s`` gets
        ``jax.random.fold_in(key, s)`` (with ``seeds``, seed ``i`` gets
        ``jax.random.split(jax.random.fold_in(key, s), seeds)[i]``), so a resumed run draws the same masks.
      carry: stateful training (truncated BPTT over consecutive windows of streams): the carry before
        the first update (e.g. a layer's zero state for the batch); each update's new carry, without
        gradient, enters the next one. It is checkpointed with the state and resumed exactly.
      reset: with ``carry``, ``step -> bool``: True at the steps where the streams restart (a new pass
        over the text): the carry is put back to ``carry`` before that update. None: never.
      max_seconds: a wall-clock budget for the loop (compilation and evaluations included, summed over
        resumes): when spent, the run stops with status ``"budget"`` and a checkpoint.
      eval_every: updates between evaluations (and one at the end).
      log_every: updates between logged ``kind="train"`` rows (and one at the end).
      checkpoint_every: updates between checkpoints (and one at the end; one also when the run stops
        early, diverges or spends its budget).
      tokens_per_batch: tokens in a batch, for a ``tokens_per_s`` column (None: none).
      eval_stacked: with ``seeds``, call ``eval_fn`` once on the stacked params (see ``eval_fn``).
      progress: True: a progress bar on a terminal, and when stderr is not one (a log file, a batch
        job) a plain line every 30 s and at the end (:class:`PlainProgress`: step, loss, steps/s, ETA);
        ``"force"``: the bar whatever stderr is; ``"plain"``: the plain lines; False: nothing.
      desc: the progress bar's label.
      mesh: a :class:`jax.sharding.Mesh` with a ``data`` axis (see :mod:`rnn_jax.distributed`): the
        batch from ``batch_fn`` (this process's part of it) is split along ``data``, the state is
        replicated (or split along ``model``). Checkpoints are written by process 0 only.
      callbacks: more :class:`rnn_jax.callbacks.Callback` objects, called after fit's own at every update
        (a TensorBoard writer, a custom stopping rule); one that returns a ``Stop`` ends the run.

    Logged rows: ``kind="train"`` every ``log_every`` updates with the metrics of the last update,
    ``steps_per_s`` (updates per second since the previous row, the first update of a process excluded:
    it holds the compilation, logged once as ``first_step_s``) and ``tokens_per_s`` with
    ``tokens_per_batch``; ``kind="eval"`` rows with ``eval_fn``'s metrics. Every row has ``step`` and
    ``wall_s`` (seconds since the loop began, summed over resumes).

    Returns:
      A :class:`FitResult`: ``state`` (a :class:`TrainState`: ``step``, ``params``, ``opt_state``),
      ``status`` (``"done"``, ``"early_stopped"``, ``"reached"``, ``"budget"`` or ``"diverged"``),
      ``message``, ``history`` (every logged row), ``best`` (the best evaluation row) and ``carry``.

    Examples:
      >>> model = rnn_jax.many_to_one(rnn_jax.rnn(rnn_jax.gru(8)), 1, input_size=2)
      >>> xs = jax.random.normal(jax.random.key(0), (32, 10, 2)); ys = xs.sum((1, 2))[:, None]
      >>> def loss_fn(p, batch):
      ...     return jnp.mean((model.apply(p, batch[0]) - batch[1]) ** 2), {}
      >>> res = rnn_jax.train.fit(loss_fn, model.init(jax.random.key(1)), rnn_jax.train.optimizer("adam", 1e-2),
      ...                         lambda step: (xs, ys), 50, progress=False)
      >>> res.status, int(res.state.step), res.history[-1]["loss"] < res.history[0]["loss"]
      ('done', 50, True)
    """
    from rnn_jax import distributed

    for name, v in (("log_every", log_every), ("eval_every", eval_every), ("checkpoint_every", checkpoint_every)):
        _positive_int(name, v)
    steps = _checks.check_int(steps, "steps", 0)
    _check_fit_inputs(loss_fn, params, seeds, seed_batches, key, carry, reset)
    if max_seconds is not None:
        max_seconds = _checks.check_real(max_seconds, "max_seconds", minimum=0)
    parts = _cb.standard(
        log_every, tokens_per_batch, eval_fn, eval_every, eval_stacked, checkpoint_every, max_seconds, progress, desc
    ) + _cb.checked_list(callbacks)
    loop, carry0, stopped = _begin(
        params, tx, steps, carry, seeds, run_dir, resume, mesh, EarlyStopping(monitor, mode, patience, target=stop_at)
    )
    if seed_batches:
        _seed_axis(batch_fn(0), seeds, what="batch_fn(0)")  # before tracing: one batch per seed
    if stopped:
        return FitResult(loop.state, stopped[0], stopped[1], loop.history, loop.stopper.best, loop.carry)
    step_fn = _make_update(loss_fn, tx, seeds, seed_batches, key is not None, carry is not None)
    get_batch = batch_fn if mesh is None else (lambda s: distributed.shard_batch(batch_fn(s), mesh))
    one_update = _one_update(step_fn, get_batch, key, seeds, reset, carry0, loop.start)
    status, message = run_loop(loop, one_update, parts)
    return FitResult(loop.state, status, message, loop.history, loop.stopper.best, loop.carry)


def run_loop(loop: _cb.Loop, one_update: Callable, callbacks: list) -> tuple[str, str]:
    """:func:`fit`'s loop: ``one_update(state, step, carry) -> (state, metrics, carry)`` for every step from
    ``loop.start`` to ``loop.steps``, each followed by the callbacks (:mod:`rnn_jax.callbacks`); the first
    :class:`~rnn_jax.callbacks.Stop` a callback returns ends it.

    Args:
      loop: the run's :class:`~rnn_jax.callbacks.Loop` (state, carry, first and last step, files, record).
      one_update: ``(state, step, carry) -> (state, metrics, carry)``.
      callbacks: :class:`~rnn_jax.callbacks.Callback` objects, called in this order.

    Returns:
      ``(status, message)``: ``("done", ...)`` unless a callback stopped the run.

    Examples:
      >>> loop = rnn_jax.callbacks.Loop(state=0, carry=None, start=0, steps=3, files=None, stopper=None,
      ...                               history=[], t_begin=0.0)
      >>> rnn_jax.train.run_loop(loop, lambda s, step, c: (s + 1, {}, c), []), loop.state
      (('done', 'trained 3 steps'), 3)
    """
    stop = _first_stop(cb.on_start(loop) for cb in callbacks)
    for step in range(loop.start, loop.steps) if stop is None else ():
        loop.state, metrics, loop.carry = one_update(loop.state, step, loop.carry)
        for cb in callbacks:
            stop = cb.on_step(loop, step + 1, metrics)
            if stop is not None:
                break
        if stop is not None:
            break
    status, message = stop if stop is not None else ("done", f"trained {loop.steps} steps")
    for cb in callbacks:
        cb.on_end(loop, status, message)
    return status, message


def _one_update(step_fn, get_batch, key, seeds, reset, carry0, start: int):
    """``(state, step, carry) -> (state, metrics, carry)``: update ``step`` on ``get_batch(step)``, with its
    key (``fold_in(key, step)``, split over seeds) and its reset flag. The first call traces the user's
    functions: an error there names the function and the batch it was given."""

    def one_update(state, step, carry):
        batch = get_batch(step)
        k = None if key is None else jax.random.fold_in(key, step)
        k = k if k is None or seeds is None else jax.random.split(k, seeds)
        flag = bool(reset(step)) if reset is not None else False
        if step > start:
            return step_fn(state, batch, k, carry, flag, carry0)
        batch = _check_batch(batch, step)
        try:
            return step_fn(state, batch, k, carry, flag, carry0)
        except (TypeError, IndexError, KeyError, AttributeError) as e:
            raise ValueError(
                f"loss_fn: calling it on batch_fn({step}) = {describe(batch)} raised {type(e).__name__}: {e}"
            ) from e

    return one_update


def _first_stop(stops):
    return next((s for s in stops if s is not None), None)


def _check_fit_inputs(loss_fn, params, seeds, seed_batches, key, carry, reset) -> None:
    _seed_axis(params, seeds)
    if seed_batches and seeds is None:
        raise ValueError("seed_batches=True needs seeds (the size of the leading seed axis)")
    if key is not None:
        from rnn_jax.regularization import check_key

        check_key(key)
    for kw, given in (("key", key), ("carry", carry)):
        if given is not None and not _checks.takes_keyword(loss_fn, kw):
            raise ValueError(
                f"loss_fn: fit({kw}=...) calls loss_fn(params, batch, {kw}=...), but loss_fn takes no "
                f"{kw!r} argument; add one (def loss_fn(params, batch, {kw}): ...) or leave {kw} out"
            )
    if reset is not None and (carry is None or not callable(reset)):
        raise ValueError("reset: expected a function step -> bool, with carry= (the state it resets to)")


def _begin(params, tx, steps, carry, seeds, run_dir, resume, mesh, stopper):
    """The loop's starting point: a fresh state, or the checkpoint's with ``resume``. Returns ``(loop, carry0,
    stopped)``: ``carry0`` the carry that ``reset`` restores, ``stopped`` the (status, message) of a run that
    had ended for good, else None."""
    from rnn_jax import distributed

    writer = jax.process_index() == 0
    files = RunFiles(run_dir, resume, writer)
    state = (jax.vmap(lambda p: init_state(p, tx)) if seeds is not None else (lambda p: init_state(p, tx)))(params)
    carry0 = None
    if carry is not None:
        carry0 = jax.tree.map(jnp.asarray, carry)
        if seeds is not None:
            carry0 = jax.tree.map(lambda c: jnp.broadcast_to(c, (seeds,) + c.shape), carry0)
    cur = None if carry0 is None else jax.tree.map(jnp.array, carry0)  # a copy: the update reuses its buffers
    history, start, stopped, spent = [], 0, None, 0.0
    if resume and files.has_checkpoint():
        host = jax.tree.map(distributed.to_host, state)
        if carry is None:
            state, extra = load_checkpoint(files.ckpt, host)
        else:
            (state, cur), extra = load_checkpoint(files.ckpt, (host, jax.tree.map(distributed.to_host, cur)))
        start, spent = int(extra["step"]), float(extra.get("train_s", 0.0))
        stopper.best, stopper.bad_evals = extra.get("best"), extra.get("bad_evals", 0)
        history = files.rows(start)
        stopped = extra.get("stopped")  # it ended early (target reached, patience): resuming does not undo that
    elif resume:
        files.rows(0)  # nothing to resume from: an old log without a checkpoint starts over
    if mesh is not None:
        state = distributed.place_state(state, mesh)
    loop = _cb.Loop(state, cur, start, steps, files, stopper, history, time.perf_counter() - spent, seeds, writer)
    return loop, carry0, stopped


# ---------------------------------------------------------------------------------------------
# Sweeps: many settings in one program.


def _global(tree, sharding):
    """Every leaf of a host tree as a global array laid out by ``sharding``."""

    def one(a):
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    return jax.tree.map(one, tree)


def _check_settings(settings: list, optimizer_fn) -> list:
    """:func:`sweep`'s ``settings``: one or more dicts with the same keys, each an argument of ``optimizer_fn``
    and a finite number. Returns the sorted keys."""
    if not settings:
        raise ValueError("settings: expected at least one setting")
    keys = sorted(settings[0])
    for i, s in enumerate(settings):
        if sorted(s) != keys:
            raise ValueError(f"settings[{i}]: expected the keys {keys}, got {sorted(s)}")
    import inspect

    try:
        takes = inspect.signature(optimizer_fn).parameters
        unknown = (
            [k for k in keys if k not in takes] if not any(p.kind == p.VAR_KEYWORD for p in takes.values()) else []
        )
    except (TypeError, ValueError):
        unknown = []
    if unknown:
        raise ValueError(
            f"settings: {unknown} are not arguments of optimizer_fn "
            f"({getattr(optimizer_fn, '__name__', optimizer_fn)} takes {sorted(takes)})"
        )
    for i, s in enumerate(settings):
        for k, v in s.items():
            if not (isinstance(v, (int, float, np.number)) and math.isfinite(float(v))):
                raise ValueError(f"settings[{i}][{k!r}]: expected a finite number, got {v!r}")
    return keys


def sweep(
    loss_fn: Callable,
    init_fn: Callable[[jax.Array], Any],
    optimizer_fn: Callable[..., optax.GradientTransformation],
    settings: list[dict],
    seeds: int,
    batch_fn: Callable[[int], Any],
    steps: int,
    *,
    mesh=None,
    run_dir: Optional[str] = None,
    log_every: int = 10,
) -> list[dict]:
    """Train every (setting, seed) pair at once: one jitted step vmapped over a leading axis of size
    ``len(settings) * len(seeds)``, which a ``mesh`` spreads over its ``data`` devices.

    Args:
      loss_fn: ``(params, batch) -> (loss, aux)``, as :func:`make_step` takes it.
      init_fn: ``key -> params``.
      optimizer_fn: an optax optimiser factory taking the hyperparameters by keyword, e.g.
        ``optax.adam``; each ``settings[i]`` gives its values (``{"learning_rate": 1e-3}``). The factory
        is wrapped in ``optax.inject_hyperparams`` so the values live in the optimiser state.
      seeds: the number of seeds per setting (as in :func:`fit`); seed ``i`` is initialised from
        ``init_fn(jax.random.key(i))``.
      settings: one dict of hyperparameters per setting, every dict with the same keys.
      batch_fn: ``step -> batch``, the same batch for every setting.
      steps: the number of updates.
      mesh: a mesh (:func:`rnn_jax.distributed.make_mesh`) whose ``data`` axis the pairs are split over,
        or None.
      run_dir: a folder for each pair's results and params, or None.
      log_every: updates between the loss curve's points.

    Returns:
      One dict per (setting, seed), settings outer: ``index``, ``setting``, ``seed``, ``final_loss`` and
      ``loss_curve`` (``[[step, loss], ...]``); with ``run_dir`` each is also written to
      ``run_dir/<i>/results.json`` and its params to ``run_dir/<i>/params.msgpack``.

    Examples:
      >>> import optax
      >>> def loss_fn(p, batch):
      ...     return jnp.mean((batch["x"] @ p["w"] - batch["y"]) ** 2), {}
      >>> batch = {"x": jnp.eye(3), "y": jnp.arange(3.0)}
      >>> rows = rnn_jax.train.sweep(loss_fn, lambda key: {"w": jnp.zeros(3)}, optax.sgd,
      ...                            [{"learning_rate": 0.1}, {"learning_rate": 1.0}], 2, lambda s: batch, 20)
      >>> [(r["setting"]["learning_rate"], r["seed"]) for r in rows]
      [(0.1, 0), (0.1, 1), (1.0, 0), (1.0, 1)]
      >>> rows[2]["final_loss"] < rows[0]["final_loss"]
      True
    """
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from rnn_jax import distributed

    if not isinstance(seeds, (int, np.integer)) or isinstance(seeds, bool):
        raise ValueError(f"seeds: expected the number of seeds (an int >= 1, as in fit), got {seeds!r}")
    seed_ids = list(range(_positive_int("seeds", seeds)))
    keys = _check_settings(settings, optimizer_fn)
    pairs = [(s, seed) for s in settings for seed in seed_ids]
    S = len(pairs)
    tx = optax.inject_hyperparams(optimizer_fn)(**settings[0])
    hp = {k: jnp.asarray([float(s[k]) for s, _ in pairs], jnp.float32) for k in keys}
    params = jax.vmap(init_fn)(jnp.stack([jax.random.key(seed) for _, seed in pairs]))

    def init_one(p, h):
        st = init_state(p, tx)
        opt = st.opt_state
        opt.hyperparams.update({k: h[k].astype(jnp.asarray(opt.hyperparams[k]).dtype) for k in keys})
        return TrainState(st.step, st.params, opt)

    state = jax.vmap(init_one)(params, hp)
    step_fn = make_step(loss_fn, tx, seeds=S)
    get_batch = batch_fn
    if mesh is not None:
        if S % mesh.shape["data"]:
            raise ValueError(f"settings x seeds = {S} must be divisible by the mesh's data axis {mesh.shape['data']}")
        spread = NamedSharding(mesh, P("data"))
        state = _global(state, spread)
        replicated = NamedSharding(mesh, P())
        get_batch = lambda s: _global(batch_fn(s), replicated)  # noqa: E731
    curves: list[list] = [[] for _ in range(S)]
    for step in range(steps):
        state, m = step_fn(state, get_batch(step))
        if (step + 1) % log_every == 0 or step + 1 == steps:
            losses = distributed.to_host(m["loss"])
            for i in range(S):
                curves[i].append([step + 1, float(losses[i])])
    host = jax.tree.map(distributed.to_host, state)
    out = []
    for i, (setting, seed) in enumerate(pairs):
        row = {"index": i, "setting": setting, "seed": seed, "final_loss": curves[i][-1][1], "loss_curve": curves[i]}
        out.append(row)
        if run_dir and jax.process_index() == 0:
            sub = os.path.join(run_dir, str(i))
            os.makedirs(sub, exist_ok=True)
            with open(os.path.join(sub, "results.json"), "w") as f:
                json.dump(row, f, indent=2)
            save_checkpoint(
                os.path.join(sub, "params.msgpack"),
                jax.tree.map(lambda a, i=i: a[i], host.params),
                {"setting": setting, "seed": seed},
            )
    return out
