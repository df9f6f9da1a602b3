"""Markdown tables from the JSON results (what benchmarks/README.md shows).

    python -m benchmarks.tables throughput scaling deer choices
"""
from __future__ import annotations

import json
import math
import os
import sys

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def load(name):
    with open(os.path.join(RESULTS, f"{name}.json")) as f:
        return json.load(f)


def gmean(xs):
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def throughput(d):
    fws = [fw for fw in ("rnn_jax", "scan", "vmap", "flax", "torch") if f"{fw}_ms" in d["rows"][0]]
    lines = [f"matmul ceiling (float32 1024^3, jitted JAX, same run): {d['matmul_ceiling_gflops']:.1f} GFLOP/s; "
             f"medians of {d['rounds']} interleaved rounds\n",
             "| cell | B | T | I | H | mode | " + " | ".join(f"{fw} ms" for fw in fws)
             + " | rnn_jax/flax | rnn_jax/torch | rnn_jax GFLOP/s (% ceiling) |",
             "|" + "---|" * (6 + len(fws) + 3)]
    for r in d["rows"]:
        ratios = [f"{r[f'ratio_vs_{fw}']:.2f}" if f"ratio_vs_{fw}" in r else "-" for fw in ("flax", "torch")]
        ratios = [f"**{x}**" if x != "-" and float(x) > 1 else x for x in ratios]
        lines.append(f"| {r['cell']} | {r['B']} | {r['T']} | {r['I']} | {r['H']} | {r['mode']} | "
                     + " | ".join(f"{r[f'{fw}_ms']:.2f}" for fw in fws) + " | " + " | ".join(ratios)
                     + f" | {r['rnn_jax_gflops']:.1f} ({100 * r['rnn_jax_gflops'] / d['matmul_ceiling_gflops']:.0f} %) |")
    lines += ["", "| cell | mode | geo. mean rnn_jax/flax (worst) | geo. mean rnn_jax/torch (worst) | rnn_jax vs its generic scan "
                  "| vmap of single-sequence calls / flax (worst) |",
              "|---|---|---|---|---|---|"]
    for cell in dict.fromkeys(r["cell"] for r in d["rows"]):
        for mode in ("fwd", "fwd+bwd"):
            rs = [r for r in d["rows"] if r["cell"] == cell and r["mode"] == mode]
            cols = []
            for fw in ("flax", "torch"):
                if f"ratio_vs_{fw}" in rs[0]:
                    v = [r[f"ratio_vs_{fw}"] for r in rs]
                    cols.append(f"{gmean(v):.2f} ({max(v):.2f})")
                else:
                    cols.append("-")
            scan = gmean([r["rnn_jax_ms"] / r["scan_ms"] for r in rs]) if "scan_ms" in rs[0] else float("nan")
            vm = [r["vmap_vs_flax"] for r in rs if "vmap_vs_flax" in r]
            vm = f"{gmean(vm):.2f} ({max(vm):.2f})" if vm else "-"
            lines.append(f"| {cell} | {mode} | " + " | ".join(cols) + f" | {scan:.2f} | {vm} |")
    return "\n".join(lines)


