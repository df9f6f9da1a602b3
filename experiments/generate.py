"""One-to-many generation: an MNIST-1D signal written from a single input vector, its class.

    python -m experiments.generate             # ~3 minutes on 2 CPU cores
    python -m experiments.generate --quick

The 40-step MNIST-1D signals are quantised into ``levels`` bins; a GRU decoder starts from a state
computed from the class's one-hot vector and writes the signal bin by bin (teacher forcing in
training, temperature sampling in generation). To judge the samples, a GRU classifier is trained on
the real training signals, and we report the fraction of generated signals it assigns to the class
they were generated from (``class_match``; chance 0.1), next to its accuracy on real test signals.
Samples are plotted against real signals of the same class.
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

BOS, EOS = 0, 1  # tokens 2 .. levels+1 are the signal's bins


@dataclasses.dataclass(frozen=True)
class Config:
    levels: int = 32                        # quantisation bins of the signal
    hidden: int = 128                       # decoder units
    embed: int = 16                         # embedding of the previous bin
    steps: int = 2000                       # Adam updates of the generator
    classifier_steps: int = 1500            # Adam updates of the judging classifier
    batch_size: int = 100                   # sequences per update
    lr: float = 3e-3                        # peak learning rate (cosine decay)
    temperatures: tuple[float, ...] = (0.5, 1.0)  # sampling temperatures
    samples_per_class: int = 50             # generated signals per class and temperature
    seed: int = 0                           # PRNG seed

    # domains beyond those the defaults imply (experiments._common.check_values); shown by --help
    limits: ClassVar[dict] = {
        "levels": _common.at_least(2),
    }

    @classmethod
    def quick(cls):
        return cls(hidden=48, steps=300, classifier_steps=300, samples_per_class=10, temperatures=(1.0,))


def quantise(x, levels):
    lo, hi = np.percentile(x, 0.5), np.percentile(x, 99.5)
    bins = np.clip(np.round((x - lo) / (hi - lo) * (levels - 1)), 0, levels - 1).astype(np.int32)
    return bins, (lo, hi)


def dequantise(bins, lo, hi, levels):
    return lo + np.asarray(bins, np.float64) / (levels - 1) * (hi - lo)


def main(argv=None):
    cfg, args = _common.parse_config(Config, argv, __doc__)
    run_dir = _common.make_run_dir("generate", cfg, args)
    d = sequences.mnist1d()
    x, xt = d.x[..., 0], d.x_test[..., 0]
    bins, (lo, hi) = quantise(x, cfg.levels)
    N, T = bins.shape
    V = cfg.levels + 2
    tgt_out = np.concatenate([bins + 2, np.full((N, 1), EOS, np.int32)], 1)  # (N, T+1)
    tgt_in = np.concatenate([np.full((N, 1), BOS, np.int32), bins + 2], 1)
    onehot = np.eye(10, dtype=np.float32)[d.y]
    model = rj.one_to_many(rj.gru(cfg.hidden), 10, vocab_size=V, bos=BOS, eos=EOS, embed_size=cfg.embed)
    key = jax.random.key(cfg.seed)
    k_gen, k_cls, k_b1, k_b2, k_sample = jax.random.split(key, 5)

    def gen_loss(p, batch):
        v, ti, to = batch
        logits = model.apply(p, v, ti)  # (B, T + 1, V)
        return rj.losses.softmax_cross_entropy(logits, to, reduction="mean"), {}

    idx = train.epoch_batches(N, cfg.batch_size, k_b1)
    mine = distributed.process_slice(cfg.batch_size)
    with _common.Timer() as t_gen:
        gen = train.fit(gen_loss, model.init(k_gen), train.optimizer("adam", cfg.lr, clip_norm=1.0, lr_schedule="cosine",
                                                                     steps=cfg.steps),
                        lambda s: (onehot[idx(s)[mine]], tgt_in[idx(s)[mine]], tgt_out[idx(s)[mine]]), cfg.steps,
                        run_dir=os.path.join(run_dir, "generator"), log_every=25, progress=False,
                        checkpoint_every=cfg.steps, mesh=args.mesh)

    # the judge: a GRU classifier of real signals (inputs standardised like the real data)
    clf = rj.many_to_one(rj.rnn(rj.gru(64)), 10, input_size=1)

    def clf_loss(p, batch):
        xb, yb = batch
        logits = clf.apply(p, xb)  # (B, 10)
        return rj.losses.softmax_cross_entropy(logits, yb, reduction="mean"), {}

    idx2 = train.epoch_batches(N, cfg.batch_size, k_b2)
    judge = train.fit(clf_loss, clf.init(k_cls), train.optimizer("adam", 3e-3, clip_norm=1.0, lr_schedule="cosine",
                                                                 steps=cfg.classifier_steps),
                      lambda s: (d.x[idx2(s)[mine]], d.y[idx2(s)[mine]]), cfg.classifier_steps, progress=False,
                      mesh=args.mesh).state.params
    classify = jax.jit(lambda xs: jnp.argmax(clf.apply(judge, xs), -1))
    real_acc = float(np.mean(np.asarray(classify(jnp.asarray(d.x_test))) == d.y_test))

    sample = jax.jit(lambda v, k, temp: model.generate(gen.state.params, v, max_len=T + 1, key=k, temperature=temp))
    rows, drawn = [], {}
    for ti, temp in enumerate(cfg.temperatures):
        cls = np.repeat(np.arange(10), cfg.samples_per_class)
        toks, lengths = sample(jnp.asarray(np.eye(10, dtype=np.float32)[cls]),
                               jax.random.fold_in(k_sample, ti), temp)
        toks = np.asarray(toks)[:, :T]
        complete = np.all(toks >= 2, axis=1)  # the model wrote T bins before its end token
        signal = dequantise(np.clip(toks - 2, 0, cfg.levels - 1), lo, hi, cfg.levels)
        pred = np.asarray(classify(jnp.asarray(signal[..., None], jnp.float32)))
        rows.append({"temperature": temp, "class_match": float(np.mean(pred == cls)),
                     "complete_fraction": float(np.mean(complete)),
                     "class_match_per_class": [float(np.mean(pred[cls == c] == c)) for c in range(10)]})
        drawn[temp] = (signal, cls)
        print(f"temperature {temp}: {100 * rows[-1]['class_match']:.1f} % of generated signals classified as their "
              f"class (judge: {100 * real_acc:.1f} % on real test signals)", flush=True)
    plot_samples(drawn, x, d.y, os.path.join(run_dir, "samples.png"))
    results = {"experiment": "generate", "run_dir": run_dir, "judge_test_accuracy": real_acc, "rows": rows,
               "generator_final_loss": gen.history[-1]["loss"], "generator_wall_s": t_gen.seconds}
    _common.save_results(run_dir, results)
    print(f"\ngenerate -> {run_dir}")
    return results


def plot_samples(drawn, x_real, y_real, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    temp = max(drawn)
    signal, cls = drawn[temp]
    fig, axes = plt.subplots(2, 10, figsize=(16, 3.4), sharey=True)
    for c in range(10):
        for k in range(3):
            axes[0, c].plot(x_real[np.flatnonzero(y_real == c)[k]], lw=0.8)
            axes[1, c].plot(signal[np.flatnonzero(cls == c)[k]], lw=0.8)
        axes[0, c].set_title(str(c))
        axes[0, c].set_xticks([])
        axes[1, c].set_xticks([])
    axes[0, 0].set_ylabel("real")
    axes[1, 0].set_ylabel(f"generated\nT={temp}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
