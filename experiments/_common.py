"""Shared plumbing for experiment scripts: Config -> flags, run folders, results, plots."""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import inspect
import json
import math
import os
import platform
import re
import sys
import time
import typing

import jax

from rnn_jax.host_memory import POLICIES, host_memory_state, use_policy


# Domains of Config fields beyond the rules of check_values: ``Config.limits = {field: Limit}``.

class Limit(typing.NamedTuple):
    """A field's domain: ``text`` completes "--field: expected ...", ``ok(value)`` decides."""

    text: str
    ok: typing.Callable[[typing.Any], bool]

    def __call__(self, value) -> str | None:
        return None if self.ok(value) else self.text


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _each(value) -> tuple:
    return value if isinstance(value, tuple) else (value,)


FRACTION = Limit("a number in [0, 1)", lambda v: isinstance(v, (int, float)) and 0 <= v < 1)


def at_least(n: int) -> Limit:
    """An int (or a tuple of ints) ``>= n``."""
    return Limit(f"ints >= {n}", lambda v: all(_is_int(e) and e >= n for e in _each(v)))


def one_of(*choices) -> Limit:
    """A value (or a tuple of values) from ``choices``."""
    return Limit(f"some of {','.join(map(str, choices))}", lambda v: all(e in choices for e in _each(v)))


def zero_or_at_least(n: int, zero_means: str) -> Limit:
    return Limit(f"0 ({zero_means}) or an int >= {n}", lambda v: _is_int(v) and (v == 0 or v >= n))


def field_comments(cls) -> dict[str, str]:
    """The comment after each field of a Config class's source: its help text."""
    try:
        src = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^\s+(\w+)\s*:[^#\n]*#\s*(.*)$", src, re.M)}


def parse_config(cls, argv=None, description: str = ""):
    """``--field=value`` flags from a frozen dataclass ``cls`` (help text from the comment after each
    field), plus ``--quick`` (the class's ``quick()`` overrides) and ``--resume=DIR``. Unknown flags,
    values outside a field's domain (:func:`check_values`, ``cls.limits``) and flags that others make
    meaningless (``cls.conflicts(cfg, given_flags) -> message | None``) exit with code 2 and a message
    naming the flag, before any run folder is made."""
    p = argparse.ArgumentParser(description=description, allow_abbrev=False,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    for f in dataclasses.fields(cls):
        typ = hints[f.name]
        allowed = domain(cls, f)
        text = f.metadata.get("help", comments.get(f.name, ""))
        kw = {"default": None, "help": f"{text} (default: {f.default!r}; {allowed})"}
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
    saved = None
    if args.resume:
        path = os.path.join(args.resume, "config.json")
        try:
            with open(path) as f:
                saved = cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in json.load(f)["config"].items()})
        except (OSError, ValueError, KeyError, TypeError) as e:
            p.error(f"--resume: {args.resume} is not a run folder of this experiment ({type(e).__name__}: {e})")
        cfg = saved
    else:
        cfg = cls.quick() if args.quick else cls()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name) is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    problem = check_values(cfg) or (check_resume(saved, cfg, args.resume) if saved is not None else None)
    if not problem and hasattr(cls, "conflicts"):  # flags that another flag makes meaningless
        problem = cls.conflicts(cfg, set(overrides))
    if not problem and args.mesh is not None and hasattr(cfg, "batch_size"):
        problem = mesh_batch_problem(args.mesh, {"--batch_size": cfg.batch_size})
    if problem:
        p.error(problem)
    return cfg, args


