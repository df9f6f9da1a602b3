"""What :func:`rnn_jax.train.fit` does around its updates: each part is a callback.

``fit``'s loop is an update and a list of callbacks::

    for cb in callbacks: cb.on_start(loop)                       # may stop before any update
    for step in range(loop.start, loop.steps):
        loop.state, metrics, loop.carry = update(loop.state, batch_fn(step), ...)
        for cb in callbacks: cb.on_step(loop, step + 1, metrics)  # the first to return a Stop ends the run
    for cb in callbacks: cb.on_end(loop, status, message)

A callback subclasses :class:`Callback` and overrides the hooks it needs; ``on_start`` and ``on_step``
return None to go on, or a :class:`Stop` (status and a sentence) to end the run; then no later callback
sees that step, and every callback's ``on_end`` runs. ``fit`` builds its own callbacks from its
arguments, in this order: :class:`Diverged`, :class:`TrainLog`, :class:`Evaluate`, :class:`Checkpoint`,
:class:`Budget`, :class:`Progress`, then those passed as ``fit(callbacks=[...])``.

``loop`` (a :class:`Loop`) holds what the run has: ``state`` (a :class:`~rnn_jax.train.TrainState`),
``carry``, ``history``, ``files`` (:class:`~rnn_jax.train.RunFiles`), ``stopper``
(:class:`~rnn_jax.train.EarlyStopping`), ``log(row)``, ``save(step)`` and ``wall_s()``.

Examples:
  A stopping rule of one's own (a TensorBoard writer has the same shape: an ``on_step`` that writes):

  >>> import optax
  >>> class StopBelow(rnn_jax.callbacks.Callback):
  ...     def on_step(self, loop, step, metrics):
  ...         if float(metrics["loss"]) < 1e-3:
  ...             return rnn_jax.callbacks.Stop("reached", f"loss below 1e-3 at update {step}")
  >>> res = rnn_jax.train.fit(lambda p, b: (jnp.sum((p["w"] - 3.0) ** 2), {}), {"w": jnp.zeros(1)},
  ...                         optax.sgd(0.1), lambda step: None, 100, progress=False, callbacks=[StopBelow()])
  >>> res.status, res.message, int(res.state.step)
  ('reached', 'loss below 1e-3 at update 22', 22)
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np

from rnn_jax import distributed

__all__ = [
    "Callback",
    "Stop",
    "Loop",
    "Diverged",
    "TrainLog",
    "Evaluate",
    "Checkpoint",
    "Budget",
    "Progress",
    "PlainProgress",
    "PLAIN_PROGRESS_EVERY_S",
    "to_py",
    "standard",
    "checked_list",
]


class Stop(NamedTuple):
    """A callback's request to end the run: ``status`` (``FitResult.status``) and a sentence saying why.

    Attributes:
      status: the run's status, e.g. ``"reached"``.
      message: why it stopped.

    Examples:
      >>> rnn_jax.callbacks.Stop("reached", "loss below 1e-3").status
      'reached'
    """

    status: str
    message: str


@dataclasses.dataclass
class Loop:
    """The run as the callbacks see it. ``state``, ``carry`` and ``history`` change as it goes.

    Attributes:
      state: the :class:`~rnn_jax.train.TrainState` after the latest update.
      carry: the carry after the latest update (with ``fit(carry=...)``), else None.
      start: the first update of this process (not 0 after a resume).
      steps: the update count the run ends at.
      files: the run folder (:class:`~rnn_jax.train.RunFiles`).
      stopper: the evaluations' record (:class:`~rnn_jax.train.EarlyStopping`).
      history: every row logged so far.
      t_begin: ``time.perf_counter()`` at the loop's start, less the seconds spent before a resume.
      seeds: the size of the state's leading seed axis, or None.
      writer: whether this process writes files and progress (process 0).

    Examples:
      >>> import optax
      >>> class Peek(rnn_jax.callbacks.Callback):
      ...     def on_end(self, loop, status, message):
      ...         print(loop.start, loop.steps, int(loop.state.step), [r["step"] for r in loop.history])
      >>> _ = rnn_jax.train.fit(lambda p, b: (jnp.sum(p["w"] ** 2), {}), {"w": jnp.ones(2)}, optax.sgd(0.1),
      ...                         lambda step: None, 10, progress=False, log_every=5, callbacks=[Peek()])
      0 10 10 [5, 10]
    """

    state: Any
    carry: Any
    start: int
    steps: int
    files: Any
    stopper: Any
    history: list
    t_begin: float
    seeds: Optional[int] = None
    writer: bool = True

    def wall_s(self) -> float:
        """Seconds since the loop began, summed over resumes."""
        return time.perf_counter() - self.t_begin

    def log(self, row: dict) -> None:
        """Add a row to the history and to ``metrics.jsonl``."""
        self.history.append(row)
        self.files.log(row)

    def save(self, step: int, stopped: Optional[Stop] = None) -> None:
        """Checkpoint the state (and carry) as of update ``step``, with the evaluations' record; ``stopped``
        marks a run that ended for good (a resume returns at once)."""
        self.files.save(
            self.state if self.carry is None else (self.state, self.carry),
            {
                "step": step,
                "best": self.stopper.best,
                "bad_evals": self.stopper.bad_evals,
                "stopped": None if stopped is None else list(stopped),
                "train_s": self.wall_s(),
            },
        )


class Callback:
    """The hooks of :func:`rnn_jax.train.fit`'s loop; each does nothing unless overridden.

    Attributes:
      on_start: ``(loop) -> Stop | None``.
      on_step: ``(loop, step, metrics) -> Stop | None``.
      on_end: ``(loop, status, message) -> None``.

    Examples:
      >>> import optax
      >>> class Count(rnn_jax.callbacks.Callback):
      ...     n = 0
      ...     def on_step(self, loop, step, metrics):
      ...         Count.n += 1
      >>> _ = rnn_jax.train.fit(lambda p, b: (jnp.sum(p["w"] ** 2), {}), {"w": jnp.ones(2)}, optax.sgd(0.1),
      ...                         lambda step: None, 10, progress=False, callbacks=[Count()])
      >>> Count.n
      10
    """

    def on_start(self, loop: Loop) -> Optional[Stop]:
        """Before the first update of this process (after a resume)."""
        return None

    def on_step(self, loop: Loop, step: int, metrics: dict) -> Optional[Stop]:
        """After update number ``step`` (counting from 1), with its metrics (device arrays: ``loss``,
        ``grad_norm``, ``finite`` and ``loss_fn``'s aux)."""
        return None

    def on_end(self, loop: Loop, status: str, message: str) -> None:
        """Once, when the run ends (``status`` as in ``FitResult.status``)."""


def to_py(x):
    """A device value as a Python number, or nested lists of them.

    Args:
      x: an array (or a number).

    Returns:
      A Python number, or nested lists.

    Examples:
      >>> rnn_jax.callbacks.to_py(jnp.arange(3)), rnn_jax.callbacks.to_py(jnp.float32(0.5))
      ([0, 1, 2], 0.5)
    """
    a = np.asarray(distributed.to_host(x))
    return a.item() if a.ndim == 0 else a.tolist()


class Diverged(Callback):
    """Stops at the first update whose loss or gradient is not finite (that update was not applied): logs a
    ``kind="diverged"`` row, checkpoints the last good state, status ``"diverged"``. It reads one value per
    update, ``finite``: the only device-to-host transfer of an update that logs nothing.

    Attributes:
      (none): it holds no state.

    Examples:
      >>> import optax
      >>> res = rnn_jax.train.fit(lambda p, b: (jnp.log(p["w"][0] - 1.0), {}), {"w": jnp.ones(1)}, optax.sgd(0.1),
      ...                         lambda step: None, 10, progress=False)
      >>> res.status, res.history[-1]["kind"]
      ('diverged', 'diverged')
    """

    def on_step(self, loop, step, metrics):
        if bool(np.all(distributed.to_host(metrics["finite"]))):  # the one value fetched at every update
            return None
        m = {k: to_py(v) for k, v in metrics.items()}
        loop.log({"step": step, "kind": "diverged", **m})
        loop.save(step)  # the last good params and optimiser state; the count of batches consumed
        return Stop(
            "diverged",
            f"step {step - 1}: loss or gradient is not finite (loss={m['loss']}, "
            f"grad_norm={m['grad_norm']}); stopped, the last good checkpoint is kept",
        )

    def on_end(self, loop, status, message):
        if status == "diverged":
            print(f"[rnn_jax] {message}", file=sys.stderr)


class TrainLog(Callback):
    """A ``kind="train"`` row every ``every`` updates and at the last: the update's metrics, ``steps_per_s``
    since the previous row (the first update of a process, which compiles, excluded and logged once as
    ``first_step_s``) and, with ``tokens_per_batch``, ``tokens_per_s``.

    Args:
      every: updates between rows.
      tokens_per_batch: tokens in a batch, or None.

    Examples:
      >>> import optax
      >>> res = rnn_jax.train.fit(lambda p, b: (jnp.sum(p["w"] ** 2), {}), {"w": jnp.ones(2)}, optax.sgd(0.1),
      ...                         lambda step: None, 10, progress=False, log_every=4)
      >>> [r["step"] for r in res.history], "first_step_s" in res.history[0]
      ([4, 8, 10], True)
    """

    def __init__(self, every: int, tokens_per_batch: Optional[int] = None):
        self.every, self.tokens_per_batch = every, tokens_per_batch
        self.last_row: Optional[dict] = None

    def on_start(self, loop):
        self.t_last, self.since, self.first_step_s = time.perf_counter(), 0, None
        return None

    def on_step(self, loop, step, metrics):
        if step == loop.start + 1:  # the first update of this process holds the compilation: timed on its own
            now = time.perf_counter()
            self.first_step_s, self.t_last = now - self.t_last, now
        else:
            self.since += 1
        if step % self.every and step != loop.steps:
            return None
        now = time.perf_counter()
        row = {k: to_py(v) for k, v in metrics.items() if k != "finite"}
        row.update(step=step, kind="train", wall_s=loop.wall_s())
        if self.since:
            row["steps_per_s"] = self.since / (now - self.t_last)
            if self.tokens_per_batch:
                row["tokens_per_s"] = self.since * self.tokens_per_batch / (now - self.t_last)
        if self.first_step_s is not None:
            row["first_step_s"], self.first_step_s = self.first_step_s, None
        loop.log(row)
        self.t_last, self.since, self.last_row = now, 0, row
        return None


def _checked_eval(eval_fn, params) -> dict:
    from rnn_jax.train import describe

    out = eval_fn(params)
    if not isinstance(out, dict) or not all(isinstance(k, str) for k in out):
        raise ValueError(f"eval_fn: expected it to return a dict of named metrics, got {describe(out)}")
    for k, v in out.items():
        try:
            numeric = np.asarray(jax.device_get(v)).dtype.kind in "biuf"
        except (TypeError, ValueError):
            numeric = False
        if not numeric:
            raise ValueError(f"eval_fn: expected every metric to be a number (or numbers), got {k}={v!r:.200}")
    return out


class Evaluate(Callback):
    """``eval_fn(params) -> dict`` every ``every`` updates and at the last, logged as a ``kind="eval"`` row
    and fed to ``loop.stopper`` (early stopping, a target); a new best is saved to ``best.msgpack``. With
    seeds, one call per seed (values logged as lists over seeds) unless ``stacked``.

    Args:
      eval_fn: ``params -> dict`` of metrics.
      every: updates between evaluations.
      stacked: with seeds, one call on the stacked params.

    Examples:
      >>> import optax
      >>> res = rnn_jax.train.fit(lambda p, b: (jnp.sum(p["w"] ** 2), {}), {"w": jnp.ones(2)}, optax.sgd(0.1),
      ...                         lambda step: None, 10, progress=False,
      ...                         eval_fn=lambda p: {"val_loss": jnp.sum(p["w"] ** 2)}, eval_every=5)
      >>> [r["step"] for r in res.history if r["kind"] == "eval"], res.best["step"]
      ([5, 10], 10)
    """

    def __init__(self, eval_fn: Callable[[Any], dict], every: int, stacked: bool = False):
        self.eval_fn, self.every, self.stacked = eval_fn, every, stacked

    def evaluate(self, loop: Loop) -> dict:
        params = loop.state.params
        if loop.seeds is None or self.stacked:
            return {k: to_py(v) for k, v in _checked_eval(self.eval_fn, params).items()}
        outs = [_checked_eval(self.eval_fn, jax.tree.map(lambda a, i=i: a[i], params)) for i in range(loop.seeds)]
        if any(set(o) != set(outs[0]) for o in outs):
            raise ValueError(f"eval_fn: returned different keys for different seeds: {[sorted(o) for o in outs]}")
        return {k: [to_py(o[k]) for o in outs] for k in outs[0]}

    def on_step(self, loop, step, metrics):
        if step % self.every and step != loop.steps:
            return None
        row = dict(self.evaluate(loop), step=step, kind="eval", wall_s=loop.wall_s())
        loop.log(row)
        stopper = loop.stopper
        if stopper.update(row):
            loop.files.save(loop.state, {"step": step, "best": stopper.best}, "best.msgpack")
        if not stopper.stop:
            return None
        stop = (
            Stop("reached", f"{stopper.monitor} reached {stopper.target} after {step} steps")
            if stopper.reached
            else Stop("early_stopped", f"no improvement of {stopper.monitor} in {stopper.patience} evaluations")
        )
        loop.save(step, stop)
        return stop


class Checkpoint(Callback):
    """``checkpoint.msgpack`` every ``every`` updates and at the last (an atomic write: a run killed mid-save
    keeps the previous one).

    Args:
      every: updates between checkpoints.

    Examples:
      >>> import optax, tempfile
      >>> d = tempfile.mkdtemp()
      >>> _ = rnn_jax.train.fit(lambda p, b: (jnp.sum(p["w"] ** 2), {}), {"w": jnp.ones(2)}, optax.sgd(0.1),
      ...                         lambda step: None, 10, progress=False, run_dir=d, checkpoint_every=4)
      >>> rnn_jax.train.checkpoint_info(d + "/checkpoint.msgpack")["step"]
      10
    """

    def __init__(self, every: int):
        self.every = every

    def on_step(self, loop, step, metrics):
        if step % self.every == 0 or step == loop.steps:
            loop.save(step)
        return None


class Budget(Callback):
    """A wall-clock budget for the loop (compilation and evaluations included, summed over resumes): once
    ``max_seconds`` are spent, a checkpoint and status ``"budget"`` (a resume with a larger budget goes on).

    Args:
      max_seconds: the budget.

    Examples:
      >>> import optax
      >>> res = rnn_jax.train.fit(lambda p, b: (jnp.sum(p["w"] ** 2), {}), {"w": jnp.ones(2)}, optax.sgd(0.1),
      ...                         lambda step: None, 10, progress=False, max_seconds=0)
      >>> res.status, int(res.state.step)
      ('budget', 0)
    """

    def __init__(self, max_seconds: float):
        self.max_seconds = max_seconds

    def _check(self, loop, step):
        if step >= loop.steps or loop.wall_s() < self.max_seconds:
            return None
        loop.save(step)
        return Stop("budget", f"the wall-clock budget of {self.max_seconds:g} s was spent after {step} steps")

    def on_start(self, loop):
        return self._check(loop, loop.start)

    def on_step(self, loop, step, metrics):
        return self._check(loop, step)


PLAIN_PROGRESS_EVERY_S = 30.0  # seconds between fit's plain progress lines when stderr is not a terminal


class PlainProgress:
    """``fit``'s progress when stderr is not a terminal (a log file, a batch job): a plain line every
    :data:`PLAIN_PROGRESS_EVERY_S` seconds and at the end, ``desc: step 250/6000 (4 %), loss 0.1432,
    1.10 steps/s, ETA 1 h 27 min``. The same calls as the tqdm bar it stands in for.

    Args:
      total: the last step.
      initial: the first (after a resume).
      desc: the label.
      every_s: seconds between lines (None: :data:`PLAIN_PROGRESS_EVERY_S`).
      file: where the lines go (None: stderr).

    Examples:
      >>> import sys
      >>> bar = rnn_jax.callbacks.PlainProgress(10, desc="demo", every_s=1e9, file=sys.stdout)
      >>> bar.update(10); bar.close()  # doctest: +ELLIPSIS
      demo: step 10/10 (100 %), ...
    """

    def __init__(self, total: int, initial: int = 0, desc: str = "train", every_s: Optional[float] = None, file=None):
        self.total, self.n, self.desc, self.file = total, initial, desc, file
        self.every_s = PLAIN_PROGRESS_EVERY_S if every_s is None else every_s
        self.post: dict = {}
        self.t0 = self.t_last = time.perf_counter()
        self.n0 = initial

    def set_postfix(self, post: dict):
        self.post = dict(post)

    def update(self, k: int = 1):
        self.n += k
        if time.perf_counter() - self.t_last >= self.every_s:
            self.line()

    def line(self):
        now = time.perf_counter()
        self.t_last = now
        rate = (self.n - self.n0) / max(now - self.t0, 1e-9)
        parts = [f"{self.desc}: step {self.n}/{self.total} ({100 * self.n / max(self.total, 1):.0f} %)"]
        parts += [f"{k} {v}" for k, v in self.post.items()]
        if rate > 0:
            left = (self.total - self.n) / rate
            parts += [
                f"{rate:.3g} steps/s",
                f"ETA {int(left // 3600)} h {int(left % 3600 // 60)} min"
                if left >= 3600
                else f"ETA {int(left // 60)} min {int(left % 60)} s",
            ]
        print(", ".join(parts), file=self.file or sys.stderr, flush=True)

    def close(self):
        self.line()


def progress_bar(progress, total: int, initial: int, desc: str):
    """A tqdm bar on a terminal (or with ``progress="force"``), else :class:`PlainProgress`."""
    if progress not in (True, "force", "plain"):
        raise ValueError(f"progress: expected True, False, 'force' or 'plain', got {progress!r}")
    if progress == "plain" or (progress is True and not sys.stderr.isatty()):
        return PlainProgress(total, initial, desc)
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True)


