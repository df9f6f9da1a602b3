"""Long-range dependencies: which cell, initialisation and clipping solve which lengths, and why.

    python -m experiments.long_range             # the full grid (~40 min on 2 CPU cores)
    python -m experiments.long_range --quick     # a small grid, about a minute
    python -m experiments.long_range --resume=runs/long_range/<stamp>   # continue an interrupted grid

Tasks (rnn_jax.data.long_range): the adding problem (baseline MSE 0.167), copy memory (baseline
cross-entropy 10 ln 8 / (T + 20)) and the temporal-order task (chance 0.25). Models: tanh Elman with
Xavier init, ReLU Elman with He init, IRNN (ReLU, identity recurrent init), tanh Elman with orthogonal
init, two tanh Elman layers with a highway connection, LSTM, GRU (and, by name: the chrono LSTM, the
IRNN with SGD, the orthogonal cell, two IndRNN layers, two LRU layers); each trained without clipping,
with clipping by value and by global norm. Adam, fresh random batches every step.

Diagnostics on the adding problem at ``diag_T``: ||dE_T/dh_k|| over k for every single-layer model
(at initialisation and after training), a heat map of it over training for the tanh Elman and the
LSTM, and the recurrent matrices' spectra.
"""
from __future__ import annotations

import dataclasses
import os
import zlib
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnn_jax as rj
from experiments import _common
from rnn_jax import diagnostics, distributed, train
from rnn_jax.data import long_range as lr

MODELS = ("tanh-xavier", "relu-he", "irnn", "tanh-orthogonal", "highway-tanh", "lstm", "gru", "lstm-chrono",
          "irnn-sgd", "orthogonal", "indrnn", "lru", "min_gru")


@dataclasses.dataclass(frozen=True)
class Config:
    tasks: tuple[str, ...] = ("adding", "copy", "order")  # adding, copy, order
    adding_T: tuple[int, ...] = (50, 200, 1000)             # sequence lengths for the adding problem
    copy_T: tuple[int, ...] = (50, 200)                     # delays for copy memory (sequence T + 20)
    order_T: tuple[int, ...] = (50, 200)                    # sequence lengths for temporal order
    models: tuple[str, ...] = MODELS                        # which models
    clips: tuple[str, ...] = ("none", "value", "norm")      # gradient clipping variants
    long_T_clips: tuple[str, ...] = ("none", "norm")        # clipping variants for T >= 1000 (compute)
    hidden: int = 64                                        # units per recurrent layer
    steps: int = 1000                                       # Adam updates per run
    batch_size: int = 32                                    # fresh sequences per update
    lr: float = 2e-3                                        # Adam learning rate
    clip_value: float = 1.0                                 # bound for clipping by value
    clip_norm: float = 1.0                                  # bound for clipping by global norm
    test_size: int = 512                                    # held-out sequences per task
    diag_T: int = 200                                       # adding length for the diagnostics (not in adding_T: none)
    eval_every: int = 50                                    # updates between validation evaluations
    orthogonal_hidden: int = 190                            # units of the orthogonal cell (expRNN's copy setting)
    orthogonal_lr: float = 1e-3                             # RMSprop rate of the orthogonal cell (A: a tenth)
    sgd_lr: float = 1e-3                                    # plain SGD rate of irnn-sgd (Le et al. 2015)
    sgd_clip_norm: float = 10.0                             # its gradient clipping by global norm
    stop_when_solved: bool = False                          # stop a run once it is solved with a margin (see SOLVED_STOP)
    copy_diagnostics: bool = False                          # error reach and step Jacobians on copy memory
    seed: int = 0                                           # PRNG seed

    # domains beyond those the defaults imply (experiments._common.check_values); shown by --help
    limits: ClassVar[dict] = {
        "models": _common.one_of(*MODELS),
        "tasks": _common.one_of("adding", "copy", "order"),
        "clips": _common.one_of("none", "value", "norm"),
        "long_T_clips": _common.one_of("none", "value", "norm"),
        "adding_T": _common.at_least(2),
        "diag_T": _common.at_least(1),
        "order_T": _common.at_least(5),
    }

    @classmethod
    def quick(cls):
        return cls(tasks=("adding", "copy", "order"), adding_T=(20,), copy_T=(10,), order_T=(20,),
                   models=("tanh-xavier", "lstm"), clips=("none", "norm"), hidden=32, steps=150, diag_T=20,
                   test_size=256)


