"""Training: optax chains, a jitted step, and a fit loop that loses nothing.

* :func:`optimizer` builds ``optax.chain(clip..., optimiser)``: clipping (by value, then by global
  norm) comes first, as the seeds prescribe for exploding gradients.
* :func:`make_step` jits one update of a batched loss; an update whose loss or gradients are not
  finite is not applied, and the step reports it.
* :func:`fit` runs the loop: progress bar (loss, tokens/s, ETA), ``metrics.jsonl``, atomic
  checkpoints, exact resume, early stopping on a validation metric, a clear stop on NaN/Inf that
  keeps the last good checkpoint. ``seeds > 1`` trains several seeds at once under ``jax.vmap``.

Batches are a pure function of the step number (``batch_fn(step)``), so a resumed run sees exactly
the batches an uninterrupted one would, and reaches the same parameters.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization

__all__ = ["optimizer", "TrainState", "make_step", "fit", "FitResult", "epoch_batches",
           "save_checkpoint", "load_checkpoint", "sweep", "OPTIMIZERS", "SCHEDULES"]

OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "adagrad", "rmsprop")
SCHEDULES = ("constant", "cosine", "exponential", "warmup_cosine")


def schedule(lr: float, kind: str = "constant", steps: int = 1000, warmup: int = 0,
             decay_rate: float = 0.1) -> optax.Schedule:
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


def optimizer(name: str = "adam", lr: float = 1e-3, *, clip_value: Optional[float] = None,
              clip_norm: Optional[float] = None, momentum: float = 0.9, weight_decay: float = 1e-4,
              lr_schedule: str = "constant", steps: int = 1000, warmup: int = 0) -> optax.GradientTransformation:
    """``optax.chain(clip_by_value?, clip_by_global_norm?, <optimiser>)``.

    Args:
      name: ``sgd`` (plain gradient descent), ``momentum``, ``nesterov``, ``adam``, ``adamw``,
        ``adagrad``, ``rmsprop``.
      lr: peak learning rate; ``lr_schedule`` shapes it over ``steps`` (see :func:`schedule`).
      clip_value: clip every gradient entry into ``[-clip_value, clip_value]``.
      clip_norm: rescale the whole gradient to global norm at most ``clip_norm`` (Pascanu et al. 2013).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"name: expected one of {OPTIMIZERS}, got {name!r}")
    for arg, v in (("lr", lr), ("clip_value", clip_value), ("clip_norm", clip_norm)):
        if v is not None and not (isinstance(v, (int, float)) and v > 0):
            raise ValueError(f"{arg}: expected a positive number, got {v!r}")
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
    """Everything a run needs to continue: step count, params, optimiser state."""

    step: jax.Array
    params: Any
    opt_state: Any


def init_state(params, tx: optax.GradientTransformation) -> TrainState:
    """A fresh state. ``params`` are copied: the jitted step donates (reuses) the state's buffers."""
    params = jax.tree.map(jnp.array, params)
    return TrainState(jnp.asarray(0, jnp.int32), params, tx.init(params))


def make_step(loss_fn: Callable, tx: optax.GradientTransformation, seeds: int = 1):
    """``step(state, batch) -> (state, metrics)``, jitted.

    ``loss_fn(params, batch) -> (loss, aux)``: the batch loss (vmap over examples inside), ``aux`` a
    dict of scalar metrics. Metrics add ``loss``, ``grad_norm`` (before clipping) and ``finite``.
    A non-finite loss or gradient leaves the state unchanged. With ``seeds > 1`` the state carries a
    leading seed axis and the step is vmapped over it (the same batch for every seed).
    """

    def one(state: TrainState, batch):
        (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
        gnorm = optax.tree_utils.tree_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(gnorm)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new = TrainState(state.step + 1, params, opt_state)
        new = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, state)
        return new, dict(aux, loss=loss, grad_norm=gnorm, finite=finite)

    if seeds > 1:
        one = jax.vmap(one, in_axes=(0, None))
    return jax.jit(one, donate_argnums=0)


def epoch_batches(n: int, batch_size: int, key: jax.Array, drop_last: bool = True):
    """``indices(step) -> (batch_size,)`` example indices: a fresh permutation every epoch, derived
    from ``key`` and the epoch number alone (so any step can be recomputed after a resume)."""
    if batch_size > n:
        raise ValueError(f"batch_size: expected at most the number of examples {n}, got {batch_size}")
    per_epoch = n // batch_size if drop_last else math.ceil(n / batch_size)
    cache = {}

    def indices(step: int) -> np.ndarray:
        epoch, i = divmod(int(step), per_epoch)
        if epoch not in cache:
            cache.clear()
            cache[epoch] = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))
        perm = cache[epoch]
        return perm[i * batch_size:(i + 1) * batch_size]

    indices.steps_per_epoch = per_epoch
    return indices


# ---------------------------------------------------------------------------------------------
# Checkpoints: flax msgpack, written to a temporary file and renamed (atomic on POSIX).

