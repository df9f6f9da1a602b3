"""Many-to-one sequence classification on real data: MNIST-1D and UCR/UEA sets shipped with aeon.

    python -m experiments.classify             # every data set x architecture, 3 seeds each
    python -m experiments.classify --quick

Architectures: a single GRU layer, two stacked GRU layers, and a bidirectional GRU (its two final
states read together). A tenth of each class's training sequences is held out as a validation split
(``--valid_fraction``): the best-validation checkpoint is kept (``best.msgpack``), and the reported test
accuracy is the final parameters' (the learning rate decays to 0), read once. Several seeds are trained at once in one program (``jax.vmap`` over the
initialisation keys) for error bars. The MNIST-1D paper (Greydanus & Kobak 2020) reports a GRU at
91 +/- 2 % test accuracy and a CNN at 94 +/- 2 %.
"""
from __future__ import annotations

import dataclasses
import os
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

import rnn_jax as rj
from experiments import _common
from rnn_jax import distributed, train
from rnn_jax.data import sequences

DATASETS = ("mnist1d", "JapaneseVowels", "GunPoint")
ARCHS = ("gru", "gru-stacked", "gru-bidirectional")
PUBLISHED = {"mnist1d": "GRU 91 +/- 2 %, CNN 94 +/- 2 % (Greydanus & Kobak 2020)"}


@dataclasses.dataclass(frozen=True)
class Config:
    datasets: tuple[str, ...] = DATASETS   # which data sets
    archs: tuple[str, ...] = ARCHS         # which architectures
    hidden: int = 128                      # units per GRU layer (per direction)
    steps: int = 1500                      # Adam updates on MNIST-1D
    ucr_steps: int = 500                   # Adam updates on the small UCR/UEA sets
    valid_fraction: float = 0.1            # of each class's training sequences, held out for selection
    batch_size: int = 100                  # sequences per update
    lr: float = 2e-3                       # peak learning rate (cosine decay to 0)
    clip_norm: float = 1.0                 # gradient clipping by global norm
    seeds: int = 3                         # seeds trained at once (vmap) for error bars
    seed: int = 0                          # base PRNG seed

    # domains beyond those the defaults imply (experiments._common.check_values); shown by --help
    limits: ClassVar[dict] = {
        "datasets": _common.one_of(*DATASETS),
        "archs": _common.one_of(*ARCHS),
        "valid_fraction": _common.Limit("a number in (0, 0.5]", lambda v: 0 < v <= 0.5),
    }

    @classmethod
    def quick(cls):
        return cls(datasets=("mnist1d",), archs=("gru",), hidden=32, steps=300, ucr_steps=100, seeds=2)


def load(name):
    return sequences.mnist1d() if name == "mnist1d" else sequences.ucr(name)


def build(arch, H, C, n_classes):
    g = lambda: rj.rnn(rj.gru(H))  # noqa: E731
    layer = {"gru": g, "gru-stacked": lambda: rj.stack(g(), g()),
             "gru-bidirectional": lambda: rj.bidirectional(g(), g())}[arch]()
    return rj.many_to_one(layer, n_classes, readout="ends" if arch == "gru-bidirectional" else "last", input_size=C)


def run(name, arch, cfg, run_dir, mesh=None):
    d = load(name)
    tr, va = _common.validation_split(d.y, cfg.valid_fraction, cfg.seed)  # selection never reads the test split
    x, lengths, y = d.x[tr], d.lengths[tr], d.y[tr]
    N, T, C = x.shape
    model = build(arch, cfg.hidden, C, d.n_classes)
    steps = cfg.steps if name == "mnist1d" else cfg.ucr_steps
    key = jax.random.key(cfg.seed)
    k_init, k_batch = jax.random.split(key)
    params = jax.vmap(model.init)(jax.random.split(k_init, cfg.seeds))

    def loss_fn(p, batch):
        x, L, y = batch
        logits = model.apply(p, x, L)  # (B, classes)
        ce = rj.losses.softmax_cross_entropy(logits, y, reduction="mean")
        return ce, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == y)}

    @jax.jit
    def correct(stacked, x, lengths, y):  # one count per seed
        return jax.vmap(lambda p: jnp.sum(jnp.argmax(model.apply(p, x, lengths), -1) == y))(stacked)

    def accuracy(stacked, x, lengths, y):
        return np.asarray(correct(stacked, x, lengths, y)) / len(y)

    bs = min(cfg.batch_size, N)
    idx = train.epoch_batches(N, bs, k_batch)
    mine = distributed.process_slice(bs)
    tx = train.optimizer("adam", cfg.lr, clip_norm=cfg.clip_norm, lr_schedule="cosine", steps=steps)
    with _common.Timer() as t:
        res = train.fit(loss_fn, params, tx, lambda s: (x[idx(s)[mine]], lengths[idx(s)[mine]], y[idx(s)[mine]]),
                        steps, run_dir=os.path.join(run_dir, f"{name}_{arch}"), seeds=cfg.seeds, log_every=50,
                        eval_every=max(steps // 6, 1), mesh=mesh, progress=False,
                        eval_fn=lambda p: {"valid_accuracy": accuracy(p, d.x[va], d.lengths[va], d.y[va]).tolist()},
                        monitor="valid_accuracy", mode="max", checkpoint_every=steps, eval_stacked=True)
    # the final parameters (the learning rate decays to 0), read on the test split once
    acc = accuracy(res.state.params, d.x_test, d.lengths_test, d.y_test)
    row = {"dataset": name, "arch": arch, "train": int(N), "valid": int(len(va)), "test": int(len(d.y_test)),
           "T_max": int(T), "valid_accuracy_per_seed": accuracy(res.state.params, d.x[va], d.lengths[va], d.y[va]).tolist(),
           "channels": int(C), "classes": d.n_classes, "steps": steps, "seeds": cfg.seeds,
           "test_accuracy_per_seed": acc.tolist(), "test_accuracy_mean": float(acc.mean()),
           "test_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
           "published": PUBLISHED.get(name, ""), "wall_s": t.seconds, "history": res.history}
    print(f"{name:<15} {arch:<18} test accuracy {100 * row['test_accuracy_mean']:.1f} +/- "
          f"{100 * row['test_accuracy_std']:.1f} %  ({cfg.seeds} seeds, {t.seconds:.0f}s)", flush=True)
    return row


def main(argv=None):
    cfg, args = _common.parse_config(Config, argv, __doc__)
    run_dir = _common.make_run_dir("classify", cfg, args)
    rows = [run(n, a, cfg, run_dir, args.mesh) for n in cfg.datasets for a in cfg.archs]
    curves = {f"{r['dataset']} {r['arch']}": _common.train_curve(r["history"]) for r in rows}
    _common.plot_curves(curves, os.path.join(run_dir, "learning_curves.png"), "training cross-entropy (mean of seeds)",
                        "Sequence classification")
    results = {"experiment": "classify", "run_dir": run_dir, "rows": [{k: v for k, v in r.items() if k != "history"}
                                                                       for r in rows]}
    _common.save_results(run_dir, results)
    print(f"\nclassify -> {run_dir}")
    return results


if __name__ == "__main__":
    main()