def make_cell(name: str, H: int, T: int = 1000):
    small = rj.initializers.uniform(1e-3)
    return {
        "lstm-chrono": lambda: rj.lstm(H, chrono=max(T, 3)),
        "irnn-sgd": lambda: rj.elman(H, "relu", kernel_init=small, recurrent_init=rj.initializers.identity(1.0)),
        "orthogonal": lambda: rj.orthogonal_rnn(H),
        "tanh-xavier": lambda: rj.elman(H, "tanh", recurrent_init="glorot_uniform"),
        "relu-he": lambda: rj.elman(H, "relu", kernel_init="he_uniform", recurrent_init="he_uniform"),
        "irnn": lambda: rj.elman(H, "relu", kernel_init=small, recurrent_init=rj.initializers.identity(1.0)),
        "tanh-orthogonal": lambda: rj.elman(H, "tanh", recurrent_init="orthogonal"),
        "lstm": lambda: rj.lstm(H),
        "gru": lambda: rj.gru(H),
    }[name]()


def make_layer(name: str, H: int, T: int = 1000):
    if name == "indrnn":  # Li et al. 2018's adding recipe: two layers, |u| <= 2^(1/T), small first-layer inputs
        bound = 2.0 ** (1.0 / T)
        return rj.stack(rj.rnn(rj.indrnn(H, recurrent_max=bound, kernel_init=rj.initializers.uniform(1e-3))),
                        rj.rnn(rj.indrnn(H, recurrent_max=bound)))
    if name == "lru":  # two LRU layers, GELU between them; eigenvalue moduli on the ring [1 - 10/T, 1 - 1/(4T)]
        ring = dict(r_min=max(0.0, 1 - 10 / T), r_max=1 - 1 / (4 * T))
        return rj.stack(rj.rnn(rj.lru(H, activation="gelu", **ring)), rj.rnn(rj.lru(H, **ring)))
    if name == "min_gru":  # Feng et al. 2024: two minGRU layers, each solved for all steps at once
        return rj.stack(rj.rnn(rj.min_gru(H), parallel="linear"), rj.rnn(rj.min_gru(H), parallel="linear"))
    if name == "highway-tanh":
        one = lambda: rj.rnn(rj.elman(H, "tanh", recurrent_init="glorot_uniform"))  # noqa: E731
        return rj.stack(one(), one(), skip="highway")
    return rj.rnn(make_cell(name, H, T))


def hidden_of(model_name: str, cfg) -> int:
    return cfg.orthogonal_hidden if model_name == "orthogonal" else cfg.hidden


def make_optimizer(model_name: str, clip: str, cfg):
    """Each model's recipe: Adam for most; RMSprop for the orthogonal cell with its generator ``A`` at a
    tenth of the rate (Lezcano-Casado & Martinez-Rubio 2019); plain SGD with a small rate and norm
    clipping for ``irnn-sgd`` (Le et al. 2015). ``clip`` adds clipping by value or global norm."""
    clip_value = cfg.clip_value if clip == "value" else None
    clip_norm = cfg.clip_norm if clip == "norm" else None
    if model_name == "irnn-sgd":
        return train.optimizer("sgd", cfg.sgd_lr, clip_norm=cfg.sgd_clip_norm, clip_value=clip_value)
    if model_name != "orthogonal":
        return train.optimizer("adam", cfg.lr, clip_value=clip_value, clip_norm=clip_norm)
    inner = optax.multi_transform(
        {"A": optax.rmsprop(cfg.orthogonal_lr / 10), "rest": optax.rmsprop(cfg.orthogonal_lr)},
        lambda params: jax.tree_util.tree_map_with_path(
            lambda path, _: "A" if any(getattr(k, "key", None) == "A" for k in path) else "rest", params))
    clips = ([optax.clip(clip_value)] if clip_value else []) + ([optax.clip_by_global_norm(clip_norm)] if clip_norm else [])
    return optax.chain(*clips, inner)


TASKS = {
    # name: (generator, model kind, inputs vocab or size, outputs)
    "adding": dict(gen=lr.adding, kind="regress", input_size=2, out=1),
    "copy": dict(gen=lr.copy_memory, kind="tag", vocab=lr.COPY_VOCAB, out=lr.COPY_VOCAB),
    "order": dict(gen=lr.temporal_order, kind="classify", vocab=lr.ORDER_VOCAB, out=4),
}


