"""The character model built from the library's model and ``fit`` against the recipe that produced the
committed Penn Treebank and Shakespeare rows (``experiments/char_lm.py`` at commit 323ce2e, with its own
model class and training loop), on the PTB row's configuration (2 x 512 GRU, dropout 0.1, stateful
windows of 100 characters, batch 64, Adam 2e-3 with warm-up and cosine, clipping at 1).

Both start from the same weights (the old class's initialisation, written into the library model's
parameter tree: the two derive their initial weights from the seed in different orders) and read the
same windows with the same dropout masks; the script compares the training loss every 25 updates and
the parameters after ``--steps`` updates, and writes ``results.json`` and a plot to ``--out``.

    python scripts/char_lm_trajectory.py --steps=200 --out=experiments/results/char_lm_trajectory

Needs the git history (it reads the old file with ``git show``).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time

import jax
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
OLD_COMMIT = "323ce2e"


def old_module():
    src = subprocess.run(["git", "show", f"{OLD_COMMIT}:experiments/char_lm.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    spec = importlib.util.spec_from_loader("char_lm_old", loader=None)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["char_lm_old"] = mod  # dataclasses look their module up
    exec(compile(src, f"char_lm.py@{OLD_COMMIT}", "exec"), mod.__dict__)
    return mod


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", default="runs/char_lm_trajectory")
    args = ap.parse_args(argv)
    from experiments import char_lm as new
    from rnn_jax import train
    from rnn_jax.data import text

    old = old_module()
    fields = dict(corpora=("ptb",), models=("gru",), layers=2, hidden=512, embed=128, dropout=0.1, seq_len=100,
                  batch_size=64, steps=args.steps, lr=2e-3, warmup=200, eval_every=10 ** 9, valid_chars=10_000,
                  eval_chars=10_000, checkpoint_every=args.steps, sample_len=20, seed=0)
    build = new.build_model

    def same_start(cell, V, E, H, layers, dropout):
        model, layer = build(cell, V, E, H, layers, dropout)
        lm = old.LM(cell, V, E, H, layers, dropout)

        def init(key):
            p = lm.init(key)
            return {"embed": {"E": p["embed"]}, "rnn": {"layers": tuple(p["layers"]), "gates": ()}, "head": p["out"]}

        return model._replace(init=init), layer

    new.build_model = same_start
    c = text.ptb()
    os.makedirs(args.out, exist_ok=True)
    runs = {}
    for name, mod in (("old", old), ("library", new)):
        folder = os.path.join(args.out, "runs", name)
        if os.path.exists(folder):
            raise SystemExit(f"{folder} exists: choose a new --out")
        t = time.perf_counter()
        mod.lm_run("ptb", "gru", c, mod.Config(**fields), folder)
        runs[name] = {"seconds": time.perf_counter() - t, "folder": folder}
    rows = {}
    for name in runs:
        with open(os.path.join(runs[name]["folder"], "ptb_gru", "metrics.jsonl")) as f:
            rows[name] = {r["step"]: r["loss"] for r in map(json.loads, f) if r.get("kind") == "train"}
    steps = sorted(set(rows["old"]) & set(rows["library"]))
    a = np.array([rows["old"][s] for s in steps])
    b = np.array([rows["library"][s] for s in steps])
    params = {}
    for name in runs:  # both checkpoints hold (TrainState, carry)
        raw = train._read_checkpoint(os.path.join(runs[name]["folder"], "ptb_gru", "checkpoint.msgpack"))["state"]
        params[name] = raw["0"]["params"]
    po, pn = params["old"], params["library"]
    pairs = [(po["embed"], pn["embed"]["E"]), (po["layers"], pn["rnn"]["layers"]), (po["out"], pn["head"])]
    diffs = [float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for a_, b_ in pairs for x, y in zip(jax.tree_util.tree_leaves(a_), jax.tree_util.tree_leaves(b_))]
    result = {"old_commit": OLD_COMMIT, "config": fields, "steps_compared": steps, "loss_old": a.tolist(),
              "loss_library": b.tolist(), "max_abs_loss_difference": float(np.max(np.abs(a - b))),
              "max_rel_loss_difference": float(np.max(np.abs(a - b) / np.abs(a))),
              "max_abs_param_difference_after": max(diffs), "param_leaves": len(diffs),
              "seconds": {k: v["seconds"] for k, v in runs.items()}}
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=2)
    from experiments import _common
    _common.plot_curves({"recipe at " + OLD_COMMIT: (steps, a.tolist()), "library model + fit": (steps, b.tolist())},
                        os.path.join(args.out, "trajectory.png"), "training loss (nats/char)",
                        "PTB characters, 2 x 512 GRU: the same start, masks and windows", logy=False, xlabel="updates")
    print(json.dumps({k: v for k, v in result.items() if k not in ("config",)}, indent=1))
    return result


if __name__ == "__main__":
    main()
