"""Exploding gradients made to happen, and cured by clipping.

    python -m experiments.exploding            # two settings x (no clipping, clipping by norm) x 3 seeds, ~3 min
    python -m experiments.exploding --quick

A tanh Elman network whose recurrent matrix starts at ``scale`` times a random orthogonal matrix
(scale 2: far past the edge of stability), trained with plain gradient descent:

* ``nan``: the adding problem, T = 50, SGD lr 0.1. Without clipping the first updates are thousands of
  times longer than clipped ones, the gradient norm grows past 1e18 and the loss becomes Inf/NaN within
  a few dozen updates: the run stops (and keeps its last good checkpoint). Run for every seed of
  ``seeds``: it diverged in every one of the 5 seeds tried here (at updates 16-21; at lr 0.02 only 3 of
  5 did, at updates 91-98, and the others trained on: a rate where divergence hinges on rounding is
  not a demonstration). Clipped to norm 1, every update is at most ``lr`` long: the same runs stay
  finite and lower the loss (2.0-2.2 -> 0.27-0.28 over 1500 updates, three seeds).
* ``cliff``: the temporal-order task, T = 30, SGD lr 0.1. The early gradients have norms near 100, so
  unclipped steps are ~100 times longer than clipped ones: they throw the weights into saturation
  and training never leaves chance accuracy; clipped to norm 1, the same run learns the task.

Before training, the gradient norm at initialisation is measured at several spectral radii of
``W_h`` (``SCALES``; the same ``Q``, input weights and batch): it grows with the radius, exponentially
past 1, as the bound ``||dh_T/dh_k|| <= (radius * max|tanh'|)^(T-k)`` allows (Pascanu et al. 2013).
That growth is the deterministic part; when exactly an unclipped run ends in Inf/NaN depends on the
machine's rounding (the dynamics are chaotic), so the ``nan`` setting is run over several seeds and
reported as a count; the ``cliff`` setting's unclipped outcome (saturation at chance) is reported, not
promised.

The gradient norm (before clipping) of every step is plotted for both (``grad_norm.png``), with the
loss (``loss.png``).
"""
from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnn_jax as rj
from experiments import _common
from rnn_jax import distributed, train
from rnn_jax.data import long_range as lr

SCALES = (0.5, 1.0, 1.5, 2.0, 3.0)  # spectral radii of W_h at which the gradient at init is measured
SETTINGS = {
    "nan": dict(task="adding", T=50, lr=0.1),
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
    seeds: tuple[int, ...] = (0, 1, 2)            # PRNG seeds (each: the same init and batches for both runs)

    # domains beyond those the defaults imply (experiments._common.check_values); shown by --help
    limits: ClassVar[dict] = {
        "settings": _common.one_of(*SETTINGS),
        "seeds": _common.at_least(0),
    }

    @classmethod
    def quick(cls):
        return cls(steps=800, seeds=(0, 1))


def _model_and_loss(setting: str, hidden: int, scale: float):
    s = SETTINGS[setting]
    cell = rj.elman(hidden, "tanh", recurrent_init=rj.initializers.orthogonal(scale))
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

    return model, loss_fn, gen


def gradient_norm_by_scale(setting: str, cfg: Config, scales, seed: int = 0) -> list[float]:
    """The gradient norm at initialisation, on the first batch, for ``W_h = scale * Q`` (the same ``Q``,
    the same input weights and batch for every scale): what the theory predicts before any training.
    ``||dh_T/dh_k||`` is bounded by ``(scale * max|tanh'|)^(T-k)``, so the gradient grows with the
    spectral radius; past 1 it grows exponentially with the sequence length (Pascanu et al. 2013)."""
    s = SETTINGS[setting]
    k_init, k_data = jax.random.split(jax.random.key(seed))
    batch = jax.random.fold_in(k_data, 0)
    _, loss_fn, gen = _model_and_loss(setting, cfg.hidden, scales[0])  # the scale changes the init only
    grad = jax.jit(jax.grad(lambda p, b: loss_fn(p, b)[0]))
    first = gen(batch, cfg.batch_size, s["T"])
    return [float(optax.tree.norm(grad(_model_and_loss(setting, cfg.hidden, scale)[0].init(k_init), first)))
            for scale in scales]


def run(setting: str, clip, cfg: Config, run_dir: str, mesh=None, seed: int = 0):
    s = SETTINGS[setting]
    model, loss_fn, gen = _model_and_loss(setting, cfg.hidden, cfg.scale)
    key = jax.random.key(seed)
    k_init, k_data = jax.random.split(key)
    tx = train.optimizer("sgd", s["lr"], clip_norm=clip)
    name = f"{setting}_{'clip' if clip else 'noclip'}_seed{seed}"
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
    out = {"setting": setting, "seed": seed, "task": s["task"], "T": s["T"], "lr": s["lr"], "clip_norm": clip,
           "status": res.status, "message": res.message, "steps_done": int(res.state.step),
           "first_grad_norm": float(g[0]),
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
    run_dir = _common.make_run_dir("exploding", cfg, args)
    rows, traces, by_scale = [], {}, {}
    for setting in cfg.settings:
        by_scale[setting] = dict(zip(map(str, SCALES), gradient_norm_by_scale(setting, cfg, SCALES, cfg.seeds[0])))
        print(f"{setting}: gradient norm at init by scale " +
              "  ".join(f"{k}: {v:.3g}" for k, v in by_scale[setting].items()), flush=True)
        for seed in cfg.seeds:
            for clip in (None, cfg.clip_norm):
                row, trace = run(setting, clip, cfg, run_dir, args.mesh, seed)
                rows.append(row)
                if seed == cfg.seeds[0]:  # the curves of the first seed
                    traces[f"{setting}, {'clip norm ' + str(clip) if clip else 'no clipping'}"] = trace
    finite = lambda v: np.where(np.isfinite(v), v, np.nan)  # noqa: E731
    _common.plot_curves({k: (t["step"], finite(np.array(t["grad_norm"]))) for k, t in traces.items()},
                        os.path.join(run_dir, "grad_norm.png"), "gradient norm before clipping",
                        f"tanh Elman, W_h = {cfg.scale} x orthogonal, plain SGD")
    _common.plot_curves({k: (t["step"], finite(np.array(t["loss"]))) for k, t in traces.items()},
                        os.path.join(run_dir, "loss.png"), "training loss", "same runs: loss")
    diverged = {f"{setting}, {'clipped' if clipped else 'unclipped'}":
                f"{sum(r['status'] == 'diverged' for r in rows if r['setting'] == setting and (r['clip_norm'] is not None) == clipped)}"
                f"/{len(cfg.seeds)} seeds diverged" for setting in cfg.settings for clipped in (False, True)}
    print("\n".join(f"{k}: {v}" for k, v in diverged.items()))
    results = {"experiment": "exploding", "run_dir": run_dir, "rows": rows, "grad_norm_at_init_by_scale": by_scale,
               "diverged": diverged}
    _common.save_results(run_dir, results)
    print(f"\nexploding -> {run_dir}")
    return results


if __name__ == "__main__":
    main()