def build(task: str, model_name: str, H: int, T: int = 1000):
    spec, layer = TASKS[task], make_layer(model_name, H, T)
    if spec["kind"] == "regress":
        return rj.many_to_one(layer, 1, input_size=spec["input_size"])
    if spec["kind"] == "classify":
        return rj.many_to_one(layer, spec["out"], vocab_size=spec["vocab"])
    return rj.many_to_many(layer, spec["out"], vocab_size=spec["vocab"])


def make_loss(task: str, model):
    kind = TASKS[task]["kind"]

    def loss_fn(params, batch):
        x, y = batch
        if kind == "regress":
            pred = model.apply(params, x)[:, 0]  # (B,)
            return jnp.mean((pred - y) ** 2), {"accuracy": jnp.zeros(())}
        if kind == "classify":
            logits = model.apply(params, x)  # (B, classes)
            ce = rj.losses.softmax_cross_entropy(logits, y, reduction="mean")
            return ce, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}
        logits, _ = model.apply(params, x)  # (B, T, V)
        ce = rj.losses.softmax_cross_entropy(logits, y, reduction="mean")
        acc = jnp.mean(jnp.argmax(logits[:, -10:], -1) == y[:, -10:])  # the 10 recalled symbols
        return ce, {"accuracy": acc}

    return loss_fn


def baseline(task, T):
    return {"adding": lr.ADDING_BASELINE, "copy": lr.copy_baseline(T), "order": float(np.log(4))}[task]


# A run stops early (with --stop_when_solved) at the first evaluation past these: a margin beyond "solved".
# Selection and early stopping read the validation set only (held-out sequences of their own); the test
# set is read once, at the end.
SOLVED_STOP = {"adding": ("valid_loss", "min", 1e-3), "copy": ("valid_accuracy", "max", 0.999),
               "order": ("valid_accuracy", "max", 0.999)}


def solved(task, metrics):
    if task == "adding":
        return metrics["test_loss"] < 0.01
    return metrics["test_accuracy"] >= 0.99


