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
import time
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

import rnn_jax as rj
from experiments import _common
from rnn_jax import train
from rnn_jax.data import text
from rnn_jax.ngram import NGram

CORPORA = ("hello", "shakespeare", "ptb")
MODELS = ("elman", "lstm", "gru", "min_gru", "min_lstm", "indrnn", "lru")
CELLS = {"elman": rj.elman, "lstm": rj.lstm, "gru": rj.gru, "min_gru": rj.min_gru, "min_lstm": rj.min_lstm,
         "indrnn": rj.indrnn, "lru": rj.lru}
PROMPTS = {"shakespeare": "ROMEO.\n", "ptb": "the ", "hello": "h"}


@dataclasses.dataclass(frozen=True)
class Config:
    corpora: tuple[str, ...] = CORPORA            # hello, shakespeare, ptb
    models: tuple[str, ...] = ("lstm", "gru")     # elman, lstm, gru, min_gru, min_lstm, indrnn, lru
    layers: int = 2                               # stacked recurrent layers
    hidden: int = 512                             # units per recurrent layer
    embed: int = 128                              # learned character embedding size
    dropout: float = 0.1                          # dropout on each layer's outputs (0 = none)
    seq_len: int = 100                            # characters per window (truncated BPTT length)
    batch_size: int = 64                          # streams read side by side
    stateful: bool = True                         # carry each stream's state across its windows
    steps: int = 6000                             # Adam updates per model and corpus (the schedule's length)
    minutes: float = 0.0                          # stop a model's training after this much wall-clock (0: none)
    lr: float = 2e-3                              # peak learning rate (warm-up, cosine decay)
    warmup: int = 200                             # warm-up updates
    clip_norm: float = 1.0                        # gradient clipping by global norm
    eval_every: int = 1000                        # updates between validation evaluations
    valid_chars: int = 100_000                    # validation characters read at each evaluation
    eval_chars: int = 1_000_000                   # test characters (clipped to the test split's size)
    eval_segments: int = 8                        # contiguous test segments, each read with its state carried
    checkpoint_every: int = 250                   # updates between checkpoints
    ngram_orders: tuple[int, ...] = (1, 2, 3, 4, 5, 6)  # Markov baselines
    sample_len: int = 300                         # characters per sample
    temperatures: tuple[float, ...] = (0.5, 1.0)  # sampling temperatures
    seed: int = 0                                 # PRNG seed

    # domains beyond those the defaults imply (experiments._common.check_values); shown by --help
    limits: ClassVar[dict] = {
        "corpora": _common.one_of(*CORPORA),
        "models": _common.one_of(*MODELS),
        "dropout": _common.FRACTION,
    }

    @classmethod
    def quick(cls):
        return cls(corpora=("hello", "ptb"), models=("gru",), layers=1, hidden=48, embed=16, batch_size=32,
                   steps=150, warmup=10, lr=1e-2, eval_every=75, valid_chars=5000, eval_chars=5000,
                   ngram_orders=(1, 3), sample_len=60, temperatures=(1.0,))


def build_model(cell: str, V: int, E: int, H: int, layers: int, dropout: float) -> tuple[rj.Model, rj.Layer]:
    """The library's language model and its recurrent stack: a learned embedding, ``layers`` recurrent
    layers of ``H`` units (dropout on each one's outputs while training: ``stack(dropout=)``), a linear
    read-out to next-character logits. ``apply(params, x (B, T), None, state, key=None) -> (logits
    (B, T, V), state)``; ``generate`` samples text; ``rj.stream_init(layer, (B,))`` is a zero state."""
    layer = rj.stack(*[rj.rnn(CELLS[cell](H)) for _ in range(layers)], dropout=dropout)
    return rj.many_to_many(layer, V, vocab_size=V, embed_size=E), layer


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


