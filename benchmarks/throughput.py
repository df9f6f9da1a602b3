"""How fast is rnn_jax against PyTorch and Flax on this machine? Forward and forward+backward.

    python -m benchmarks.throughput               # the grid below; writes benchmarks/results/throughput.json
    python -m benchmarks.throughput --quick       # two small sizes

Every implementation runs the same computation: a batch ``(B, T, I)`` through one layer of H units
(Elman tanh, LSTM, GRU), loss = mean of squared outputs; "fwd+bwd" also computes the gradient with
respect to every weight. rnn_jax: ``jax.jit`` of ``rnn(cell).apply`` on the batch (the cell's fused
recurrence); "scan": the same with ``fused=False`` (one ``lax.scan``, the cell vmapped over the
batch); "vmap": ``jax.vmap`` of single-sequence calls (what a user who vmaps gets: the fused
recurrence's JVP rule, transposed by JAX);
PyTorch: ``nn.RNN/LSTM/GRU(batch_first=True)`` with its threads set to the core count (forward under
``no_grad``); Flax: ``nn.RNN`` of ``SimpleCell/LSTMCell/GRUCell`` under ``jax.jit``. float32. The three
are timed in the same process, interleaved round by round, after warm-up; medians are reported and
compile time (first call) apart. GFLOP/s counts the gate products only: fwd ``2 B T G H (I + H)``,
fwd+bwd three times that.
"""
from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

import rnn_jax as rj
from benchmarks import _harness

GATES = {"elman": 1, "lstm": 4, "gru": 3}
GRID = [  # (B, T, I, H)
    (1, 100, 32, 128),     # latency: one sequence
    (16, 100, 64, 256),
    (64, 50, 128, 512),    # large hidden size
    (16, 1000, 32, 128),   # long sequences
]
QUICK = [(1, 50, 16, 64), (16, 50, 32, 128)]


def jax_fns(cell_name, B, T, I, H, x, fused=None, per_sequence=False):
    cell = {"elman": lambda: rj.elman(H), "lstm": lambda: rj.lstm(H), "gru": lambda: rj.gru(H)}[cell_name]()
    layer = rj.rnn(cell, fused=fused)
    params = layer.init(jax.random.key(0), I)

    def loss(p, x):
        if per_sequence:
            return jnp.mean(jax.vmap(lambda a: layer.apply(p, a)[0])(x) ** 2)
        return jnp.mean(layer.apply(p, x)[0] ** 2)

    fwd = jax.jit(loss)
    fb = jax.jit(jax.value_and_grad(loss))
    return (lambda: fwd(params, x).block_until_ready(),
            lambda: jax.block_until_ready(fb(params, x)))


