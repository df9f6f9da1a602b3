"""Encoder-decoder translation: dates in many locales and formats -> ISO 8601.

    python -m experiments.translate            # ~5 minutes on 2 CPU cores
    python -m experiments.translate --quick

Sources are dates written by babel (12 locales x 4 styles, e.g. "Mittwoch, 14. Februar 1973",
"2/14/73", "14 févr. 1973"), read character by character by a bidirectional GRU encoder; a GRU
decoder with its own weights writes "1973-02-14" and an end token. Training uses teacher forcing;
evaluation decodes greedily, stopping at the end token, on dates never seen in training. Reported:
exact-match accuracy (the whole date right), per-character accuracy, and accuracy per locale and style.
"""
from __future__ import annotations

import dataclasses
import os
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np

import rnn_jax as rj
from experiments import _common
from rnn_jax import distributed, train
from rnn_jax.data import dates


@dataclasses.dataclass(frozen=True)
class Config:
    n_train: int = 20000        # training dates (each in a random locale and style), a tenth held out for selection
    n_test: int = 2000          # test dates, disjoint from the training dates
    hidden: int = 128           # encoder units per direction and decoder units
    embed: int = 32             # character embedding size (source and target)
    steps: int = 3000           # Adam updates
    batch_size: int = 64        # sentence pairs per update
    lr: float = 3e-3            # peak learning rate (cosine decay)
    clip_norm: float = 1.0      # gradient clipping by global norm
    seed: int = 0               # PRNG seed

    @classmethod
    def quick(cls):
        return cls(n_train=3000, n_test=300, hidden=64, steps=400)


def build(task, cfg):
    enc = rj.bidirectional(rj.rnn(rj.gru(cfg.hidden)), rj.rnn(rj.gru(cfg.hidden)))
    return rj.encoder_decoder(enc, rj.gru(cfg.hidden), src_vocab=len(task.src_vocab), src_embed_size=cfg.embed,
                              tgt_vocab=len(task.tgt_vocab), embed_size=cfg.embed, bos=dates.BOS, eos=dates.EOS,
                              readout="ends")


def main(argv=None):
    cfg, args = _common.parse_config(Config, argv, __doc__)
    run_dir = _common.make_run_dir("translate", cfg, args)
    with _common.Timer() as t_data:
        tr, te = dates.make(cfg.n_train, cfg.n_test, cfg.seed)
        n_valid = max(1, cfg.n_train // 10)  # selection reads these held-out training dates, never the test split
        tr, va = tr.take(np.arange(cfg.n_train - n_valid)), tr.take(np.arange(cfg.n_train - n_valid, cfg.n_train))
    model = build(tr, cfg)
    key = jax.random.key(cfg.seed)
    k_init, k_batch = jax.random.split(key)
    T_out = tr.tgt_out.shape[1]

    def loss_fn(p, batch):
        src, src_len, tgt_in, tgt_out = batch
        logits = model.apply(p, src, src_len, tgt_in)  # (B, T_out, V)
        ce = rj.losses.softmax_cross_entropy(logits, tgt_out, reduction="sequence_mean")  # sum over steps
        acc = jnp.mean(jnp.all(jnp.argmax(logits, -1) == tgt_out, -1))
        return ce, {"teacher_forced_exact": acc}

    @jax.jit
    def decode(p, src, src_len):
        return model.generate(p, src, src_len, max_len=T_out)

    def evaluate(p, task, n=None):
        n = n or len(task.src)
        toks, lengths = [], []
        for i in range(0, n, 500):
            tk, ln = decode(p, jnp.asarray(task.src[i:i + 500]), jnp.asarray(task.src_len[i:i + 500]))
            toks.append(np.asarray(tk))
            lengths.append(np.asarray(ln))
        toks, lengths = np.concatenate(toks), np.concatenate(lengths)
        exact = np.all(toks == task.tgt_out[:n], -1)  # ten characters and the end token
        chars = np.mean(toks[:, :10] == task.tgt_out[:n, :10])
        return exact, chars, toks

    idx = train.epoch_batches(len(tr.src), cfg.batch_size, k_batch)
    mine = distributed.process_slice(cfg.batch_size)
    tx = train.optimizer("adam", cfg.lr, clip_norm=cfg.clip_norm, lr_schedule="cosine", steps=cfg.steps)
    with _common.Timer() as t:
        res = train.fit(loss_fn, model.init(k_init), tx,
                        lambda s: tuple(a[idx(s)[mine]] for a in (tr.src, tr.src_len, tr.tgt_in, tr.tgt_out)),
                        cfg.steps, run_dir=run_dir, log_every=25, eval_every=max(cfg.steps // 6, 1), progress=False,
                        eval_fn=lambda p: {"valid_exact_match": float(evaluate(p, va, 500)[0].mean())},
                        monitor="valid_exact_match", mode="max", checkpoint_every=cfg.steps, mesh=args.mesh)
    valid_exact = float(evaluate(res.state.params, va)[0].mean())
    exact, chars, toks = evaluate(res.state.params, te)  # the final parameters, on the test split once
    by_locale, by_style = defaultdict(list), defaultdict(list)
    for e, (loc, fmt) in zip(exact, te.styles):
        by_locale[loc].append(e)
        by_style[fmt].append(e)
    examples = [{"src": te.src_text[i], "tgt": te.tgt_text[i], "pred": "".join(
        te.tgt_vocab[c] for c in toks[i] if c > dates.EOS)} for i in range(12)]
    wrong = [{"src": te.src_text[i], "tgt": te.tgt_text[i],
              "pred": "".join(te.tgt_vocab[c] for c in toks[i] if c > dates.EOS)} for i in np.flatnonzero(~exact)[:12]]
    results = {"experiment": "translate", "run_dir": run_dir, "train_pairs": len(tr.src), "valid_pairs": len(va.src),
               "test_pairs": cfg.n_test, "valid_exact_match": valid_exact,
               "locales": dates.LOCALES, "styles": dates.FORMATS, "src_vocab_size": len(tr.src_vocab),
               "test_exact_match": float(exact.mean()), "test_char_accuracy": float(chars),
               "exact_match_by_locale": {k: float(np.mean(v)) for k, v in sorted(by_locale.items())},
               "exact_match_by_style": {k: float(np.mean(v)) for k, v in by_style.items()},
               "status": res.status, "steps": cfg.steps, "wall_s": t.seconds, "data_s": t_data.seconds,
               "examples": examples, "errors": wrong}
    _common.save_results(run_dir, results)
    _common.plot_curves({"train (teacher forcing)": _common.train_curve(res.history)},
                        os.path.join(run_dir, "learning_curve.png"), "cross-entropy per date (sum over 11 steps)",
                        "Date normalisation")
    print(f"\ntranslate -> {run_dir}\ntest exact match {100 * exact.mean():.2f} %, characters "
          f"{100 * chars:.2f} % ({cfg.n_test} unseen dates, {t.seconds:.0f}s)")
    for e in examples[:6]:
        print(f"  {e['src']!r:>36} -> {e['pred']}  (true {e['tgt']})")
    return results


if __name__ == "__main__":
    main()
