"""How long is one full training step of the models users build first, against Flax and PyTorch?

    python -m benchmarks.train_step            # writes benchmarks/results/train_step.json
    python -m benchmarks.train_step --quick    # small sizes, two rounds (smoke test)
    python -m benchmarks.train_step --processes 5   # five fresh processes, per-row medians and ranges

One Adam step (loss, gradient of every weight, update) of the same model in three libraries, float32:

* ``classifier``: many-to-one with lengths: ``(B, T, I)`` features and per-sequence lengths, one
  recurrent layer, the state after the last valid step read by a linear head, cross-entropy.
  rnn_jax: ``many_to_one(rnn(cell), C)`` called on the batch; Flax: ``nn.RNN(cell, return_carry=True)``
  with ``seq_lengths`` and ``nn.Dense``; PyTorch: ``pack_padded_sequence`` into ``nn.RNN/LSTM/GRU``
  and ``nn.Linear``.
* ``char_lm``: a character language model: embedding, one layer, a linear head on every step,
  cross-entropy over all ``B*T`` steps.
* ``seq2seq``: an encoder-decoder with teacher forcing: embedded source with lengths -> encoder
  final state -> context; the decoder's initial state is ``tanh(Dense(context))`` and it reads
  ``[embed(y_{t-1}), context]``; cross-entropy over the target steps.

Elman (tanh), LSTM and GRU cells. All steps of one size are timed in one process, interleaved round by
round with rotating order, an untimed call before each sample, samples of >= 20 ms; medians.

A ratio measured in one process moves between processes by more than within one (the GRU classifier's
rnn_jax/flax gave 0.70-0.85 in runs a few minutes apart on this 2-core machine), so ``--processes N``
runs the whole benchmark in N fresh processes one after the other and reports, per row, the median over
them of each time and of each ratio, with the ratios' range (``combine``).

``floor``: the matrix products that any exact implementation of the step's recurrences must run, and
nothing else: per recurrence, the T sequential ``(B, H) @ (H, G*H)`` products of the forward loop, the T
sequential ``(B, G*H) @ (G*H, H)`` products of the backward loop, and the input and weight-gradient
products taken once over all ``T*B`` rows. ``floor/flax`` is the ratio to Flax's step that an
implementation would reach if the gate arithmetic, the head, the loss and the optimiser cost nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnn_jax as rj
from benchmarks import _harness
from rnn_jax.fused import Products, platform  # the kernels' form of the weight-gradient product

CELLS = ("elman", "lstm", "gru")
SIZES = {  # model: dict of sizes
    "classifier": dict(B=64, T=100, I=16, H=128, C=10),
    "char_lm": dict(B=32, T=100, V=64, E=32, H=256),
    "seq2seq": dict(B=64, S=30, T=12, Vs=40, Vt=20, E=32, H=128),
}
QUICK = {
    "classifier": dict(B=8, T=20, I=4, H=16, C=3),
    "char_lm": dict(B=4, T=20, V=10, E=8, H=16),
    "seq2seq": dict(B=8, S=10, T=5, Vs=12, Vt=7, E=8, H=16),
}


def data(model, s, seed=0):
    rng = np.random.default_rng(seed)
    if model == "classifier":
        x = rng.standard_normal((s["B"], s["T"], s["I"])).astype(np.float32)
        lengths = rng.integers(s["T"] // 2, s["T"] + 1, s["B"]).astype(np.int32)
        lengths[0] = s["T"]
        return x, lengths, rng.integers(0, s["C"], s["B"]).astype(np.int32)
    if model == "char_lm":
        ids = rng.integers(0, s["V"], (s["B"], s["T"] + 1)).astype(np.int32)
        return ids[:, :-1], ids[:, 1:]
    src = rng.integers(0, s["Vs"], (s["B"], s["S"])).astype(np.int32)
    src_len = rng.integers(s["S"] // 2, s["S"] + 1, s["B"]).astype(np.int32)
    src_len[0] = s["S"]
    tgt = rng.integers(2, s["Vt"], (s["B"], s["T"] + 1)).astype(np.int32)
    return src, src_len, tgt[:, :-1], tgt[:, 1:]


def _jax_step(loss, params):
    tx = optax.adam(1e-3)
    opt = tx.init(params)

    @jax.jit
    def step(p, o, *batch):
        v, g = jax.value_and_grad(loss)(p, *batch)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, v

    state = [params, opt]

    def run(*batch):
        state[0], state[1], v = step(state[0], state[1], *batch)
        return v.block_until_ready()

    return run


def rnn_jax_step(model, cell_name, s, batch, pack=True, fused=None):
    cell = {"elman": rj.elman, "lstm": rj.lstm, "gru": rj.gru}[cell_name]
    batch = tuple(jnp.asarray(a) for a in batch)
    ce = rj.losses.softmax_cross_entropy
    if model == "classifier":
        m = rj.many_to_one(rj.rnn(cell(s["H"]), pack=pack, fused=fused), s["C"], input_size=s["I"])
        loss = lambda p, x, L, y: ce(m.apply(p, x, L), y, reduction="mean")  # noqa: E731
    elif model == "char_lm":
        m = rj.many_to_many(rj.rnn(cell(s["H"])), s["V"], vocab_size=s["V"], embed_size=s["E"])
        loss = lambda p, x, y: ce(m.apply(p, x)[0], y, reduction="mean")  # noqa: E731
    else:
        m = rj.encoder_decoder(rj.rnn(cell(s["H"])), cell(s["H"]), tgt_vocab=s["Vt"], bos=0, eos=1,
                               src_vocab=s["Vs"], src_embed_size=s["E"], embed_size=s["E"])
        loss = lambda p, src, sl, ti, to: ce(m.apply(p, src, sl, ti), to, reduction="mean")  # noqa: E731
    run = _jax_step(loss, m.init(jax.random.key(0)))
    return lambda: run(*batch)


GATES = {"elman": 1, "lstm": 4, "gru": 3}


def recurrences(model, s) -> list[tuple[int, int, int, int]]:
    """``(T, B, I, H)`` of each recurrent layer of a model."""
    if model == "classifier":
        return [(s["T"], s["B"], s["I"], s["H"])]
    if model == "char_lm":
        return [(s["T"], s["B"], s["E"], s["H"])]
    return [(s["S"], s["B"], s["E"], s["H"]), (s["T"], s["B"], s["E"] + s["H"], s["H"])]


def floor_step(model, cell_name, s, batch):
    """The step's unavoidable products alone (see the module docstring), jitted as one program."""
    G = GATES[cell_name]
    rng = np.random.default_rng(1)
    args = []
    for T, B, I, H in recurrences(model, s):
        args.append(tuple(jnp.asarray(rng.standard_normal(shape).astype(np.float32) / np.sqrt(shape[-2]))
                          for shape in ((T, B, I), (I, G * H), (H, G * H), (B, H))))

    def one(xs, W_i, W_h, h0):
        H = W_h.shape[0]
        GX = xs @ W_i  # (T, B, G*H): the input product, once

        def fwd(h, gx):
            z = h @ W_h + gx
            return z[:, :H], z

        _, Z = jax.lax.scan(fwd, h0, GX)

        def bwd(d, z):
            dz = jnp.tile(d, (1, G)) * z
            return dz @ W_h.T, dz

        _, dZ = jax.lax.scan(bwd, h0, Z, reverse=True)
        # the weight gradients: one product each, in the form rnn_jax's kernels use
        products = Products(platform().devices > 1)
        return products.weight(Z[..., :H], dZ), products.weight(xs, dZ), dZ @ W_i.T

    f = jax.jit(lambda args: [one(*a) for a in args])
    return lambda: jax.block_until_ready(f(args))