def run_one(task, T, model_name, clip, cfg, run_dir, diag=False, mesh=None, resume=False):
    key = jax.random.fold_in(jax.random.key(cfg.seed), zlib.crc32(f"{task}-{T}".encode()))  # stable across runs
    k_init, k_data, k_test = jax.random.split(key, 3)
    H = hidden_of(model_name, cfg)
    model = build(task, model_name, H, T)
    params = model.init(k_init)
    gen = TASKS[task]["gen"]
    loss_fn = make_loss(task, model)
    test = gen(k_test, cfg.test_size, T)
    valid = gen(jax.random.fold_in(k_test, 1), cfg.test_size, T)  # for selection: never the test set
    eval_loss = jax.jit(loss_fn)
    tx = make_optimizer(model_name, clip, cfg)
    reach_rows, reach_steps = [], []
    diag_x, diag_y = jax.tree.map(lambda a: a[0], test)
    single = model_name not in ("highway-tanh", "indrnn", "lru", "min_gru")  # one cell: the diagnostics read it

    @jax.jit  # one compiled program per run, evaluated at every diagnostic point
    def reach_of(params):
        return diagnostics.error_reach(make_cell(model_name, H, T), params["rnn"], diag_x,
                                       lambda y: (rj.models.dense(params["head"], y)[0] - diag_y) ** 2)

    def reach(params):
        if task != "adding" or not single:
            return None
        return np.asarray(reach_of(params))

    def evaluate(params, data, split):
        loss, aux = eval_loss(params, data)
        return {f"{split}_loss": float(loss), f"{split}_accuracy": float(aux["accuracy"])}

    def eval_fn(params):
        if diag:
            reach_rows.append(reach(params))
            reach_steps.append(len(reach_steps) * cfg.eval_every)
        return evaluate(params, valid, "valid")

    def spectrum(params):  # the recurrent matrix as the cell runs it (the orthogonal cell's W, prepared)
        return diagnostics.recurrent_spectrum(rj.prepared(make_cell(model_name, H, T), params["rnn"]))

    reach0 = reach(params) if diag else None
    spec0 = spectrum(params) if diag and single else None
    if diag:
        eval_fn(params)
    sub = os.path.join(run_dir, f"{task}_T{T}", f"{model_name}_{clip}")
    monitor, mode, stop_at = SOLVED_STOP[task] if cfg.stop_when_solved else ("valid_loss", "min", None)
    with _common.Timer() as t:
        mine = distributed.process_slice(cfg.batch_size)
        res = train.fit(loss_fn, params, tx,
                        lambda s: jax.tree.map(lambda a: a[mine], gen(jax.random.fold_in(k_data, s), cfg.batch_size, T)),
                        cfg.steps, run_dir=sub, eval_fn=eval_fn, eval_every=cfg.eval_every, log_every=25,
                        monitor=monitor, mode=mode, stop_at=stop_at,
                        checkpoint_every=min(cfg.steps, 500), progress=False, mesh=mesh, resume=resume)
    final = evaluate(res.state.params, test, "test") if res.status != "diverged" else {
        "test_loss": float("nan"), "test_accuracy": float("nan")}
    row = {"task": task, "T": T, "model": model_name, "clip": clip, "status": res.status, **final,
           "baseline": baseline(task, T), "solved": bool(res.status != "diverged" and solved(task, final)),
           "updates": max((r["step"] for r in res.history), default=0), "batch_size": cfg.batch_size,
           "hidden": H, "wall_s": t.seconds, "max_grad_norm": float(max((r["grad_norm"] for r in res.history
                                                             if r.get("kind") == "train"), default=float("nan")))}
    extra = None
    if diag and single:
        spec1 = spectrum(res.state.params)
        extra = {"reach_init": reach0, "reach_trained": reach(res.state.params), "heat": reach_rows[:-1],
                 "heat_steps": reach_steps[:-1],
                 "spectrum_init": {k: {kk: v for kk, v in d.items() if kk != "singular_values"} for k, d in spec0.items()},
                 "spectrum_trained": {k: {kk: v for kk, v in d.items() if kk != "singular_values"}
                                      for k, d in spec1.items()}}
    if task == "copy" and cfg.copy_diagnostics and single:
        extra = dict(extra or {}, copy=copy_diagnostics(model_name, H, T, params, res.state.params, diag_x, diag_y))
    print(f"{task:<7} T={T:<5} {model_name:<16} clip={clip:<6} {res.status:<9} loss={final['test_loss']:.4g} "
          f"acc={final['test_accuracy']:.3f} solved={row['solved']} ({t.seconds:.0f}s)", flush=True)
    return row, extra


def copy_diagnostics(model_name, H, T, params0, params1, x, y):
    """On one copy sequence: ``||dE/dh_k||`` for E the cross-entropy of the LAST recalled symbol (which
    was shown T + 10 steps earlier), at initialisation and after training; and the singular values of
    each step's Jacobian along the trained trajectory (min, median, max per step, and their spread)."""
    cell = make_cell(model_name, H, T)
    xs = jax.nn.one_hot(x, lr.COPY_VOCAB)

    def reach(p):
        head = p["head"]
        return np.asarray(diagnostics.error_reach(
            cell, p["rnn"], xs, lambda out: rj.losses.softmax_cross_entropy(rj.models.dense(head, out), y[-1])))

    sv = np.asarray(diagnostics.step_jacobian_singular_values(cell, params1["rnn"], xs))  # (T + 20, C)
    return {"reach_init": reach(params0).tolist(), "reach_trained": reach(params1).tolist(),
            "jacobian_sv_min": sv.min(1).tolist(), "jacobian_sv_median": np.median(sv, 1).tolist(),
            "jacobian_sv_max": sv.max(1).tolist(),
            "jacobian_sv_quantiles": {q: float(np.quantile(sv, q)) for q in (0.01, 0.1, 0.5, 0.9, 0.99)}}


def plot_jacobian_spectra(copy_diags: dict, path: str) -> str:
    """Per model: the smallest, median and largest singular value of each step's Jacobian along a
    trained copy sequence (log scale)."""
    fig, ax = _common.figure((7, 4))
    for i, (name, d) in enumerate(copy_diags.items()):
        t = np.arange(len(d["jacobian_sv_median"]))
        color = f"C{i}"
        ax.plot(t, np.maximum(d["jacobian_sv_median"], 1e-8), color=color, label=f"{name} (median)")
        ax.fill_between(t, np.maximum(d["jacobian_sv_min"], 1e-8), d["jacobian_sv_max"], color=color, alpha=0.2)
    return _common.save_figure(fig, ax, path, xlabel="step t", ylabel="singular values of d h_t / d h_{t-1}",
                               title="copy memory, trained: step Jacobians (band: min to max)", logy=True)