def save_checkpoint(path: str, state: Any, extra: Optional[dict] = None) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    blob = serialization.msgpack_serialize({"state": serialization.to_state_dict(jax.device_get(state)),
                                            "extra": json.dumps(extra or {})})
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(blob)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: str, template: Any):
    """Returns ``(state, extra)``; ``template`` gives the structure (e.g. a freshly initialised state)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint: no file at {path}")
    with open(path, "rb") as f:
        try:
            raw = serialization.msgpack_restore(f.read())
        except Exception as e:  # noqa: BLE001 - any decode failure means a corrupt file
            raise ValueError(f"checkpoint: {path} is corrupt or not an rnn_jax checkpoint ({e})") from e
    state = serialization.from_state_dict(template, raw["state"])
    state = jax.tree.map(lambda t, a: jnp.asarray(a, dtype=getattr(t, "dtype", None)), template, state)
    return state, json.loads(raw["extra"])


# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class FitResult:
    state: TrainState
    status: str                 # "done", "early_stopped" or "diverged"
    message: str
    history: list               # every logged metrics row
    best: Optional[dict] = None  # the best evaluation row, when eval_fn was given


def _to_py(x):
    a = np.asarray(x)
    return a.item() if a.ndim == 0 else a.tolist()


def fit(loss_fn: Callable, params, tx: optax.GradientTransformation, batch_fn: Callable[[int], Any], steps: int, *,
        run_dir: Optional[str] = None, eval_fn: Optional[Callable[[Any], dict]] = None, eval_every: int = 100,
        log_every: int = 10, checkpoint_every: int = 100, resume: bool = False, monitor: str = "val_loss",
        mode: str = "min", patience: Optional[int] = None, tokens_per_batch: Optional[int] = None,
        seeds: int = 1, progress: bool = True, desc: str = "train", mesh=None) -> FitResult:
    """Train ``params`` for ``steps`` updates. Returns a :class:`FitResult`.

    Args:
      loss_fn: ``(params, batch) -> (loss, aux dict)``.
      batch_fn: ``step -> batch``; must be a pure function of the step for exact resume.
      run_dir: where ``metrics.jsonl``, ``checkpoint.msgpack`` (last good) and ``best.msgpack`` go.
      eval_fn: ``params -> dict`` of validation metrics, every ``eval_every`` steps and at the end.
      resume: continue from ``run_dir/checkpoint.msgpack`` if it exists.
      monitor, mode, patience: early stopping on ``eval_fn``'s ``monitor`` metric.
      seeds: with ``seeds > 1``, ``params`` carries a leading seed axis (see ``jax.vmap`` over keys).
      mesh: a :class:`jax.sharding.Mesh` with a ``data`` axis (see :mod:`rnn_jax.distributed`): the
        batch from ``batch_fn`` (this process's part of it) is split along ``data``, the state is
        replicated (or split along ``model``). Checkpoints are written by process 0 only.
    """
    if mode not in ("min", "max"):
        raise ValueError(f"mode: expected 'min' or 'max', got {mode!r}")
    from rnn_jax import distributed

    step_fn = make_step(loss_fn, tx, seeds)
    state = (jax.vmap(lambda p: init_state(p, tx)) if seeds > 1 else (lambda p: init_state(p, tx)))(params)
    get_batch = batch_fn if mesh is None else (lambda s: distributed.shard_batch(batch_fn(s), mesh))
    writer = jax.process_index() == 0
    ckpt = os.path.join(run_dir, "checkpoint.msgpack") if run_dir else None
    metrics_path = os.path.join(run_dir, "metrics.jsonl") if run_dir else None
    history, best, bad_evals, start = [], None, 0, 0
    if resume and ckpt and os.path.exists(ckpt):
        state, extra = load_checkpoint(ckpt, jax.tree.map(distributed.to_host, state))
        start, best, bad_evals = int(extra["step"]), extra.get("best"), extra.get("bad_evals", 0)
        if metrics_path and os.path.exists(metrics_path):  # drop rows logged after the checkpoint
            with open(metrics_path) as f:
                history = [r for r in map(json.loads, f) if r["step"] <= start]
            with open(metrics_path, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in history)
    if mesh is not None:
        state = distributed.place_state(state, mesh)
    if run_dir and writer:
        os.makedirs(run_dir, exist_ok=True)

    def log(row):
        history.append(row)
        if metrics_path and writer:
            with open(metrics_path, "a") as f:
                f.write(json.dumps(row) + "\n")

    def save(step):
        if ckpt:
            host = jax.tree.map(distributed.to_host, state)  # every process takes part in gathers
            if writer:
                save_checkpoint(ckpt, host, {"step": step, "best": best, "bad_evals": bad_evals})

    def evaluate(step):
        nonlocal best, bad_evals
        row = {k: _to_py(v) for k, v in eval_fn(state.params).items()}
        row.update(step=step, kind="eval")
        log(row)
        value = np.mean(row[monitor]) if monitor in row else None
        best_value = None if best is None else np.mean(best[monitor])  # the mean over seeds
        if value is not None and (best is None or (value < best_value if mode == "min" else value > best_value)):
            best, bad_evals = dict(row), 0
            if run_dir:
                host = jax.tree.map(distributed.to_host, state)
                if writer:
                    save_checkpoint(os.path.join(run_dir, "best.msgpack"), host, {"step": step, "best": best})
        elif value is not None:
            bad_evals += 1
        return row

    bar = None
    if progress and writer:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, initial=start, desc=desc, disable=not sys.stderr.isatty() and progress != "force",
                   dynamic_ncols=True)
    status, message, t_last, step = "done", f"trained {steps} steps", time.perf_counter(), start
    since = 0
    for step in range(start, steps):
        state, m = step_fn(state, get_batch(step))
        since += 1
        if not bool(np.all(distributed.to_host(m["finite"]))):  # the one value fetched every step
            m = {k: distributed.to_host(v) for k, v in m.items()}
            status = "diverged"
            message = (f"step {step}: loss or gradient is not finite (loss={_to_py(m['loss'])}, "
                       f"grad_norm={_to_py(m['grad_norm'])}); stopped, the last good checkpoint is kept")
            log({"step": step + 1, "kind": "diverged", **{k: _to_py(v) for k, v in m.items()}})
            save(step)  # the state was not updated by the bad step: it is the last good one
            break
        done = step + 1
        if done % log_every == 0 or done == steps:
            now = time.perf_counter()
            row = {k: _to_py(distributed.to_host(v)) for k, v in m.items() if k != "finite"}
            row.update(step=done, kind="train", steps_per_s=since / (now - t_last))
            if tokens_per_batch:
                row["tokens_per_s"] = since * tokens_per_batch / (now - t_last)
            log(row)
            t_last, since = now, 0
            if bar is not None:
                post = {"loss": f"{np.mean(row['loss']):.4f}"}
                if tokens_per_batch:
                    post["tok/s"] = f"{row['tokens_per_s']:.0f}"
                bar.set_postfix(post)
        if eval_fn is not None and (done % eval_every == 0 or done == steps):
            evaluate(done)
            if patience is not None and bad_evals >= patience:
                status, message = "early_stopped", f"no improvement of {monitor} in {patience} evaluations"
                save(done)
                if bar is not None:
                    bar.update(1)
                break
        if done % checkpoint_every == 0 or done == steps:
            save(done)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if status == "diverged":
        print(f"[rnn_jax] {message}", file=sys.stderr)
    return FitResult(state, status, message, history, best)


# ---------------------------------------------------------------------------------------------
# Sweeps: many settings in one program.

def sweep(loss_fn: Callable, init_fn: Callable[[jax.Array], Any], optimizer_fn: Callable[..., optax.GradientTransformation],
          settings: list[dict], seeds: list[int], batch_fn: Callable[[int], Any], steps: int, *, mesh=None,
          run_dir: Optional[str] = None, log_every: int = 10) -> list[dict]:
    """Train every (setting, seed) pair at once: one jitted step vmapped over a leading axis of size
    ``len(settings) * len(seeds)``, which a ``mesh`` spreads over its ``data`` devices.

    Args:
      init_fn: ``key -> params``.
      optimizer_fn: an optax optimiser factory taking the hyperparameters by keyword, e.g.
        ``optax.adam``; each ``settings[i]`` gives its values (``{"learning_rate": 1e-3}``). The factory
        is wrapped in ``optax.inject_hyperparams`` so the values live in the optimiser state.
      batch_fn: ``step -> batch``, the same batch for every setting.
    Returns one dict per (setting, seed): the setting, the seed, the final loss and the loss curve;
    with ``run_dir`` each is also written to ``run_dir/<i>/results.json`` and its params to
    ``run_dir/<i>/params.msgpack``.
    """
    from jax.sharding import NamedSharding, PartitionSpec as P

    from rnn_jax import distributed

    if not settings or not seeds:
        raise ValueError("settings, seeds: expected at least one of each")
    keys = sorted(settings[0])
    for i, s in enumerate(settings):
        if sorted(s) != keys:
            raise ValueError(f"settings[{i}]: expected the keys {keys}, got {sorted(s)}")
    pairs = [(s, seed) for s in settings for seed in seeds]
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
        state = jax.tree.map(lambda a: jax.make_array_from_callback(a.shape, spread, lambda idx, a=np.asarray(a): a[idx]),
                             state)
        replicated = NamedSharding(mesh, P())
        get_batch = lambda s: jax.tree.map(  # noqa: E731
            lambda a: jax.make_array_from_callback(np.shape(a), replicated, lambda idx, a=np.asarray(a): a[idx]),
            batch_fn(s))
    curves = [[] for _ in range(S)]
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
            save_checkpoint(os.path.join(sub, "params.msgpack"), jax.tree.map(lambda a: a[i], host.params),
                            {"setting": setting, "seed": seed})
    return out