def flax_fns(cell_name, B, T, I, H, x):
    import flax.linen as nn

    cell = {"elman": nn.SimpleCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[cell_name](H)
    model = nn.RNN(cell)
    variables = model.init(jax.random.key(0), x)

    def loss(v, x):
        return jnp.mean(model.apply(v, x) ** 2)

    fwd = jax.jit(loss)
    fb = jax.jit(jax.value_and_grad(loss))
    return (lambda: fwd(variables, x).block_until_ready(),
            lambda: jax.block_until_ready(fb(variables, x)))


def torch_fns(cell_name, B, T, I, H, x, device="cpu"):
    import torch

    torch.manual_seed(0)
    module = {"elman": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell_name](I, H, batch_first=True)
    module = module.to(device)
    xt = torch.tensor(np.asarray(x)).to(device)

    def fwd():  # .item() waits for the device
        with torch.no_grad():
            return (module(xt)[0] ** 2).mean().item()

    def fb():
        module.zero_grad(set_to_none=True)
        loss = (module(xt)[0] ** 2).mean()
        loss.backward()
        if device != "cpu":
            torch.cuda.synchronize()
        return loss.item()

    return fwd, fb


def bench_size(cell_name, B, T, I, H, rounds, frameworks, device="cpu"):
    x = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float32)
    makers = {"rnn_jax": jax_fns, "scan": lambda *a: jax_fns(*a, fused=False),
              "vmap": lambda *a: jax_fns(*a, per_sequence=True), "flax": flax_fns,
              "torch": lambda *a: torch_fns(*a, device=device)}
    fns, compile_s = {}, {}
    for fw in frameworks:
        fwd, fb = makers[fw](cell_name, B, T, I, H, x)
        for mode, fn in (("fwd", fwd), ("fwd+bwd", fb)):
            t = time.perf_counter()
            fn()  # first call: compile (JAX) or first run (PyTorch)
            compile_s[(fw, mode)] = time.perf_counter() - t
            fn()
            fns[(fw, mode)] = fn
    timed = _harness.interleaved(fns, rounds, inner="auto")
    flops_fwd = 2 * B * T * GATES[cell_name] * H * (I + H)
    rows = []
    for mode in ("fwd", "fwd+bwd"):
        flops = flops_fwd * (1 if mode == "fwd" else 3)
        row = {"cell": cell_name, "B": B, "T": T, "I": I, "H": H, "mode": mode}
        for fw in frameworks:
            m = timed[(fw, mode)]["median_s"]
            row[f"{fw}_ms"] = 1e3 * m
            row[f"{fw}_first_call_s"] = compile_s[(fw, mode)]
            row[f"{fw}_gflops"] = flops / m / 1e9
        for fw in frameworks:
            if fw not in ("rnn_jax", "scan", "vmap"):
                row[f"ratio_vs_{fw}"] = row["rnn_jax_ms"] / row[f"{fw}_ms"]
        if "vmap" in frameworks and "flax" in frameworks:
            row["vmap_vs_flax"] = row["vmap_ms"] / row["flax_ms"]
        rows.append(row)
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and few rounds: a smoke run")
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per case, interleaved; the median is reported")
    p.add_argument("--cells", default="elman,lstm,gru", help="comma-separated, among elman, lstm, gru")
    p.add_argument("--sizes", default=None, help="B,T,I,H;B,T,I,H;... instead of the grid")
    _harness.add_host_memory_flag(p)
    args = p.parse_args(argv)
    _harness.apply_host_memory(args)
    frameworks = ["rnn_jax", "scan", "vmap", "flax"]
    try:
        import torch

        torch.set_num_threads(os.cpu_count())
        frameworks.append("torch")
    except ImportError:
        print("torch not installed: comparing with Flax only (pip install -e '.[torch]')")
    grid = QUICK if args.quick else GRID
    if args.sizes:
        grid = [tuple(int(v) for v in size.split(",")) for size in args.sizes.split(";")]
    ceiling = _harness.matmul_ceiling()  # measured before and after the grid; the higher one is kept
    rows = []
    for cell in args.cells.split(","):
        for B, T, I, H in grid:
            rows += bench_size(cell, B, T, I, H, args.rounds, frameworks)
            r = rows[-1]
            print(f"{cell:<6} B={B:<3} T={T:<5} I={I:<4} H={H:<4} " +
                  "  ".join(f"{m['mode']}: " + " ".join(f"{fw} {m[f'{fw}_ms']:.2f}ms" for fw in frameworks)
                            for m in rows[-2:]), flush=True)
    ceiling = max(ceiling, _harness.matmul_ceiling())
    for r in rows:
        r["rnn_jax_pct_ceiling"] = 100 * r["rnn_jax_gflops"] / ceiling
    out = {"benchmark": "throughput", "machine": _harness.machine(), "dtype": "float32",
           "matmul_ceiling_gflops": ceiling, "rounds": args.rounds, "grid": grid, "rows": rows}
    name = "throughput_quick" if args.quick else ("throughput_sizes" if args.sizes else "throughput")
    path = _harness.write_json(_harness.result_name(name, args), out)
    print_table(out)
    print(f"\nwrote {path}")
    return out


def print_table(out):
    rows = out["rows"]
    fws = [k[:-3] for k in rows[0] if k.endswith("_ms")]
    print(f"\nmatmul ceiling: {out['matmul_ceiling_gflops']:.1f} GFLOP/s (float32 1024^3, jitted JAX)")
    head = f"{'cell':<6}{'B':>4}{'T':>6}{'I':>5}{'H':>5} {'mode':<8}" + "".join(f"{fw + ' ms':>12}" for fw in fws)
    head += "".join(f"{'/' + fw:>10}" for fw in fws if fw not in ("rnn_jax", "scan", "vmap")) + f"{'GFLOP/s':>9}"
    print(head)
    for r in rows:
        line = f"{r['cell']:<6}{r['B']:>4}{r['T']:>6}{r['I']:>5}{r['H']:>5} {r['mode']:<8}"
        line += "".join(f"{r[fw + '_ms']:>12.2f}" for fw in fws)
        line += "".join(f"{r['ratio_vs_' + fw]:>10.2f}" for fw in fws if fw not in ("rnn_jax", "scan", "vmap"))
        line += f"{r['rnn_jax_gflops']:>9.1f}"
        print(line)
    if "vmap_vs_flax" in rows[0]:
        for cell in dict.fromkeys(r["cell"] for r in rows):
            for mode in ("fwd", "fwd+bwd"):
                ratios = [r["vmap_vs_flax"] for r in rows if r["cell"] == cell and r["mode"] == mode]
                print(f"geometric mean vmap(single-sequence apply)/flax {cell} {mode}: "
                      f"{float(np.exp(np.mean(np.log(ratios)))):.2f} (worst {max(ratios):.2f})")
    for fw in fws:
        if fw in ("rnn_jax", "scan", "vmap"):
            continue
        for cell in dict.fromkeys(r["cell"] for r in rows):
            for mode in ("fwd", "fwd+bwd"):
                ratios = [r[f"ratio_vs_{fw}"] for r in rows if r["cell"] == cell and r["mode"] == mode]
                print(f"geometric mean rnn_jax/{fw} {cell} {mode}: {float(np.exp(np.mean(np.log(ratios)))):.2f} "
                      f"(worst {max(ratios):.2f})")


if __name__ == "__main__":
    main()
