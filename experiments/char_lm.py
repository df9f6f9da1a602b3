"""Character-level language models: the seeds' "hello" model, then Shakespeare and Penn Treebank.

    python -m experiments.char_lm              # hello + Shakespeare + PTB, 4 RNNs each, n-gram baselines
    python -m experiments.char_lm --quick

RNNs (Elman tanh, LSTM, GRU, two stacked GRU layers) read one-hot characters and predict the next one,
trained on random windows of ``seq_len`` characters with Adam and gradient clipping by global norm.
Bits per character are measured on held-out text (the first ``eval_chars`` characters of the test
split, read as ``eval_segments`` contiguous segments, each from a zero state). Beside them: n-gram
Markov models of several orders (interpolated Witten-Bell, rnn_jax.ngram), and samples of generated
text at several temperatures. Published reference on character-level PTB: Pascanu et al. (2013),
1.42 bits/char for an RNN with gradient clipping; Mikolov et al. (2012) report ~1.41 with an RNN and
~1.5-1.6 for n-gram models (note: their character PTB writes spaces as '_', otherwise the same text).
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
from rnn_jax.data import text
from rnn_jax.ngram import NGram

CORPORA = ("hello", "shakespeare", "ptb")
MODELS = ("elman", "lstm", "gru", "gru-stacked")
PROMPTS = {"shakespeare": "ROMEO.\n", "ptb": "the ", "hello": "h"}


@dataclasses.dataclass(frozen=True)
class Config:
    corpora: tuple[str, ...] = CORPORA            # hello, shakespeare, ptb
    models: tuple[str, ...] = MODELS              # elman, lstm, gru, gru-stacked
    hidden: int = 128                             # units per recurrent layer
    seq_len: int = 100                            # characters per training window (BPTT length)
    batch_size: int = 32                          # windows per update
    steps: int = 1500                             # Adam updates per model and corpus
    lr: float = 1e-2                              # peak learning rate (cosine decay)
    clip_norm: float = 1.0                        # gradient clipping by global norm
    eval_chars: int = 100_000                     # held-out characters for bits/char
    eval_segments: int = 10                       # contiguous segments they are read in
    ngram_orders: tuple[int, ...] = (1, 2, 3, 4, 5, 6)  # Markov baselines
    sample_len: int = 300                         # characters per sample
    temperatures: tuple[float, ...] = (0.5, 1.0)  # sampling temperatures
    seed: int = 0                                 # PRNG seed

    @classmethod
    def quick(cls):
        return cls(corpora=("hello", "ptb"), models=("gru",), hidden=48, steps=150, eval_chars=5000,
                   ngram_orders=(1, 3), sample_len=60, temperatures=(1.0,))


def build(name: str, H: int, V: int):
    layer = {"elman": lambda: rj.rnn(rj.elman(H)), "lstm": lambda: rj.rnn(rj.lstm(H)),
             "gru": lambda: rj.rnn(rj.gru(H)), "gru-stacked": lambda: rj.stack(rj.rnn(rj.gru(H)), rj.rnn(rj.gru(H)))}[name]()
    return rj.many_to_many(layer, V, vocab_size=V)  # one-hot inputs


def hello_run(cfg, run_dir):
    """The seeds' example: learn h->e, e->l, l->l/o from the one word "hello"; the prediction after 'l'
    depends on the state (first l -> l, second l -> o), which a bigram model cannot represent."""
    c = text.hello()
    V = len(c.vocab)
    model = rj.many_to_many(rj.rnn(rj.elman(8)), V, vocab_size=V)
    x, y = jnp.asarray(c.train[:-1]), jnp.asarray(c.train[1:])

    def loss_fn(p, batch):
        logits, _ = model.apply(p, batch[0])
        return rj.losses.softmax_cross_entropy(logits, batch[1], reduction="mean"), {}

    res = train.fit(loss_fn, model.init(jax.random.key(cfg.seed)), train.optimizer("adam", 3e-2), lambda s: (x, y),
                    300, run_dir=os.path.join(run_dir, "hello"), progress=False, log_every=10)
    logits, _ = model.apply(res.state.params, x)
    greedy, _ = model.generate(res.state.params, jnp.asarray(text.encode("h", c.vocab)), max_len=4)
    ngram = NGram(2, V).fit(c.train)
    return {"corpus": "hello", "vocab": c.vocab, "predicted_next": text.decode(jnp.argmax(logits, -1), c.vocab),
            "greedy_from_h": "h" + text.decode(greedy, c.vocab), "final_loss": res.history[-1]["loss"],
            "bigram_bits_per_char": ngram.bits_per_char(c.train)}


def evaluate_bpc(model, params, ids: np.ndarray, segments: int) -> float:
    n = (len(ids) - 1) // segments
    x = jnp.asarray(np.stack([ids[i * n: (i + 1) * n] for i in range(segments)]))
    y = jnp.asarray(np.stack([ids[i * n + 1: (i + 1) * n + 1] for i in range(segments)]))

    @jax.jit
    def total_bits(p):
        logits, _ = model.apply(p, x)  # (segments, n, V)
        return rj.losses.softmax_cross_entropy(logits, y, reduction="sum") / np.log(2)

    return float(total_bits(params)) / x.size


def lm_run(corpus_name, model_name, c, cfg, run_dir, mesh=None):
    V, L, B = len(c.vocab), cfg.seq_len, cfg.batch_size
    model = build(model_name, cfg.hidden, V)
    key = jax.random.fold_in(jax.random.key(cfg.seed), CORPORA.index(corpus_name))
    k_init, k_data, k_sample = jax.random.split(key, 3)
    data = c.train
    mine = distributed.process_slice(B)

    def batch_fn(step):
        starts = np.asarray(jax.random.randint(jax.random.fold_in(k_data, step), (B,), 0, len(data) - L - 1))[mine]
        idx = starts[:, None] + np.arange(L + 1)[None, :]
        w = data[idx]
        return w[:, :-1], w[:, 1:]

    def loss_fn(p, batch):
        x, y = batch
        logits, _ = model.apply(p, x)  # (B, L, V)
        ce = rj.losses.softmax_cross_entropy(logits, y, reduction="mean")
        return ce, {"bits_per_char": ce / np.log(2)}

    tx = train.optimizer("adam", cfg.lr, clip_norm=cfg.clip_norm, lr_schedule="cosine", steps=cfg.steps)
    valid = c.valid[: cfg.eval_chars // 2 + 1]
    with _common.Timer() as t:
        res = train.fit(loss_fn, model.init(k_init), tx, batch_fn, cfg.steps,
                        run_dir=os.path.join(run_dir, f"{corpus_name}_{model_name}"), log_every=25,
                        eval_every=max(cfg.steps // 5, 1), tokens_per_batch=B * L, progress=False, mesh=mesh,
                        eval_fn=lambda p: {"valid_bits_per_char": evaluate_bpc(model, p, valid, cfg.eval_segments)},
                        monitor="valid_bits_per_char", checkpoint_every=cfg.steps)
    params = res.state.params
    test_bpc = evaluate_bpc(model, params, c.test[: cfg.eval_chars + 1], cfg.eval_segments)
    prompt = jnp.asarray(text.encode(PROMPTS[corpus_name], c.vocab))
    samples = {str(temp): PROMPTS[corpus_name] + text.decode(
        model.generate(params, prompt, max_len=cfg.sample_len, key=jax.random.fold_in(k_sample, i),
                       temperature=temp)[0], c.vocab)
        for i, temp in enumerate(cfg.temperatures)}
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(params))
    tok_s = [r["tokens_per_s"] for r in res.history if "tokens_per_s" in r]
    row = {"corpus": corpus_name, "model": model_name, "hidden": cfg.hidden, "params": n_params,
           "test_bits_per_char": test_bpc, "train_bits_per_char_last": res.history[-1].get("bits_per_char"),
           "status": res.status, "steps": cfg.steps, "wall_s": t.seconds,
           "tokens_per_s_median": float(np.median(tok_s)) if tok_s else None, "samples": samples,
           "history": res.history}
    print(f"{corpus_name:<12} {model_name:<12} test {test_bpc:.3f} bits/char ({n_params} params, {t.seconds:.0f}s)",
          flush=True)
    return row


def main(argv=None):
    cfg, args = _common.parse_config(Config, argv, __doc__)
    _common.check_choices("corpora", cfg.corpora, CORPORA)
    _common.check_choices("models", cfg.models, MODELS)
    run_dir = _common.make_run_dir("char_lm", cfg, args)
    results = {"experiment": "char_lm", "run_dir": run_dir, "rows": [], "ngram": [], "hello": None}
    curves = {}
    for corpus_name in cfg.corpora:
        if corpus_name == "hello":
            results["hello"] = hello_run(cfg, run_dir)
            print(f"hello: next-char predictions for 'hell' -> {results['hello']['predicted_next']!r}, "
                  f"greedy from 'h': {results['hello']['greedy_from_h']!r}", flush=True)
            continue
        c = {"shakespeare": text.shakespeare, "ptb": text.ptb}[corpus_name]()
        test_ids = c.test[: cfg.eval_chars + 1]
        for n in cfg.ngram_orders:
            m = NGram(n, len(c.vocab)).fit(c.train)
            results["ngram"].append({"corpus": corpus_name, "order": n, "test_bits_per_char": m.bits_per_char(test_ids)})
            print(f"{corpus_name:<12} {n}-gram       test {results['ngram'][-1]['test_bits_per_char']:.3f} bits/char",
                  flush=True)
        for model_name in cfg.models:
            row = lm_run(corpus_name, model_name, c, cfg, run_dir, args.mesh)
            curves[f"{corpus_name} {model_name}"] = _common.train_curve(row.pop("history"), "bits_per_char")
            results["rows"].append(row)
            _common.save_results(run_dir, results)
    if curves:
        _common.plot_curves(curves, os.path.join(run_dir, "learning_curves.png"), "training bits/char",
                            "Character-level language models", logy=False)
    _common.save_results(run_dir, results)
    with open(os.path.join(run_dir, "samples.md"), "w") as f:
        for r in results["rows"]:
            for temp, s in r["samples"].items():
                f.write(f"## {r['corpus']} / {r['model']} / temperature {temp}\n\n```\n{s}\n```\n\n")
    print(f"\nchar_lm -> {run_dir}")
    return results


if __name__ == "__main__":
    main()
