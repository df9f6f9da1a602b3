"""Write runs/report.md: the latest run of every experiment under runs/, as a table with its plots.

    python -m experiments.report [--runs=runs]
"""
from __future__ import annotations

import argparse
import glob
import json
import os


def latest(runs: str, name: str):
    dirs = sorted(d for d in glob.glob(os.path.join(runs, name, "*")) if os.path.exists(os.path.join(d, "results.json")))
    if not dirs:
        return None, None
    with open(os.path.join(dirs[-1], "results.json")) as f:
        return dirs[-1], json.load(f)


def _full_run(corpus: str):
    """The committed full-budget character-model result for ``corpus``, if there is one."""
    path = os.path.join(os.path.dirname(__file__), "results", f"char_lm_{corpus}", "results.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        rows = [row for row in json.load(f)["rows"] if row["corpus"] == corpus]
    return min(rows, key=lambda row: row["test_bits_per_char"]) if rows else None


def summarise(name: str, r: dict) -> list[tuple[str, str]]:
    """(what, figure) pairs for one experiment's results."""
    out = []
    if name == "bit_reverse":
        for p in r["problems"]:
            if not p["test_examples"]:  # too few examples to hold any out: no claim about unseen ones
                out.append((f"problem {p['problem']} ({p['cell']})",
                            f"{p['train_examples']} examples, all used for training: none held out"))
                continue
            out.append((f"problem {p['problem']} ({p['cell']}), test sequences",
                        f"{100 * p['test_sequence_accuracy']:.1f} % exact ({p['test_examples']} unseen)"))
    elif name == "classify":
        for row in r["rows"]:
            out.append((f"{row['dataset']} {row['arch']}", f"{100 * row['test_accuracy_mean']:.1f} +/- "
                        f"{100 * row['test_accuracy_std']:.1f} % test accuracy ({row['seeds']} seeds)"))
    elif name == "char_lm":
        if r.get("hello"):
            out.append(("hello: greedy from 'h'", repr(r["hello"]["greedy_from_h"])))
        best = {}
        for g in r["ngram"]:
            if g["corpus"] not in best or g["test_bits_per_char"] < best[g["corpus"]]["test_bits_per_char"]:
                best[g["corpus"]] = g
        for row in r["rows"]:
            figure = f"{row['test_bits_per_char']:.3f} bits/char"
            g = best.get(row["corpus"])
            if g and row["test_bits_per_char"] > g["test_bits_per_char"]:
                figure += (f" -- worse than the {g['order']}-gram: {row['steps']} updates ({row.get('epochs', 0):.2f} "
                           f"passes over the text, {row['wall_s'] / 60:.0f} min) is a smoke-test budget, not a result")
                full = _full_run(row["corpus"])
                if full:
                    figure += (f"; the full recipe ({full['layers']}x{full['hidden']} {full['model']}, {full['steps']} "
                               f"updates, {full['wall_s'] / 60:.0f} min) reaches {full['test_bits_per_char']:.3f} "
                               f"(experiments/results/char_lm_{row['corpus']})")
            out.append((f"{row['corpus']} {row['model']}", figure))
        for c, g in best.items():
            out.append((f"{c} best n-gram (order {g['order']})", f"{g['test_bits_per_char']:.3f} bits/char"))
    elif name == "translate":
        out.append(("dates -> ISO, unseen dates", f"{100 * r['test_exact_match']:.1f} % exact, "
                    f"{100 * r['test_char_accuracy']:.1f} % characters"))
    elif name == "generate":
        for row in r["rows"]:
            out.append((f"class-conditional MNIST-1D, temperature {row['temperature']}",
                        f"{100 * row['class_match']:.1f} % judged as their class (judge {100 * r['judge_test_accuracy']:.1f} % on real)"))
    elif name == "exploding":
        for row in r["rows"]:
            clip = f"clip norm {row['clip_norm']}" if row["clip_norm"] else "no clipping"
            out.append((f"{row['setting']} ({row['task']} T={row['T']}), {clip}, seed {row.get('seed', 0)}",
                        f"{row['status']}; max grad norm {row['max_grad_norm']:.3g}; loss {row['loss_first10']:.3g} -> "
                        f"{row['loss_last100']:.3g}"))
        out += [(k, v) for k, v in r.get("diverged", {}).items()]
    elif name == "long_range":
        solved = {}
        for row in r["rows"]:
            solved.setdefault((row["task"], row["T"]), []).append(f"{row['model']}/{row['clip']}" if row["solved"] else None)
        for (task, T), names in solved.items():
            ok = [n for n in names if n]
            out.append((f"{task} T={T}: solved by", ", ".join(ok) if ok else "none"))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="runs")
    args = p.parse_args(argv)
    lines = ["# rnn_jax results", "", "The latest run of each experiment found under this folder.", ""]
    for name in ("bit_reverse", "classify", "char_lm", "translate", "generate", "exploding", "long_range"):
        run_dir, r = latest(args.runs, name)
        if r is None:
            continue
        lines += [f"## {name}", "", f"Run: `{run_dir}`", "", "| what | result |", "|---|---|"]
        lines += [f"| {a} | {b} |" for a, b in summarise(name, r)]
        lines.append("")
        for png in sorted(glob.glob(os.path.join(run_dir, "*.png"))):
            lines.append(f"![{os.path.basename(png)}]({os.path.relpath(png, args.runs)})")
        lines.append("")
    path = os.path.join(args.runs, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