def mesh_batch_problem(mesh, batches: dict) -> str | None:
    """Whether each ``{what: global batch size}`` splits over the processes and then over each process's
    devices of ``mesh`` (its ``data`` axis): a message naming the first that does not, or None. Experiments
    call it before making their run folder."""
    import jax

    n_proc, local = jax.process_count(), len(mesh.local_devices)
    for what, size in batches.items():
        if size % n_proc or (size // n_proc) % local:
            return (f"--mesh: {what} {size} does not split over {n_proc} process(es) x {local} device(s) each; "
                    f"choose a batch size divisible by {n_proc * local}")
    return None


def check_resume(saved, cfg, run_dir: str) -> str | None:
    """A resumed run may only train as long or longer: fewer ``steps`` than it was started with would
    rewrite a finished run's results (or cut its history) with a shorter run's."""
    steps_then, steps_now = getattr(saved, "steps", None), getattr(cfg, "steps", None)
    if steps_then is not None and steps_now < steps_then:
        return (f"--steps: the run in {run_dir} was started with steps={steps_then}; a resume may not shorten "
                f"it (start a new run instead)")
    for f in dataclasses.fields(saved):  # any other change would train on with flags its config.json does not say
        then, now = getattr(saved, f.name), getattr(cfg, f.name)
        if f.name != "steps" and then != now:
            return (f"--{f.name}: the run in {run_dir} was started with {f.name}={then!r}; a resume continues it as "
                    f"it was started (only --steps may grow): drop --{f.name}, or start a new run with "
                    f"{f.name}={now!r}")
    return None


def domain(cls, f) -> str:
    """The values a field takes, in words, as :func:`check_values` checks them (for ``--help``)."""
    d = f.default
    limit = getattr(cls, "limits", {}).get(f.name)
    if limit is not None:
        return f"allowed: {limit.text}"
    if isinstance(d, bool):
        return "allowed: true, false"
    if isinstance(d, int):
        return "allowed: an int >= 1" if d > 0 else "allowed: an int >= 0"
    if isinstance(d, float):
        return "allowed: a finite number > 0" if d > 0 else "allowed: a finite number >= 0"
    if isinstance(d, tuple) and d and all(isinstance(v, int) and not isinstance(v, bool) for v in d):
        return "allowed: ints >= 1"
    if isinstance(d, tuple) and d and all(isinstance(v, float) for v in d):
        return "allowed: finite numbers >= 0"
    return "allowed: see the description"


def check_values(cfg) -> str | None:
    """Each field's domain, from its default unless ``type(cfg).limits`` names a check for it:

    * a count (int) whose default is positive (steps, batch size, hidden size, seeds...) is an int
      >= 1; one whose default is 0 (0 meaning "none" or "all") an int >= 0;
    * a float is finite, and > 0 when its default is (learning rates), >= 0 when it is 0;
    * a tuple holds at least one value; tuples of ints hold ints >= 1, of floats finite numbers >= 0.

    Returns the first problem as a message naming the flag, or None."""
    limits = getattr(type(cfg), "limits", {})
    for f in dataclasses.fields(cfg):
        v, d = getattr(cfg, f.name), f.default
        if isinstance(d, tuple) and not v:
            return f"--{f.name}: expected at least one value"
        if f.name in limits:
            want = limits[f.name](v)
            if want:
                bad = [e for e in _each(v) if not limits[f.name].ok(e)] if isinstance(v, tuple) else [v]
                return f"--{f.name}: expected {want}, got {_flag_value(bad[0] if bad else v)}"
            continue
        if isinstance(v, bool) or isinstance(d, bool):
            continue
        if isinstance(d, int) and not (isinstance(v, int) and v >= min(d, 1)):
            return f"--{f.name}: expected {'a positive int' if d > 0 else 'an int >= 0'}, got {v!r}"
        if isinstance(d, float) and not math.isfinite(v):
            return f"--{f.name}: expected a finite number, got {v!r}"
        if isinstance(d, float) and d > 0 and not v > 0:
            return f"--{f.name}: expected a positive number, got {v!r}"
        if isinstance(d, float) and not v >= 0:
            return f"--{f.name}: expected a number >= 0, got {v!r}"
        if isinstance(d, tuple) and d and all(isinstance(e, int) and not isinstance(e, bool) for e in d):
            bad = [e for e in v if not (_is_int(e) and e >= 1)]
            if bad:
                return f"--{f.name}: expected positive ints, got {bad[0]!r}"
        if isinstance(d, tuple) and d and all(isinstance(e, float) for e in d):
            bad = [e for e in v if not (math.isfinite(e) and e >= 0)]
            if bad:
                return f"--{f.name}: expected finite numbers >= 0, got {bad[0]!r}"
    return None


def _flag_value(v) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else repr(v)


def validation_split(labels, fraction: float, seed: int):
    """``(train_idx, valid_idx)``: a stratified ``fraction`` of the training examples (at least one per
    class) held out for selection and early stopping, so that no choice ever reads the test split."""
    import numpy as np

    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    valid = []
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        valid.extend(members[:max(1, int(round(fraction * len(members))))].tolist())
    valid = np.sort(np.asarray(valid, np.int64))
    return np.setdiff1d(np.arange(len(labels)), valid), valid


def machine() -> dict:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "python": sys.version.split()[0], "jax": jax.__version__,
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            "host_memory": host_memory_state()}


def _cli_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (tuple, list)):
        return ",".join(_cli_value(x) for x in v)
    return repr(v) if isinstance(v, float) else str(v)


def command(name: str, cfg) -> str:
    """The command line that reproduces ``cfg`` whatever the defaults become: every field as a flag."""
    return " ".join([f"python -m experiments.{name}"] +
                    [f"--{f.name}={_cli_value(getattr(cfg, f.name))}" for f in dataclasses.fields(cfg)])


def make_run_dir(name: str, cfg, args) -> str:
    """``runs/NAME/<time>/`` with ``config.json`` (or the folder given to ``--resume``)."""
    if args.resume:  # check_resume allowed only a longer --steps: recorded beside the run's own flags
        path = os.path.join(args.resume, "config.json")
        with open(path) as f:
            saved = json.load(f)
        if saved["config"].get("steps") != getattr(cfg, "steps", None):
            saved.setdefault("resumes", []).append({"argv": sys.argv[1:], "steps": [saved["config"]["steps"], cfg.steps],
                                                    "at": datetime.datetime.now().isoformat(timespec="seconds")})
            saved["config"]["steps"] = cfg.steps
            saved["command"] = command(name, cfg)
            with open(path + ".tmp", "w") as f:
                json.dump(saved, f, indent=2)
            os.replace(path + ".tmp", path)
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
                   "command": command(name, cfg), "machine": machine()}, f, indent=2)
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
