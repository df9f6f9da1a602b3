"""The seed's four bit-reversal problems, each trained to 100% test accuracy.

    python -m experiments.bit_reverse            # all problems, ~1 minute on 2 CPU cores
    python -m experiments.bit_reverse --quick

Networks follow the seed: input neurons = input bits, output neurons = output bits, one recurrent
layer between (Elman, tanh; a Jordan network for problem 4, whose rule is about the previous output).
Loss: sigmoid cross-entropy summed over valid bits; Adam. Test accuracy is measured on inputs never
seen in training (30% of all possible inputs held out; problem 1 has only two inputs).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnn_jax as rj
from experiments import _common
from rnn_jax import distributed, train
from rnn_jax.data import bits


@dataclasses.dataclass(frozen=True)
class Config:
    problems: tuple[str, ...] = bits.PROBLEMS  # which problems to run: 1, 2-fixed, 2-variable, 3, 4
    hidden: int = 32                           # recurrent units
    cell4: str = "jordan"                      # cell for problem 4 (elman or jordan)
    steps: int = 600                           # Adam updates per problem
    batch_size: int = 64                       # sequences per update
    lr: float = 1e-2                           # Adam learning rate
    clip_norm: float = 5.0                     # gradient clipping by global norm
    seed: int = 0                              # PRNG seed for init, split and batches

    # domains beyond those the defaults imply (experiments._common.check_values); shown by --help
    limits: ClassVar[dict] = {
        "problems": _common.one_of(*bits.PROBLEMS),
        "cell4": _common.one_of("elman", "jordan"),
    }

    @classmethod
    def quick(cls):
        return cls(steps=450)


def build(problem: str, cfg: Config, I: int, O: int):
    cell = rj.jordan(cfg.hidden, O) if (problem == "4" and cfg.cell4 == "jordan") else rj.elman(cfg.hidden)
    return rj.many_to_many(rj.rnn(cell), O, input_size=I)


def run_problem(problem: str, cfg: Config, run_dir: str, resume: bool, mesh=None) -> dict:
    key = jax.random.key(cfg.seed)
    k_split, k_init, k_batch = jax.random.split(key, 3)
    task = bits.problem(problem)
    tr, va, te = bits.split(task, k_split)  # disjoint; a problem too small to hold out has empty va, te
    held_out = len(te.xs) > 0
    N, T, I = tr.xs.shape
    O = tr.ys.shape[-1]
    model = build(problem, cfg, I, O)
    params = model.init(k_init)

    def logits_of(params, xs, lengths):
        return model.apply(params, xs, lengths)[0]  # (B, T, O)

    def loss_fn(params, batch):
        xs, ys, mask, lengths = batch
        logits = logits_of(params, xs, lengths)
        bce = optax.sigmoid_binary_cross_entropy(logits, ys) * mask
        acc = (((logits > 0) == (ys > 0.5)) * mask).sum() / mask.sum()
        return bce.sum() / xs.shape[0], {"bit_accuracy": acc}

    @jax.jit
    def evaluate(params, xs, ys, mask, lengths):
        pred = logits_of(params, xs, lengths) > 0
        right = (pred == (ys > 0.5)) | (mask == 0)
        return {"bits_right": jnp.sum((pred == (ys > 0.5)) & (mask > 0)), "bits": jnp.sum(mask > 0),
                "sequences_right": jnp.sum(jnp.all(right, axis=(1, 2))), "sequences": xs.shape[0]}

    def accuracies(params, data):
        c = {k: int(v) for k, v in evaluate(params, *data).items()}
        return {"bit_accuracy": c["bits_right"] / c["bits"], "sequence_accuracy": c["sequences_right"] / c["sequences"]}

    bs = min(cfg.batch_size, N)
    idx = train.epoch_batches(N, bs, k_batch)
    mine = distributed.process_slice(bs)  # this process loads only its part of each batch

    def batch_fn(step):
        i = idx(step)[mine]
        return tuple(a[i] for a in tr)

    # selection reads the validation part (the training examples when nothing could be held out)
    split, selection = ("valid", va) if held_out else ("train", tr)
    selection = tuple(jnp.asarray(a) for a in selection)
    sub = os.path.join(run_dir, f"problem{problem}")
    with _common.Timer() as t:
        res = train.fit(loss_fn, params, train.optimizer("adam", cfg.lr, clip_norm=cfg.clip_norm), batch_fn,
                        cfg.steps, run_dir=sub, resume=resume, log_every=10, eval_every=50,
                        eval_fn=lambda p: {f"{split}_{k}": v for k, v in accuracies(p, selection).items()},
                        monitor=f"{split}_sequence_accuracy", mode="max", desc=f"problem {problem}", mesh=mesh)
    final = accuracies(res.state.params, tuple(jnp.asarray(a) for a in te)) if held_out else \
        {"bit_accuracy": None, "sequence_accuracy": None}  # nothing unseen to read
    solved_at = next((r["step"] for r in res.history
                      if r.get("kind") == "eval" and r[f"{split}_sequence_accuracy"] == 1.0), None)
    return {"problem": problem, "cell": model_name(problem, cfg), "train_examples": int(N),
            "valid_examples": int(len(va.xs)), "test_examples": int(len(te.xs)), "T": int(T), "I": int(I),
            "O": int(O), "status": res.status, "test_bit_accuracy": final["bit_accuracy"],
            "test_sequence_accuracy": final["sequence_accuracy"], "selected_on": split,
            "first_eval_at_100pct": solved_at, "wall_s": t.seconds, "history": res.history}


def model_name(problem, cfg):
    return "jordan" if (problem == "4" and cfg.cell4 == "jordan") else "elman-tanh"


def main(argv=None) -> dict:
    cfg, args = _common.parse_config(Config, argv, __doc__)
    if args.mesh is not None:  # each problem's batch: min(batch_size, its training examples)
        k_split = jax.random.split(jax.random.key(cfg.seed), 3)[0]
        sizes = {f"problem {p}'s batch": min(cfg.batch_size, len(bits.split(bits.problem(p), k_split)[0].xs))
                 for p in cfg.problems}
        problem = _common.mesh_batch_problem(args.mesh, sizes)
        if problem:
            hint = " (problem 1 has 2 examples: leave it out with --problems)" if "1" in cfg.problems else ""
            print(f"error: {problem}{hint}", file=sys.stderr)
            raise SystemExit(2)
    run_dir = _common.make_run_dir("bit_reverse", cfg, args)
    rows = [run_problem(p, cfg, run_dir, bool(args.resume), args.mesh) for p in cfg.problems]
    curves = {f"problem {r['problem']} ({r['cell']})": _common.train_curve(r["history"]) for r in rows}
    _common.plot_curves(curves, os.path.join(run_dir, "learning_curves.png"), "training loss (sum of bit BCE)",
                        "Bit-reversal problems")
    results = {"experiment": "bit_reverse", "run_dir": run_dir,
               "problems": [{k: v for k, v in r.items() if k != "history"} for r in rows]}
    _common.save_results(run_dir, results)
    print(f"\nbit_reverse -> {run_dir}")
    print(f"{'problem':<12}{'cell':<12}{'train':>7}{'test':>7}{'bit acc':>9}{'seq acc':>9}{'wall s':>8}")
    for r in results["problems"]:
        acc = (f"{r['test_bit_accuracy']:>9.4f}{r['test_sequence_accuracy']:>9.4f}" if r["test_examples"]
               else f"{'(none held out)':>18}")
        print(f"{r['problem']:<12}{r['cell']:<12}{r['train_examples']:>7}{r['test_examples']:>7}{acc}{r['wall_s']:>8.1f}")
    return results


if __name__ == "__main__":
    main()