def scaling(d):
    lines = ["| T | H | remat (chunk) | compile s | run s | us / step | RSS before compile (MiB) | peak RSS (MiB) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        if "error" in r:
            lines.append(f"| {r['T']} | {r['H']} | {r['remat']} | failed: {r['error']} |||||")
            continue
        lines.append(f"| {r['T']:,} | {r['H']} | {r['remat'] or 'off'} | {r['compile_s']:.2f} | {r['seconds']:.2f} | "
                     f"{r['us_per_step']:.1f} | {r['rss_before_mib']:.0f} | {r['peak_rss_mib']:.0f} |")
    return "\n".join(lines)


def deer(d):
    lines = ["| B | T | H | mode | scan ms | newton ms | diagonal ms | newton/scan | diagonal/scan | iterations newton, diagonal |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in d["rows"]:
        it = r["iterations"]
        lines.append(f"| {r['B']} | {r['T']} | {r['H']} | {r['mode']} | {r['scan_ms']:.2f} | {r['newton_ms']:.2f} | "
                     f"{r['diagonal_ms']:.2f} | {r['newton_over_scan']:.1f} | {r['diagonal_over_scan']:.1f} | "
                     f"{it['newton']['max']}, {it['diagonal']['max']} |")
    return "\n".join(lines)


def choices(d):
    keys = list(d["rows"][0]["ms"])
    lines = ["| cell | B | T | I | H | mode | " + " | ".join(keys) + " |", "|" + "---|" * (6 + len(keys))]
    for r in d["rows"]:
        best = r["best"]
        lines.append(f"| {r['cell']} | {r['B']} | {r['T']} | {r['I']} | {r['H']} | {r.get('mode', 'fwd+bwd')} | "
                     + " | ".join(f"**{r['ms'][k]:.2f}**" if k == best else f"{r['ms'][k]:.2f}" for k in keys) + " |")
    return "\n".join(lines)


def _step_head(d, columns):
    """The caption and header lines of a table of training-step medians."""
    return [f"medians of {d['rounds']} interleaved rounds, float32, one Adam step\n",
            "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def train_step(d):
    libs = [lib for lib in ("rnn_jax", "flax", "torch") if lib in d["rows"][0]["ms"]]
    floor = "floor" in d["rows"][0]["ms"]  # the step's matrix products alone (results from before it lack it)
    extra = ["floor ms"] if floor else []
    ratios = ["rnn_jax/flax", "rnn_jax/torch"] + (["floor/flax", "floor/rnn_jax"] if floor else [])
    n = d.get("processes", 1)
    caption = (f"medians of {d['rounds']} interleaved rounds, float32, one Adam step"
               + (f"; each figure the median over {n} fresh processes, ratios with their range" if n > 1 else "") + "\n")
    lines = [caption, "| model | cell | " + " | ".join([f"{lib} ms" for lib in libs] + extra + ratios) + " |",
             "|" + "---|" * (2 + len(libs) + len(extra) + len(ratios))]

    def ratio(r, k):
        if r.get(k) is None:
            return "-"
        lo_hi = r.get(f"{k}_range")
        return f"{r[k]:.2f}" + (f" ({lo_hi[0]:.2f}-{lo_hi[1]:.2f})" if lo_hi else "")

    for r in d["rows"]:
        cells = [f"{r['ms'][lib]:.2f}" for lib in libs] + ([f"{r['ms']['floor']:.2f}"] if floor else [])
        cells += [ratio(r, "vs_flax"), ratio(r, "vs_torch")]
        if floor:
            cells += [f"{r['floor_vs_flax']:.2f}", f"{r['floor_vs_rnn_jax']:.2f}"]
        lines.append(f"| {r['model']} | {r['cell']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def host(d):
    """``host_memory.json``: each step under both host-memory policies (fresh processes per round)."""
    lines = [f"medians over {d['rounds']} rounds of one process per policy (each the median of "
             f"{d['inner_rounds']} interleaved rounds), float32, one Adam step\n",
             "| model | cell | lib | default ms | reuse ms | reuse/default | page faults per step, default | reuse "
             "| rnn_jax/flax, default | reuse |",
             "|" + "---|" * 10]
    for r in d["rows"]:
        model, cell = r["case"].split("@")[0].split(":")
        size = r["case"].partition("@")[2]
        lines.append(f"| {model}{' (' + size + ')' if size else ''} | {cell} | {r['lib']} | {r['default_ms']:.2f} | {r['reuse_ms']:.2f} | "
                     f"{r['reuse_over_default']:.2f} | {r['default_faults_per_step']:.0f} | {r['reuse_faults_per_step']:.0f} | "
                     + (f"{r['rnn_jax_over_flax']['default']:.2f} | {r['rnn_jax_over_flax']['reuse']:.2f} |"
                        if r["lib"] == "rnn_jax" else "| |"))
    return "\n".join(lines)


def step_product(d):
    lines = ["| B | H | G | T | fwd rows ms | fwd transposed ms | transposed/rows | bwd rows ms | bwd transposed ms "
             "| transposed/rows | YNNPACK (rows / transposed) |", "|" + "---|" * 11]
    for r in d["rows"]:
        ms, y = r["ms"], r["ynnpack"]
        lines.append(f"| {r['B']} | {r['H']} | {r['G']} | {r['T']} | {ms['fwd_rows']:.2f} | {ms['fwd_transposed']:.2f} | "
                     f"{r['fwd_transposed_vs_rows']:.2f} | {ms['bwd_rows']:.2f} | {ms['bwd_transposed']:.2f} | "
                     f"{r['bwd_transposed_vs_rows']:.2f} | {'yes' if y['fwd_rows'] else 'no'} / "
                     f"{'yes' if y['fwd_transposed'] else 'no'} |")
    return "\n".join(lines)


def data_parallel(d):
    """``data_parallel.json``: each step with the batch on one device (x1) and split over two (x2)."""
    lines = _step_head(d, ["model", "cell", "rnn_jax x1 ms", "rnn_jax x2 ms", "flax x1 ms", "flax x2 ms",
                           "flax shard_map x2 ms", "rnn_jax x2/x1", "flax x2/x1", "flax shard_map x2/x1",
                           "rnn_jax/flax x1", "rnn_jax/flax x2", "rnn_jax x2/flax shard_map x2"])
    for r in d["rows"]:
        ms = r["ms"]
        lines.append(f"| {r['model']} | {r['cell']} | {ms['rnn_jax x1']:.2f} | {ms['rnn_jax x2']:.2f} | "
                     f"{ms['flax x1']:.2f} | {ms['flax x2']:.2f} | {ms['flax shard_map x2']:.2f} | "
                     f"{r['rnn_jax_x2_vs_x1']:.2f} | {r['flax_x2_vs_x1']:.2f} | {r['flax_shard_map_x2_vs_x1']:.2f} | "
                     f"{r['rnn_jax_vs_flax_x1']:.2f} | {r['rnn_jax_vs_flax_x2']:.2f} | "
                     f"{r['rnn_jax_vs_flax_shard_map_x2']:.2f} |")
    return "\n".join(lines)


def packing(d):
    """``packing.json``: the classifier's step packed, unpacked and in Flax at three length spreads."""
    lines = _step_head(d, ["cell", "lengths", "valid steps", "packed ms", "unpacked ms", "flax ms", "packed/unpacked",
                           "packed/flax", "unpacked/flax"])
    for r in d["rows"]:
        ms = r["ms"]
        lines.append(f"| {r['cell']} | {r['spread']} | {r['valid']:.2f} | {ms['packed']:.2f} | {ms['unpacked']:.2f} | "
                     f"{ms['flax']:.2f} | {r['packed_vs_unpacked']:.2f} | {r['packed_vs_flax']:.2f} | "
                     f"{r['unpacked_vs_flax']:.2f} |")
    return "\n".join(lines)


def grid(d):
    """Per cell and peer: sizes, geometric-mean and worst ratio, and every size where rnn_jax is slower."""
    lines = [f"host memory: {d['host_memory']}; medians of {d['rounds']} interleaved rounds per size\n",
             "| cell | sizes | rnn_jax/flax: geo. mean (worst) | slower than flax at | rnn_jax/torch: geo. mean (worst) "
             "| slower than torch at |", "|---|---|---|---|---|---|"]
    for cell in dict.fromkeys(r["cell"] for r in d["rows"]):
        rows = [r for r in d["rows"] if r["cell"] == cell]
        cols = []
        for peer in ("flax", "torch"):
            key = f"rnn_jax_vs_{peer}"
            have = [r for r in rows if key in r]
            if not have:
                cols += ["-", "-"]
                continue
            cols.append(f"{gmean([r[key] for r in have]):.2f} ({max(r[key] for r in have):.2f})")
            slow = [f"B={r['B']} T={r['T']} H={r['H']}: {r[key]:.2f}" for r in have if r[key] > 1]
            cols.append("; ".join(slow) or "none")
        lines.append(f"| {cell} | {len(rows)} | " + " | ".join(cols) + " |")
    return "\n".join(lines)


def main(argv=None):
    names = (argv if argv is not None else sys.argv[1:]) or ["throughput", "scaling", "deer", "choices"]
    for name in names:
        base = next((b for b in ("train_step", "step_product", "data_parallel") if name.startswith(b)),
                    name.split("_")[0])
        print(f"### {name}\n")
        print(globals()[base](load(name)))
        print()


if __name__ == "__main__":
    main()