def flax_step(model, cell_name, s, batch):
    batch = tuple(jnp.asarray(a) for a in batch)
    run = _jax_step(*flax_loss(model, cell_name, s, batch))
    return lambda: run(*batch)


def flax_loss(model, cell_name, s, batch):
    """``(loss(params, *batch), params)`` of the model in Flax linen (the loss a mean per example or
    per token)."""
    import flax.linen as nn

    Cell = {"elman": nn.SimpleCell, "lstm": nn.LSTMCell, "gru": nn.GRUCell}[cell_name]
    h_of = (lambda c: c[1]) if cell_name == "lstm" else (lambda c: c)  # Flax's LSTM carry is (c, h)
    H = s["H"]

    class Classifier(nn.Module):
        @nn.compact
        def __call__(self, x, L):
            carry, _ = nn.RNN(Cell(H), return_carry=True)(x, seq_lengths=L)
            return nn.Dense(s["C"])(h_of(carry))

    class CharLM(nn.Module):
        @nn.compact
        def __call__(self, ids):
            return nn.Dense(s["V"])(nn.RNN(Cell(H))(nn.Embed(s["V"], s["E"])(ids)))

    class Seq2Seq(nn.Module):
        @nn.compact
        def __call__(self, src, sl, ti):
            carry, _ = nn.RNN(Cell(H), return_carry=True)(nn.Embed(s["Vs"], s["E"])(src), seq_lengths=sl)
            ctx = h_of(carry)
            leaves = [jnp.tanh(nn.Dense(H)(ctx)) for _ in range(2 if cell_name == "lstm" else 1)]
            init = tuple(leaves) if cell_name == "lstm" else leaves[0]
            xs = jnp.concatenate([nn.Embed(s["Vt"], s["E"])(ti),
                                  jnp.broadcast_to(ctx[:, None], ti.shape + (H,))], -1)
            return nn.Dense(s["Vt"])(nn.RNN(Cell(H))(xs, initial_carry=init))

    batch = tuple(jnp.asarray(a) for a in batch)
    ce = optax.softmax_cross_entropy_with_integer_labels
    if model == "classifier":
        net = Classifier()
        params = net.init(jax.random.key(0), *batch[:2])
        loss = lambda p, x, L, y: ce(net.apply(p, x, L), y).mean()  # noqa: E731
    elif model == "char_lm":
        net = CharLM()
        params = net.init(jax.random.key(0), batch[0])
        loss = lambda p, x, y: ce(net.apply(p, x), y).mean()  # noqa: E731
    else:
        net = Seq2Seq()
        params = net.init(jax.random.key(0), *batch[:3])
        loss = lambda p, src, sl, ti, to: ce(net.apply(p, src, sl, ti), to).mean()  # noqa: E731
    return loss, params