class Progress(Callback):
    """A progress bar (loss, tokens/s, ETA) on a terminal; plain periodic lines when stderr is not one
    (``progress``: True, ``"force"`` (the bar), ``"plain"``). Reads the loss of :class:`TrainLog`'s rows.

    Args:
      progress: True, ``"force"`` or ``"plain"``.
      desc: the label.
      train_log: the :class:`TrainLog` whose rows give the loss shown.

    Examples:
      >>> rnn_jax.callbacks.Progress("yes")
      Traceback (most recent call last):
      ...
      ValueError: progress: expected True, False, 'force' or 'plain', got 'yes'
    """

    def __init__(self, progress, desc: str = "train", train_log: Optional[TrainLog] = None):
        if progress not in (True, "force", "plain"):
            raise ValueError(f"progress: expected True, False, 'force' or 'plain', got {progress!r}")
        self.progress, self.desc, self.train_log, self.bar = progress, desc, train_log, None

    def on_start(self, loop):
        if loop.writer:
            self.bar = progress_bar(self.progress, loop.steps, loop.start, self.desc)
        return None

    def on_step(self, loop, step, metrics):
        if self.bar is None:
            return None
        row = self.train_log.last_row if self.train_log is not None else None
        if row is not None and row["step"] == step:
            post = {"loss": f"{np.mean(row['loss']):.4f}"}
            if "tokens_per_s" in row:
                post["tok/s"] = f"{row['tokens_per_s']:.0f}"
            self.bar.set_postfix(post)
        self.bar.update(1)
        return None

    def on_end(self, loop, status, message):
        if self.bar is not None:
            self.bar.close()