def main(argv=None):
    cfg, args = _common.parse_config(Config, argv, __doc__)
    run_dir = _common.make_run_dir("long_range", cfg, args)
    rows, diags, copy_diags = [], {}, {}
    lengths = {"adding": cfg.adding_T, "copy": cfg.copy_T, "order": cfg.order_T}
    for task in cfg.tasks:
        for T in lengths[task]:
            for model_name in cfg.models:
                for clip in (cfg.long_T_clips if T >= 1000 else cfg.clips):
                    diag = task == "adding" and T == cfg.diag_T and clip == "norm"
                    row, extra = run_one(task, T, model_name, clip, cfg, run_dir, diag, args.mesh, bool(args.resume))
                    rows.append(row)
                    if extra and "copy" in extra:
                        copy_diags[f"{model_name} T={T}"] = extra.pop("copy")
                    if extra:
                        diags[model_name] = extra
                    _common.save_results(run_dir, {"experiment": "long_range", "run_dir": run_dir, "rows": rows})
    results = {"experiment": "long_range", "run_dir": run_dir, "rows": rows}
    if copy_diags:
        results["copy_diagnostics"] = copy_diags
        diagnostics.plot_reach({f"{m} ({when})": d[f"reach_{when}"] for m, d in copy_diags.items()
                                for when in ("init", "trained")}, os.path.join(run_dir, "copy_reach.png"),
                               "copy memory: error of the last recalled symbol reaching step k")
        plot_jacobian_spectra(copy_diags, os.path.join(run_dir, "copy_jacobian_spectra.png"))
    if diags:
        diagnostics.plot_reach({f"{m} (init)": d["reach_init"] for m, d in diags.items()},
                               os.path.join(run_dir, "reach_init.png"),
                               f"adding T={cfg.diag_T}: error reaching step k, at initialisation")
        diagnostics.plot_reach({f"{m} (trained)": d["reach_trained"] for m, d in diags.items()},
                               os.path.join(run_dir, "reach_trained.png"),
                               f"adding T={cfg.diag_T}: error reaching step k, after training (clip norm)")
        for m in ("tanh-xavier", "lstm"):
            if m in diags and len(diags[m]["heat"]) > 1:
                diagnostics.plot_heatmap(diags[m]["heat"], diags[m]["heat_steps"],
                                         os.path.join(run_dir, f"reach_heatmap_{m}.png"),
                                         f"{m}, adding T={cfg.diag_T}: ||dE_T/dh_k|| over training")
        results["diagnostics"] = {m: {"reach_init": np.asarray(d["reach_init"]).tolist(),
                                      "reach_trained": np.asarray(d["reach_trained"]).tolist(),
                                      "heat": [np.asarray(h).tolist() for h in d["heat"]], "heat_steps": d["heat_steps"],
                                      "spectrum_init": d["spectrum_init"], "spectrum_trained": d["spectrum_trained"]}
                                  for m, d in diags.items()}
    _common.save_results(run_dir, results)
    print(f"\nlong_range -> {run_dir}")
    table(rows)
    return results


def table(rows):
    keys = sorted({(r["task"], r["T"]) for r in rows}, key=lambda k: (["adding", "copy", "order"].index(k[0]), k[1]))
    models = list(dict.fromkeys(r["model"] for r in rows))
    clips = list(dict.fromkeys(r["clip"] for r in rows))
    print("solved (test): adding MSE < 0.01; copy, order: accuracy >= 0.99.  cells: clip none/value/norm")
    print(f"{'model':<17}" + "".join(f"{t}{T:>6}".rjust(14) for t, T in keys))
    for m in models:
        cells = []
        for k in keys:
            marks = ["-" if not any(r for r in rows if (r["task"], r["T"], r["model"], r["clip"]) == (*k, m, c)) else
                     ("Y" if next(r for r in rows if (r["task"], r["T"], r["model"], r["clip"]) == (*k, m, c))["solved"]
                      else "n") for c in clips]
            cells.append("/".join(marks).rjust(14))
        print(f"{m:<17}" + "".join(cells))


if __name__ == "__main__":
    main()