def torch_step(model, cell_name, s, batch):
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(0)
    RNN = {"elman": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}[cell_name]
    H = s["H"]
    h_of = (lambda st: st[0]) if cell_name == "lstm" else (lambda st: st)

    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn, self.head = RNN(s["I"], H, batch_first=True), nn.Linear(H, s["C"])

        def forward(self, x, L):
            _, st = self.rnn(pack_padded_sequence(x, L, batch_first=True, enforce_sorted=False))
            return self.head(h_of(st)[0])

    class CharLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.rnn, self.head = nn.Embedding(s["V"], s["E"]), RNN(s["E"], H, batch_first=True), \
                nn.Linear(H, s["V"])

        def forward(self, ids):
            return self.head(self.rnn(self.emb(ids))[0])

    class Seq2Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.se, self.te = nn.Embedding(s["Vs"], s["E"]), nn.Embedding(s["Vt"], s["E"])
            self.enc, self.dec = RNN(s["E"], H, batch_first=True), RNN(s["E"] + H, H, batch_first=True)
            self.bridge = nn.ModuleList([nn.Linear(H, H) for _ in range(2 if cell_name == "lstm" else 1)])
            self.head = nn.Linear(H, s["Vt"])

        def forward(self, src, sl, ti):
            _, st = self.enc(pack_padded_sequence(self.se(src), sl, batch_first=True, enforce_sorted=False))
            ctx = h_of(st)[0]
            init = [torch.tanh(b(ctx))[None] for b in self.bridge]
            init = tuple(init) if cell_name == "lstm" else init[0]
            xs = torch.cat([self.te(ti), ctx[:, None].expand(-1, ti.shape[1], -1)], -1)
            return self.head(self.dec(xs, init)[0])

    net = {"classifier": Classifier, "char_lm": CharLM, "seq2seq": Seq2Seq}[model]()
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    tb = [torch.tensor(np.asarray(a)) for a in batch]
    if model in ("classifier", "seq2seq"):  # lengths stay on the CPU as int64, as pack_padded_sequence wants
        tb[1] = tb[1].long()
    tb = [t.long() if t.dtype == torch.int32 else t for t in tb]
    ce = nn.functional.cross_entropy

    def run():
        opt.zero_grad(set_to_none=True)
        out = net(*tb[:-1])
        loss = ce(out.reshape(-1, out.shape[-1]), tb[-1].reshape(-1))
        loss.backward()
        opt.step()
        return loss.item()

    return run


RATIOS = ("vs_flax", "vs_torch", "floor_vs_flax", "floor_vs_rnn_jax")


def combine(payloads: list[dict]) -> dict:
    """One payload from several processes' (same models, cells and sizes): per row, the median over
    processes of each library's time and of each ratio, each ratio's ``[min, max]`` (``vs_flax_range``
    and so on), and every process's ``vs_flax`` in ``vs_flax_each``."""
    first = payloads[0]
    keys = [(r["model"], r["cell"]) for r in first["rows"]]
    for p in payloads[1:]:
        if [(r["model"], r["cell"]) for r in p["rows"]] != keys:
            raise ValueError("combine: the processes measured different rows")
    rows = []
    for i, row in enumerate(first["rows"]):
        each = [p["rows"][i] for p in payloads]
        out = dict(row, ms={lib: statistics.median(r["ms"][lib] for r in each) for lib in row["ms"]})
        for k in RATIOS:
            if row.get(k) is not None:
                vals = [r[k] for r in each]
                out[k], out[f"{k}_range"] = statistics.median(vals), [min(vals), max(vals)]
        out["vs_flax_each"] = [r["vs_flax"] for r in each]
        rows.append(out)
    return dict(first, rows=rows, processes=len(payloads))