def standard(
    log_every: int,
    tokens_per_batch,
    eval_fn,
    eval_every: int,
    eval_stacked: bool,
    checkpoint_every: int,
    max_seconds,
    progress,
    desc: str,
) -> list:
    """The callbacks :func:`rnn_jax.train.fit` builds from its arguments, in their order.

    Args:
      log_every: :class:`TrainLog`'s ``every``.
      tokens_per_batch: :class:`TrainLog`'s ``tokens_per_batch``.
      eval_fn: :class:`Evaluate`'s function, or None (no evaluation).
      eval_every: :class:`Evaluate`'s ``every``.
      eval_stacked: :class:`Evaluate`'s ``stacked``.
      checkpoint_every: :class:`Checkpoint`'s ``every``.
      max_seconds: :class:`Budget`'s budget, or None (none).
      progress: :class:`Progress`'s setting, or False (none).
      desc: the progress bar's label.

    Returns:
      ``[Diverged(), TrainLog(...), Evaluate(...)?, Checkpoint(...), Budget(...)?, Progress(...)?]``.

    Examples:
      >>> [type(cb).__name__ for cb in rnn_jax.callbacks.standard(10, None, None, 100, False, 100, 60.0, False, "")]
      ['Diverged', 'TrainLog', 'Checkpoint', 'Budget']
    """
    train_log = TrainLog(log_every, tokens_per_batch)
    parts: list[Callback] = [Diverged(), train_log]
    if eval_fn is not None:
        parts.append(Evaluate(eval_fn, eval_every, eval_stacked))
    parts.append(Checkpoint(checkpoint_every))
    if max_seconds is not None:
        parts.append(Budget(max_seconds))
    if progress:
        parts.append(Progress(progress, desc, train_log))
    return parts


def checked_list(callbacks) -> list:
    """``fit(callbacks=...)`` as a list, each one a :class:`Callback` (else a ValueError that says what to write).

    Args:
      callbacks: a sequence of callbacks.

    Returns:
      The list.

    Examples:
      >>> rnn_jax.callbacks.checked_list([print])  # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      ValueError: callbacks[0]: expected an rnn_jax.callbacks.Callback, got builtin_function_or_method; write ...
    """
    out = list(callbacks)
    for i, cb in enumerate(out):
        if not isinstance(cb, Callback):
            raise ValueError(
                f"callbacks[{i}]: expected an rnn_jax.callbacks.Callback, got {type(cb).__name__}; "
                f"write class MyCallback(rnn_jax.callbacks.Callback) with the hooks it needs "
                f"(on_step(self, loop, step, metrics), on_start(self, loop), on_end(self, loop, status, "
                f"message)) and pass callbacks=[MyCallback()]"
            )
    return out
