"""Exploding gradients made to happen, and cured by clipping.

    python -m experiments.exploding            # two settings x (no clipping, clipping by norm), ~2 min
    python -m experiments.exploding --quick

A tanh Elman network whose recurrent matrix starts at ``scale`` times a random orthogonal matrix
(scale 2: far past the edge of stability), trained with plain gradient descent:

* ``nan``: the adding problem, T = 50, SGD lr 0.02. Without clipping the gradient norm grows to
  ~1e18 and the loss becomes Inf/NaN: the run stops (and keeps its last good checkpoint).
* ``cliff``: the temporal-order task, T = 30, SGD lr 0.1. The early gradients have norms near 100, so
  unclipped steps are ~100 times longer than clipped ones: they throw the weights into saturation
  and training never leaves chance accuracy; clipped to norm 1, the same run learns the task.

The gradient norm (before clipping) of every step is plotted for both (``grad_norm.png``), with the
loss (``loss.png``).
"""
from __future__ import annotations

import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np

import rnn_jax as rj
from experiments import _common
from rnn_jax import distributed, train
from rnn_jax.data import long_range as lr

SETTINGS = {
    "nan": dict(task="adding", T=50, lr=0.02),
    "cliff": dict(task="order", T=30, lr=0.1),
}


@dataclasses.dataclass(frozen=True)
class Config:
    settings: tuple[str, ...] = ("nan", "cliff")  # which settings (see the module docstring)
    scale: float = 2.0                            # recurrent matrix = scale * orthogonal at init
    hidden: int = 64                              # recurrent units
    steps: int = 1500                             # SGD updates
    batch_size: int = 32                          # sequences per update
    clip_norm: float = 1.0                        # global-norm bound of the clipped runs
    seed: int = 0                                 # PRNG seed (the same init and batches for both runs)

    @classmethod
    def quick(cls):
        return cls(steps=800)


def run(setting: str, clip, cfg: Config, run_dir: str, mesh=None):
    s = SETTINGS[setting]
    cell = rj.elman(cfg.hidden, "tanh", recurrent_init=rj.initializers.orthogonal(cfg.scale))
    if s["task"] == "adding":
        model = rj.many_to_one(rj.rnn(cell), 1, input_size=2)
        gen = lr.adding

        def loss_fn(p, b):
            x, y = b
            pred = model.apply(p, x)[:, 0]  # (B,)
            return jnp.mean((pred - y) ** 2), {"accuracy": jnp.mean(jnp.abs(pred - y) < 0.04)}
    else:
        model = rj.many_to_one(rj.rnn(cell), 4, vocab_size=lr.ORDER_VOCAB)
        gen = lr.temporal_order

        def loss_fn(p, b):
            x, y = b
            logits = model.apply(p, x)  # (B, 4)
            ce = rj.losses.softmax_cross_entropy(logits, y, reduction="mean")
            return ce, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}

    key = jax.random.key(cfg.seed)
    k_init, k_data = jax.random.split(key)
    tx = train.optimizer("sgd", s["lr"], clip_norm=clip)
    name = f"{setting}_{'clip' if clip else 'noclip'}"
    with _common.Timer() as t:
        mine = distributed.process_slice(cfg.batch_size)
        res = train.fit(loss_fn, model.init(k_init), tx,
                        lambda i: jax.tree.map(lambda a: a[mine], gen(jax.random.fold_in(k_data, i), cfg.batch_size, s["T"])),
                        cfg.steps, run_dir=os.path.join(run_dir, name), log_every=1, checkpoint_every=cfg.steps,
                        progress=False, mesh=mesh)
    rows = [r for r in res.history if r.get("kind") in ("train", "diverged")]
    g = np.array([r["grad_norm"] for r in rows], np.float64)
    loss = np.array([r["loss"] for r in rows], np.float64)
    acc = np.array([r["accuracy"] for r in rows], np.float64)
    tail = slice(max(0, len(rows) - 100), len(rows))
    out = {"setting": setting, "task": s["task"], "T": s["T"], "lr": s["lr"], "clip_norm": clip,
           "status": res.status, "message": res.message, "steps_done": int(res.state.step),
           "max_grad_norm": float(np.nanmax(np.where(np.isfinite(g), g, np.nan))) if np.isfinite(g).any() else None,
           "first_nonfinite_step": int(rows[-1]["step"]) if res.status == "diverged" else None,
           "loss_first10": float(np.mean(loss[:10])), "loss_last100": float(np.mean(loss[tail])),
           "accuracy_last100": float(np.mean(acc[tail])), "wall_s": t.seconds}
    trace = {"step": [r["step"] for r in rows], "grad_norm": g.tolist(), "loss": loss.tolist()}
    print(f"{name:<14} {res.status:<9} max grad {out['max_grad_norm']:.3g}  loss first10 {out['loss_first10']:.3g} "
          f"last100 {out['loss_last100']:.3g}  acc last100 {out['accuracy_last100']:.3f}", flush=True)
    return out, trace


def main(argv=None):
    cfg, args = _common.parse_config(Config, argv, __doc__)
    _common.check_choices("settings", cfg.settings, tuple(SETTINGS))
    run_dir = _common.make_run_dir("exploding", cfg, args)
    rows, traces = [], {}
    for setting in cfg.settings:
        for clip in (None, cfg.clip_norm):
            row, trace = run(setting, clip, cfg, run_dir, args.mesh)
            rows.append(row)
            traces[f"{setting}, {'clip norm ' + str(clip) if clip else 'no clipping'}"] = trace
    finite = lambda v: np.where(np.isfinite(v), v, np.nan)  # noqa: E731
    _common.plot_curves({k: (t["step"], finite(np.array(t["grad_norm"]))) for k, t in traces.items()},
                        os.path.join(run_dir, "grad_norm.png"), "gradient norm before clipping",
                        f"tanh Elman, W_h = {cfg.scale} x orthogonal, plain SGD")
    _common.plot_curves({k: (t["step"], finite(np.array(t["loss"]))) for k, t in traces.items()},
                        os.path.join(run_dir, "loss.png"), "training loss", "same runs: loss")
    results = {"experiment": "exploding", "run_dir": run_dir, "rows": rows}
    _common.save_results(run_dir, results)
    print(f"\nexploding -> {run_dir}")
    return results


if __name__ == "__main__":
    main()