def streams(ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``ids`` cut into ``n`` contiguous streams: inputs and next-character targets, each ``(n, len // n)``."""
    m = (len(ids) - 1) // n
    x = ids[: n * m].reshape(n, m)
    y = ids[1: n * m + 1].reshape(n, m)
    return x, y


def window_bits_fn(model: rj.Model):
    """Jitted ``(params, x (S, W), y (S, W), state) -> (bits summed, state)``: one window of every stream."""
    @jax.jit
    def bits(params, x, y, state):
        logits, state = model.apply(params, x, None, state)
        return rj.losses.softmax_cross_entropy(logits, y, reduction="sum") / np.log(2), state

    return bits


def evaluate_bpc(window_bits, zero, params, ids: np.ndarray, segments: int, window: int = 1000) -> float:
    """Bits per character over ``ids``, read as ``segments`` contiguous streams side by side, each one
    window after another with its state carried (so every character but the first of each segment
    is predicted from all the text before it in its segment). ``zero(n)``: the state of ``n`` streams."""
    x, y = streams(ids, segments)
    state, bits = zero(segments), 0.0
    for t in range(0, x.shape[1], window):
        b, state = window_bits(params, jnp.asarray(x[:, t: t + window]), jnp.asarray(y[:, t: t + window]), state)
        bits += float(b)
    return bits / x.size


def lm_run(corpus_name, model_name, c, cfg, run_dir):
    """Stateful truncated BPTT with the library's model and ``fit``: the training text is cut into
    ``batch_size`` contiguous streams; update ``s`` reads window ``s`` of every stream (``seq_len``
    characters) from the state the previous window left (``fit(carry=)``: a constant, no gradient crosses
    a window boundary); the state is reset, and the windows shifted by a random offset, at every pass over
    the text (``fit(reset=)``). Resumable from its folder."""
    V, L, B = len(c.vocab), cfg.seq_len, cfg.batch_size
    model, layer = build_model(model_name, V, cfg.embed, cfg.hidden, cfg.layers, cfg.dropout)
    zero = lambda n: rj.stream_init(layer, (n,))  # noqa: E731  (the state of n streams)
    key = jax.random.fold_in(jax.random.key(cfg.seed), CORPORA.index(corpus_name))
    k_init, k_data, k_drop, k_sample = jax.random.split(key, 4)
    per_epoch = (len(c.train) - 1) // B // L - 1  # windows per pass (one kept spare for the offset)
    tx = train.optimizer("adam", cfg.lr, clip_norm=cfg.clip_norm, lr_schedule="warmup_cosine", steps=cfg.steps,
                         warmup=cfg.warmup)

    def window(step):
        epoch, w = divmod(step, per_epoch)
        offset = int(jax.random.randint(jax.random.fold_in(k_data, epoch), (), 0, L)) if cfg.stateful else 0
        if not cfg.stateful:  # every window a random place, read from a zero state
            starts = np.asarray(jax.random.randint(jax.random.fold_in(k_data, step), (B,), 0, len(c.train) - L - 1))
            idx = starts[:, None] + np.arange(L + 1)[None, :]
            return c.train[idx][:, :-1], c.train[idx][:, 1:], True
        x, y = streams(c.train[offset:], B)
        return x[:, w * L:(w + 1) * L], y[:, w * L:(w + 1) * L], w == 0

    def loss_fn(params, batch, key, carry):
        logits, final = model.apply(params, batch[0], None, carry, key=key)
        ce = rj.losses.softmax_cross_entropy(logits, batch[1], reduction="mean")
        return ce, ({"bits_per_char": ce / np.log(2)}, final)

    window_bits = window_bits_fn(model)
    valid = c.valid[: cfg.valid_chars + 1]
    folder = os.path.join(run_dir, f"{corpus_name}_{model_name}")
    t0 = time.perf_counter()

    def eval_fn(params):
        vb = evaluate_bpc(window_bits, zero, params, valid, cfg.eval_segments)
        print(f"{corpus_name:<12} {model_name:<12} valid {vb:.3f} bits/char ({time.perf_counter() - t0:.0f}s)",
              flush=True)
        return {"valid_bits_per_char": vb}

    ckpt = os.path.join(folder, "checkpoint.msgpack")
    if os.path.exists(ckpt):
        print(f"{corpus_name:<12} {model_name:<12} resumed at update {train.checkpoint_info(ckpt)['step']}", flush=True)
    res = train.fit(loss_fn, model.init(k_init), tx, lambda s: window(s)[:2], cfg.steps, run_dir=folder, resume=True,
                    key=k_drop, carry=zero(B), reset=lambda s: window(s)[2], log_every=25, eval_every=cfg.eval_every,
                    eval_fn=eval_fn, monitor="valid_bits_per_char", checkpoint_every=cfg.checkpoint_every,
                    tokens_per_batch=B * L, max_seconds=60 * cfg.minutes if cfg.minutes else None, progress=False)
    if res.status == "diverged":
        raise FloatingPointError(f"{corpus_name} {model_name}: {res.message} ({folder})")
    history, done, params = res.history, int(res.state.step), res.state.params
    wall = max([r["wall_s"] for r in history if "wall_s" in r], default=0.0)
    test_ids = c.test[: cfg.eval_chars + 1]
    test_bpc = evaluate_bpc(window_bits, zero, params, test_ids, cfg.eval_segments)  # the final params, once
    prompt = jnp.asarray(text.encode(PROMPTS[corpus_name], c.vocab))[None]
    samples = {str(temp): PROMPTS[corpus_name] + text.decode(np.asarray(model.generate(
        params, prompt, max_len=cfg.sample_len, key=jax.random.fold_in(k_sample, i), temperature=temp)[0][0]), c.vocab)
        for i, temp in enumerate(cfg.temperatures)}
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(params))
    tok_s = [r["tokens_per_s"] for r in history if "tokens_per_s" in r]
    train_rows = [r for r in history if r.get("kind") == "train"]
    row = {"corpus": corpus_name, "model": model_name, "layers": cfg.layers, "hidden": cfg.hidden,
           "params": n_params, "test_chars": len(test_ids) - 1, "test_bits_per_char": test_bpc,
           "best_valid_bits_per_char": (res.best or {}).get("valid_bits_per_char"),
           "train_bits_per_char_last": train_rows[-1]["bits_per_char"] if train_rows else None,
           "steps": done, "schedule_steps": cfg.steps, "minutes": cfg.minutes, "epochs": done / per_epoch, "wall_s": wall,
           "status": res.status, "tokens_per_s_median": float(np.median(tok_s)) if tok_s else None, "samples": samples,
           "history": history}
    print(f"{corpus_name:<12} {model_name:<12} test {test_bpc:.3f} bits/char on {len(test_ids) - 1} chars "
          f"({n_params} params, {done} updates, {done / per_epoch:.2f} epochs, {wall:.0f}s)", flush=True)
    return row


def plot_learning_curves(histories: dict, run_dir: str) -> None:
    """Training and validation bits/char against updates (learning_curves.png) and against wall-clock
    minutes on this machine (learning_curves_wall.png)."""
    for x_key, xlabel, name, scale in (("step", "updates", "learning_curves.png", 1),
                                       ("wall_s", "wall-clock minutes", "learning_curves_wall.png", 60)):
        curves = {}
        for label, hist in histories.items():
            for kind, key in (("train", "bits_per_char"), ("eval", "valid_bits_per_char")):
                rows = [r for r in hist if r.get("kind") == kind and key in r]
                if rows:
                    curves[f"{label} {'train' if kind == 'train' else 'valid'}"] = (
                        [r[x_key] / scale for r in rows], [r[key] for r in rows])
        _common.plot_curves(curves, os.path.join(run_dir, name), "bits/char", "Character-level language models",
                            logy=False, xlabel=xlabel)


def main(argv=None):
    cfg, args = _common.parse_config(Config, argv, __doc__)
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
            row = lm_run(corpus_name, model_name, c, cfg, run_dir)
            curves[f"{corpus_name} {model_name}"] = row.pop("history")
            results["rows"].append(row)
            _common.save_results(run_dir, results)
    if curves:
        plot_learning_curves(curves, run_dir)
    _common.save_results(run_dir, results)
    with open(os.path.join(run_dir, "samples.md"), "w") as f:
        for r in results["rows"]:
            for temp, s in r["samples"].items():
                f.write(f"## {r['corpus']} / {r['model']} / temperature {temp}\n\n```\n{s}\n```\n\n")
    print(f"\nchar_lm -> {run_dir}")
    return results


if __name__ == "__main__":
    main()