def _in_processes(argv, n: int) -> dict:
    """``main(argv)`` in ``n`` fresh processes, one after the other; their payloads combined."""
    payloads = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            path = os.path.join(tmp, f"{i}.json")
            subprocess.run([sys.executable, "-m", "benchmarks.train_step", *argv, "--processes", "1",
                            "--payload", path], check=True)
            with open(path) as f:
                payloads.append(json.load(f))
    return combine(payloads)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and few rounds: a smoke run")
    p.add_argument("--rounds", type=int, default=None,
                   help="timed rounds per case, interleaved; the median is reported (None: the benchmark's own)")
    p.add_argument("--models", default=",".join(SIZES), help=f"comma-separated, among {', '.join(SIZES)}")
    p.add_argument("--cells", default=",".join(CELLS), help=f"comma-separated, among {', '.join(CELLS)}")
    p.add_argument("--processes", type=int, default=1, help="fresh processes to run it in (combine)")
    p.add_argument("--payload", default=None, help=argparse.SUPPRESS)  # a child's results, for its parent
    _harness.add_host_memory_flag(p)
    args = p.parse_args(argv)
    if args.processes < 1:
        p.error(f"--processes: expected an int >= 1, got {args.processes}")
    if args.processes > 1:
        child = ["--models", args.models, "--cells", args.cells, "--host_memory", args.host_memory]
        child += (["--quick"] if args.quick else []) + (["--rounds", str(args.rounds)] if args.rounds else [])
        payload = _in_processes(child, args.processes)
        for r in payload["rows"]:
            lo, hi = r["vs_flax_range"]
            print(f"{r['model']:<11}{r['cell']:<6}rnn_jax/flax median {r['vs_flax']:.2f} over {args.processes} "
                  f"processes ({lo:.2f}-{hi:.2f})" + (f"  rnn_jax/torch {r['vs_torch']:.2f}" if r.get("vs_torch") else ""))
        if not args.quick:
            print(f"wrote {_harness.write_json(_harness.result_name('train_step', args), payload)}")
        return payload
    _harness.apply_host_memory(args)
    sizes = QUICK if args.quick else SIZES
    rounds = args.rounds or (2 if args.quick else 15)
    try:
        import torch

        torch.set_num_threads(os.cpu_count() or 1)
        libs = ("rnn_jax", "flax", "torch")
    except ImportError:
        libs = ("rnn_jax", "flax")
    rows = []
    for model in args.models.split(","):
        s = sizes[model]
        for cell in args.cells.split(","):
            batch = data(model, s)
            makers = {"rnn_jax": rnn_jax_step, "flax": flax_step, "torch": torch_step, "floor": floor_step}
            fns, compile_s = {}, {}
            for lib in libs + ("floor",):
                fns[lib] = makers[lib](model, cell, s, batch)
                t = time.perf_counter()
                fns[lib]()
                compile_s[lib] = time.perf_counter() - t
            timing = _harness.interleaved(fns, rounds, inner="auto")
            ms = {lib: 1e3 * timing[lib]["median_s"] for lib in libs + ("floor",)}
            row = {"model": model, "cell": cell, "sizes": s, "ms": ms, "first_call_s": compile_s,
                   "vs_flax": ms["rnn_jax"] / ms["flax"],
                   "vs_torch": ms["rnn_jax"] / ms["torch"] if "torch" in ms else None,
                   "floor_vs_flax": ms["floor"] / ms["flax"], "floor_vs_rnn_jax": ms["floor"] / ms["rnn_jax"]}
            rows.append(row)
            print(f"{model:<11}{cell:<6}" + "".join(f"{lib} {ms[lib]:8.2f} ms  " for lib in libs + ("floor",))
                  + f"rnn_jax/flax {row['vs_flax']:.2f}  floor/flax {row['floor_vs_flax']:.2f}"
                  + (f"  rnn_jax/torch {row['vs_torch']:.2f}" if row["vs_torch"] else ""), flush=True)
    payload = {"benchmark": "train_step", "machine": _harness.machine(), "dtype": "float32", "rounds": rounds,
               "quick": args.quick, "rows": rows}
    if args.payload:
        with open(args.payload, "w") as f:
            json.dump(payload, f)
    elif not args.quick:
        path = _harness.write_json(_harness.result_name("train_step", args), payload)
        print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
