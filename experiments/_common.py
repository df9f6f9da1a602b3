"""Shared plumbing for experiment scripts: Config -> flags, run folders, results, plots."""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import sys
import time
import typing

import jax

from rnn_jax.host_memory import POLICIES, host_memory_state, use_policy


def parse_config(cls, argv=None, description: str = ""):
    """``--field=value`` flags from a frozen dataclass ``cls`` (help text from each field's
    ``metadata["help"]``), plus ``--quick`` (the class's ``quick()`` overrides) and ``--resume=DIR``.
    Unknown flags and bad values exit with argparse's message naming the flag."""
    p = argparse.ArgumentParser(description=description, allow_abbrev=False)
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        kw = {"default": None, "help": f"{f.metadata.get('help', '')} (default: {f.default!r})"}
        if typ is bool:
            kw["type"] = lambda s: {"true": True, "1": True, "false": False, "0": False}[s.lower()]
            kw["metavar"] = "{true,false}"
        elif typing.get_origin(typ) in (tuple,):
            elem = typing.get_args(typ)[0]
            kw["type"] = lambda s, elem=elem: tuple(elem(v) for v in s.split(",") if v)
            kw["metavar"] = "A,B,..."
        else:
            kw["type"] = typ
        p.add_argument(f"--{f.name}", **kw)
    p.add_argument("--quick", action="store_true", help="a run of about a minute, for smoke tests")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    p.add_argument("--out", default="runs", help="parent folder of run folders (default: runs)")
    p.add_argument("--mesh", default=None, metavar="data=N[,model=M]",
                   help="train data-parallel over a device mesh (see rnn_jax.distributed)")
    p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                   help="multi-process run: the coordinator (or RNN_JAX_COORDINATOR)")
    p.add_argument("--num_processes", type=int, default=None, help="multi-process run: number of processes")
    p.add_argument("--host_memory", choices=POLICIES, default="reuse",
                   help="reuse: keep freed host memory for the next step (rnn_jax.reuse_host_memory: up to 28 %% "
                        "shorter steps on Linux CPUs); default: the C library's own policy")
    p.add_argument("--process_id", type=int, default=None, help="multi-process run: this process's index")
    args = p.parse_args(argv)
    from rnn_jax import distributed

    use_policy(args.host_memory)

    try:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id)
        args.mesh = distributed.make_mesh(args.mesh) if args.mesh else None
    except ValueError as e:
        p.error(str(e))
    if args.resume:
        path = os.path.join(args.resume, "config.json")
        try:
            with open(path) as f:
                saved = json.load(f)["config"]
            cfg = cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items()})
        except (OSError, ValueError, KeyError, TypeError) as e:
            p.error(f"--resume: {args.resume} is not a run folder of this experiment ({type(e).__name__}: {e})")
    else:
        cfg = cls.quick() if args.quick else cls()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    problem = check_values(cfg)
    if problem:
        p.error(problem)
    return cfg, args


def check_values(cfg) -> str | None:
    """Every count whose default is positive (steps, batch size, hidden size, seeds...) must be a
    positive int; every float must be finite, and positive when its default is (learning rates).
    Returns the first problem as a message naming the flag, or None."""
    for f in dataclasses.fields(cfg):
        v, d = getattr(cfg, f.name), f.default
        if isinstance(v, bool) or isinstance(d, bool):
            continue
        if isinstance(d, int) and d > 0 and not (isinstance(v, int) and v >= 1):
            return f"--{f.name}: expected a positive int, got {v!r}"
        if isinstance(d, float) and not math.isfinite(v):
            return f"--{f.name}: expected a finite number, got {v!r}"
        if isinstance(d, float) and d > 0 and not v > 0:
            return f"--{f.name}: expected a positive number, got {v!r}"
        if isinstance(d, tuple) and not v:
            return f"--{f.name}: expected at least one value"
    return None


def check_choices(flag: str, values, allowed) -> None:
    """Exit (code 2, before a run folder is made) with a message naming the flag when ``values``
    holds something outside ``allowed``."""
    for v in values:
        if v not in allowed:
            print(f"error: --{flag}: unknown value {v!r}; expected some of {','.join(map(str, allowed))}",
                  file=sys.stderr)
            raise SystemExit(2)


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": sys.version.split()[0], "jax": jax.__version__,
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "host_memory": host_memory_state()}


def make_run_dir(name: str, cfg, args) -> str:
    """``runs/NAME/<time>/`` with ``config.json`` (or the folder given to ``--resume``)."""
    if args.resume:
        return args.resume
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    os.makedirs(os.path.join(args.out, name), exist_ok=True)
    for i in range(1000):  # a folder is made by one run only (mkdir fails if another run made it)
        path = os.path.join(args.out, name, stamp + (f"-{i}" if i else ""))
        try:
            os.mkdir(path)
            break
        except FileExistsError:
            continue
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump({"config": dataclasses.asdict(cfg), "quick": args.quick, "argv": sys.argv[1:],
                   "machine": machine()}, f, indent=2)
    return path


def save_results(run_dir: str, results: dict) -> str:
    path = os.path.join(run_dir, "results.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=2, default=float)
    os.replace(tmp, path)
    return path


class Timer:
    def __enter__(self):
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.t0


def figure(figsize=(6, 4)):
    """A new matplotlib figure and axes (the Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=figsize)


def save_figure(fig, ax, path: str, *, xlabel: str, ylabel: str, title: str = "", logy: bool = False) -> str:
    """Label, legend, grid, write ``path`` (PNG) and close."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_curves(curves: dict, path: str, ylabel: str = "loss", title: str = "", logy: bool = True,
                xlabel: str = "step") -> str:
    """One line per name: ``{name: (xs, values)}`` -> PNG."""
    fig, ax = figure()
    for name, (x, y) in curves.items():
        ax.plot(x, y, label=name)
    return save_figure(fig, ax, path, xlabel=xlabel, ylabel=ylabel, title=title, logy=logy)


def train_curve(history, key="loss"):
    rows = [r for r in history if r.get("kind") == "train" and key in r]
    return [r["step"] for r in rows], [float(sum(r[key]) / len(r[key])) if isinstance(r[key], list) else r[key]
                                       for r in rows]
