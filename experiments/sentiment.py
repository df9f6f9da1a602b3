"""Many-to-one sentiment on the full Rotten Tomatoes sentence-polarity set: RNNs against bag-of-words.

    python -m experiments.sentiment            # ~15 minutes on 2 CPU cores
    python -m experiments.sentiment --quick

Data: Pang & Lee (2005)'s 10,662 movie-review sentences as rated by Hutto & Gilbert (2014), shipped in
the vadersentiment 3.3.2 source archive (rnn_jax.data.rotten; fetched into the local cache on first
use). Label = sign of the mean human rating; the 37 sentences rated 0 are dropped: 10,568 sentences.
Protocol: ONE fixed stratified split, 80 % train / 10 % valid / 10 % test (not the literature's
10-fold cross-validation, which costs ten times as much), several seeds per model, the checkpoint with
the best validation accuracy evaluated on test. Models read lower-cased word tokens (words seen twice
in training; others are <unk>) through a learned embedding (no pretrained vectors): a GRU (last
state), bidirectional GRUs read out by their two final states (``ends``) or by max-pooling over time,
and a bag-of-words logistic regression (L2, the same vocabulary) as the baseline. Published on this
set without pretrained vectors: bag-of-words models 76-77 % (Pang & Lee 2005; Wang & Manning 2012
report 76-79 % for NB/SVM unigram/bigram variants), Kim (2014)'s CNN from random vectors 76.1 %, with
pretrained word2vec 81.5 %. ``bigru-rating`` regresses the graded rating (mean squared error on
rating / 4) and classifies by its sign.
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
from rnn_jax.data import rotten
from rnn_jax.data.words import Vocab, pad_ids

MODELS = ("bow-logreg", "gru", "bigru", "bigru-max", "bigru-rating")


@dataclasses.dataclass(frozen=True)
class Config:
    models: tuple[str, ...] = MODELS  # bow-logreg, gru, bigru, bigru-max, bigru-rating
    hidden: int = 128                 # GRU units per direction
    embed: int = 128                  # word embedding size
    max_len: int = 60                 # tokens kept per sentence
    steps: int = 1500                 # AdamW updates (about 11 passes over the training sentences)
    batch_size: int = 64              # sentences per update
    lr: float = 3e-3                  # peak learning rate (cosine decay)
    weight_decay: float = 1e-4        # decoupled weight decay (AdamW) for every model
    dropout_words: float = 0.25       # fraction of words replaced by <unk> during training
    eval_every: int = 100             # updates between validation evaluations (the best is kept)
    seeds: int = 3                    # seeds trained at once (vmap)
    seed: int = 0                     # PRNG seed (split, init, batches)

    @classmethod
    def quick(cls):
        return cls(models=("bow-logreg", "gru"), hidden=32, embed=32, steps=150, eval_every=50, seeds=2)


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
    readout = {"gru": "last", "bigru": "ends", "bigru-max": "max", "bigru-rating": "ends"}[name]
    model = rj.many_to_one(layer, 1 if name == "bigru-rating" else 2, readout=readout, input_size=cfg.embed)

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"E": 0.1 * jax.random.normal(k1, (V, cfg.embed), jnp.float32), "model": model.init(k2)}

    def apply(p, ids, lengths):
        return model.apply(p["model"], p["E"][ids], lengths)  # (B, 2)

    return init, apply


def stratified_split(labels: np.ndarray, rng) -> dict:
    """80/10/10 of each class, shuffled."""
    parts = {"train": [], "valid": [], "test": []}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        a, b = int(0.8 * len(idx)), int(0.9 * len(idx))
        parts["train"].append(idx[:a]), parts["valid"].append(idx[a:b]), parts["test"].append(idx[b:])
    return {k: rng.permutation(np.concatenate(v)) for k, v in parts.items()}


def main(argv=None):
    cfg, args = _common.parse_config(Config, argv, __doc__)
    _common.check_choices("models", cfg.models, MODELS)
    run_dir = _common.make_run_dir("sentiment", cfg, args)
    sents = rotten.sentences()
    labels = np.array([s.label for s in sents], np.int32)
    ratings = np.array([s.rating for s in sents], np.float32)
    split = stratified_split(labels, np.random.default_rng(cfg.seed))
    toks = [tokenize(s.text) for s in sents]
    vocab = Vocab([w for i in split["train"] for w in toks[i]])
    data = {}
    for k, idx in split.items():
        ids, L = pad_ids([vocab.ids(toks[i]) for i in idx], cfg.max_len)
        data[k] = (ids, L, labels[idx], ratings[idx] / 4)
    results = {"experiment": "sentiment", "run_dir": run_dir, "sentences": len(sents), "vocab": len(vocab),
               "split": {k: len(v) for k, v in split.items()}, "protocol": "fixed stratified split 80/10/10",
               "rows": []}
    for name in cfg.models:
        init, apply = build(name, cfg, len(vocab))
        key = jax.random.fold_in(jax.random.key(cfg.seed), MODELS.index(name))
        k_init, k_batch, k_drop = jax.random.split(key, 3)
        params = jax.vmap(init)(jax.random.split(k_init, cfg.seeds))
        regress = name == "bigru-rating"

        def loss_fn(p, batch, apply=apply, regress=regress):
            ids, L, y, r, k = batch
            keep = jax.random.bernoulli(jax.random.wrap_key_data(k), 1 - cfg.dropout_words, ids.shape)
            ids = jnp.where(keep, ids, 1)  # word dropout: <unk>
            out = apply(p, ids, L)
            if regress:
                return jnp.mean((out[:, 0] - r) ** 2), {}
            return rj.losses.softmax_cross_entropy(out, y, reduction="mean"), {}

        @jax.jit
        def acc(stacked, ids, L, y, r, apply=apply, regress=regress):
            def one(p):
                out = apply(p, ids, L)
                pred = (out[:, 0] > 0).astype(jnp.int32) if regress else jnp.argmax(out, -1)
                return jnp.mean(pred == y)
            return jax.vmap(one)(stacked)

        tr = data["train"]
        idx = train.epoch_batches(len(tr[2]), cfg.batch_size, k_batch)
        tx = train.optimizer("adamw", cfg.lr, weight_decay=cfg.weight_decay, clip_norm=1.0, lr_schedule="cosine",
                             steps=cfg.steps)
        best = {"acc": None, "params": None}

        def eval_fn(p, acc=acc, best=best):  # keeps each seed's parameters at its best validation accuracy
            a = np.asarray(acc(p, *data["valid"]))
            if best["acc"] is None:  # a copy: the training step reuses (donates) the state's buffers
                best["acc"], best["params"] = a, jax.tree.map(jnp.copy, p)
            else:
                better = a > best["acc"]
                best["params"] = jax.tree.map(
                    lambda new, old: jnp.where(better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old), p, best["params"])
                best["acc"] = np.maximum(a, best["acc"])
            return {"valid_accuracy": a.tolist()}

        with _common.Timer() as t:
            res = train.fit(loss_fn, params, tx, lambda s: (tr[0][idx(s)], tr[1][idx(s)], tr[2][idx(s)], tr[3][idx(s)],
                                                            jax.random.key_data(jax.random.fold_in(k_drop, s))),
                            cfg.steps, run_dir=os.path.join(run_dir, name), seeds=cfg.seeds, log_every=25,
                            eval_every=cfg.eval_every, progress=False, checkpoint_every=cfg.steps,
                            eval_fn=eval_fn, monitor="valid_accuracy", mode="max")
        test = np.asarray(acc(best["params"], *data["test"]))
        last = np.asarray(acc(res.state.params, *data["test"]))
        row = {"model": name, "test_accuracy_per_seed": test.tolist(), "test_accuracy_mean": float(test.mean()),
               "test_accuracy_std": float(test.std(ddof=1)) if len(test) > 1 else 0.0,
               "valid_accuracy_best_per_seed": best["acc"].tolist(),
               "test_accuracy_last_mean": float(last.mean()), "steps": cfg.steps, "batch_size": cfg.batch_size,
               "wall_s": t.seconds}
        results["rows"].append(row)
        _common.save_results(run_dir, results)
        print(f"{name:<13} test accuracy {100 * row['test_accuracy_mean']:.1f} +/- {100 * row['test_accuracy_std']:.1f} % "
              f"(best valid checkpoint; last {100 * row['test_accuracy_last_mean']:.1f} %; {cfg.seeds} seeds, "
              f"{t.seconds:.0f}s)", flush=True)
    _common.save_results(run_dir, results)
    print(f"\nsentiment -> {run_dir}")
    return results


if __name__ == "__main__":
    main()
