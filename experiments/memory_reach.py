"""Where each cell stops: test MSE on the adding problem at T = 200, 1000 and 5000, from the committed runs.

    python -m experiments.memory_reach      # reads experiments/results/long_range*/, writes experiments/results/memory_reach/

No training: every figure is a committed run of ``experiments.long_range`` (its folder and budget in the
table). A cell and length with no committed run under the protocol (fresh random batches, Adam,
validation-selected, test set read once) is reported as not run, never filled in. Solved: test MSE < 0.01
(the baseline of predicting the mean is 0.167). Where several runs exist, the one with the largest budget
(updates x batch) is shown: never the best test figure.
"""
from __future__ import annotations

import glob
import json
import os

from experiments import _common

CELLS = ("gru", "lstm-chrono", "indrnn", "lru", "min_gru", "orthogonal")
LENGTHS = (200, 1000, 5000)
ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def committed_rows():
    """Every adding-problem row of the committed long_range runs, with the folder it came from."""
    rows = []
    for path in sorted(glob.glob(os.path.join(ROOT, "long_range*", "results.json"))
                       + glob.glob(os.path.join(ROOT, "long_range*", "*", "results.json"))):
        with open(path) as f:
            res = json.load(f)
        folder = os.path.relpath(os.path.dirname(path), ROOT)
        cfg = {}
        if os.path.exists(os.path.join(os.path.dirname(path), "config.json")):  # the budget of rows that lack it
            with open(os.path.join(os.path.dirname(path), "config.json")) as f:
                cfg = json.load(f).get("config", {})
        rows += [dict({"updates": cfg.get("steps"), "batch_size": cfg.get("batch_size"), "hidden": cfg.get("hidden")},
                      **{k: v for k, v in r.items() if v is not None}, folder=folder)
                 for r in res.get("rows", []) if r.get("task") == "adding"]
    return rows


def reach(rows):
    """``{(cell, T): the committed row with the largest budget}`` (updates x batch; the test MSE plays no part
    in the choice, which would select on the test set)."""
    best = {}
    budget = lambda r: (r.get("updates") or 0) * (r.get("batch_size") or 0)  # noqa: E731
    for r in rows:
        key = (r["model"], r["T"])
        if r["model"] in CELLS and r["T"] in LENGTHS and r["test_loss"] == r["test_loss"]:  # not NaN
            if key not in best or budget(r) > budget(best[key]):
                best[key] = r
    return best


def main(argv=None):
    best = reach(committed_rows())
    out_dir = os.path.join(ROOT, "memory_reach")
    os.makedirs(out_dir, exist_ok=True)
    table = []
    print(f"{'cell':<12}" + "".join(f"{'T=' + str(T):>30}" for T in LENGTHS))
    for cell in CELLS:
        cells = []
        for T in LENGTHS:
            r = best.get((cell, T))
            if r is None:
                cells.append("not run")
                table.append({"cell": cell, "T": T, "run": None})
                continue
            budget = f"{r.get('updates') or '?'} upd x {r.get('batch_size') or '?'}"
            cells.append(f"{r['test_loss']:.4f}{' solved' if r['solved'] else ''} ({budget})")
            table.append({"cell": cell, "T": T, "test_mse": r["test_loss"], "solved": r["solved"],
                          "updates": r.get("updates"), "batch_size": r.get("batch_size"), "hidden": r.get("hidden"),
                          "clip": r["clip"], "folder": r["folder"]})
        print(f"{cell:<12}" + "".join(f"{c:>30}" for c in cells))
    fig, ax = _common.figure((6, 4))
    for i, cell in enumerate(CELLS):
        pts = [(t["T"], t["test_mse"]) for t in table if t["cell"] == cell and t.get("test_mse") is not None]
        if pts:
            ax.plot(*zip(*pts), "o-", color=f"C{i}", label=cell)
    ax.axhline(0.167, color="gray", ls="--", lw=1, label="baseline (predict the mean)")
    ax.axhline(0.01, color="gray", ls=":", lw=1, label="solved")
    ax.set_xscale("log")
    _common.save_figure(fig, ax, os.path.join(out_dir, "reach.png"), xlabel="sequence length T",
                        ylabel="test MSE (largest committed run)", title="adding problem: where each cell stops",
                        logy=True)
    _common.save_results(out_dir, {"experiment": "memory_reach", "rows": table})
    print(f"-> {out_dir}")
    return {"rows": table}


if __name__ == "__main__":
    main()
