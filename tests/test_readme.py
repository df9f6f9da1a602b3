"""The README's Python examples run as written, as a user runs them: each block in a fresh Python
process with JAX's default dtypes (float32; the test suite itself runs in float64)."""
import os
import re
import subprocess
import sys

import pytest

from conftest import FAST_COMPILE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
    BLOCKS = re.findall(r"```python\n(.*?)```", f.read(), flags=re.S)


def test_readme_has_its_ten_line_example():
    assert BLOCKS and len(BLOCKS[0].strip().splitlines()) == 10


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_readme_python_block_runs(i):
    # JAX's defaults (float32); XLA compiles these small programs the fast way the suite does (conftest.py)
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "XLA_FLAGS")}
    env["XLA_FLAGS"] = FAST_COMPILE
    p = subprocess.run([sys.executable, "-c", BLOCKS[i]], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    if i == 0:  # the ten lines print the outputs' shape and the first gradient leaf's
        assert p.stdout.startswith("(8, 50, 128) (")
    if "def min_gru" in BLOCKS[i]:  # your own cell: fit lowers its loss, and its gradients check
        first, last = (float(v) for v in p.stdout.split("loss ")[1].split("\n")[0].split(" -> "))
        assert last < 0.5 * first and "gradcheck True" in p.stdout, p.stdout


# ---------------------------------------------------------------------------------------------
# Commands: every experiment command in the READMEs parses (each flag and value valid today), and
# every committed run's config.json holds a command that reproduces its configuration.

import dataclasses  # noqa: E402
import glob  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import shlex  # noqa: E402

EXPERIMENTS = ("bit_reverse", "char_lm", "classify", "exploding", "generate", "long_range", "sentiment", "tagging",
               "translate")
MULTI_PROCESS = ("--coordinator", "--num_processes", "--process_id", "--mesh")  # checked by their own tests


def _readme_commands():
    cmds = set()
    for name in ("README.md", os.path.join("experiments", "README.md"), os.path.join("docs", "guide.md")):
        with open(os.path.join(ROOT, name), encoding="utf-8") as f:
            for m in re.finditer(r"python -m experiments\.([a-z_]+)((?: --[A-Za-z_]+(?:=[^\s`|)]*)?)*)", f.read()):
                if m.group(1) in EXPERIMENTS:
                    cmds.add((m.group(1), m.group(2).strip()))
    return sorted(cmds)


def _parse(name, argv):
    from experiments import _common

    mod = importlib.import_module(f"experiments.{name}")
    return _common.parse_config(mod.Config, argv)[0]


@pytest.mark.parametrize("name, flags", _readme_commands())
def test_readme_commands_parse(name, flags):
    argv = [a for a in shlex.split(flags) if not a.startswith(MULTI_PROCESS)]
    _parse(name, argv)  # exits with a message naming the flag if any flag or value is no longer valid


CONFIGS = sorted(glob.glob(os.path.join(ROOT, "experiments", "results", "**", "config.json"), recursive=True))


@pytest.mark.parametrize("path", [os.path.relpath(p, ROOT) for p in CONFIGS])
def test_committed_run_is_reproduced_by_its_command(path):
    with open(os.path.join(ROOT, path)) as f:
        saved = json.load(f)
    if saved.get("reproduce_at"):  # a run of a recipe since replaced: the commit that has it
        assert saved["command"] is None and re.fullmatch(r"[0-9a-f]{7,40}", saved["reproduce_at"])
        if os.path.isdir(os.path.join(ROOT, ".git")):
            subprocess.run(["git", "cat-file", "-e", saved["reproduce_at"] + "^{commit}"], cwd=ROOT, check=True)
        return
    words = saved["command"].split()
    assert words[:2] == ["python", "-m"] and words[2].startswith("experiments.")
    cfg = dataclasses.asdict(_parse(words[2].split(".")[1], words[3:]))
    for field, value in saved["config"].items():
        assert json.loads(json.dumps(cfg[field])) == value, (field, cfg[field], value)


def test_every_results_row_names_its_committed_run():
    with open(os.path.join(ROOT, "experiments", "README.md"), encoding="utf-8") as f:
        text = f.read()
    committed = {os.path.basename(os.path.dirname(p)) for p in CONFIGS} | {
        os.path.relpath(os.path.dirname(os.path.dirname(p)), os.path.join(ROOT, "experiments", "results"))
        for p in CONFIGS}
    table = text.split("## Results", 1)[1].split("\n\n", 2)[1]
    rows = [r for r in table.splitlines()[2:] if r.startswith("| ") and not r.startswith("| |")]
    assert len(rows) >= 8
    for row in rows:
        named = set(re.findall(r"`(?:results/)?([a-z0-9_]+)/`", row))
        assert named & committed, row[:120]


BUDGET = ("--steps", "--ucr_steps", "--bow_steps", "--eval_chars")  # replaced by the quick form's own
IN_PROCESS = ("bit_reverse", "long_range", "classify", "translate")   # compile-bound (conftest.run_main)


def _quick_runs():
    runs = set()
    for name, flags in _readme_commands():
        runs.add((name, " ".join(a for a in shlex.split(flags) if not a.startswith(MULTI_PROCESS + BUDGET))))
    return sorted(runs)


@pytest.mark.parametrize("name, flags", _quick_runs())
def test_readme_command_runs_in_its_quick_form(name, flags, tmp_path):
    """Each README command, as written but with ``--quick``'s budget (its step counts) and on one
    process, runs end to end and writes its run folder."""
    from conftest import run_main

    if "JapaneseVowels" in flags or "GunPoint" in flags:
        pytest.importorskip("aeon", reason="the UCR/UEA sets ship with the optional aeon (rnn_jax[experiments])")
    argv = ["--quick", *shlex.split(flags), f"--out={tmp_path}"]
    result = run_main(f"experiments.{name}", argv, fast_compile=name in IN_PROCESS)
    assert isinstance(result, dict)
    configs = list(tmp_path.rglob("config.json"))
    assert configs and all(json.load(open(c))["quick"] for c in configs)


# ---------------------------------------------------------------------------------------------
# Markdown: every fenced block closes (a closing fence is backticks alone; "```Text" is not one, and
# everything after it renders as code).

def _unclosed_fence(text):
    """The line number of a fence that never closes, or None (CommonMark's rule for backtick fences)."""
    opened = None
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^ {0,3}(`{3,})(.*)$", line)
        if not m:
            continue
        if opened is None:
            opened = (n, len(m.group(1)))
        elif len(m.group(1)) >= opened[1] and not m.group(2).strip():
            opened = None
    return None if opened is None else opened[0]


def test_fence_rule_sees_a_fence_that_does_not_close():
    assert _unclosed_fence("```python\nx = 1\n```\n") is None
    assert _unclosed_fence("```python\nx = 1\n```Text after\n\n```\nlayout\n```\n") == 7


@pytest.mark.parametrize("page", ["README.md", "experiments/README.md", "benchmarks/README.md"] + sorted(
    os.path.join("docs", d, f) for d in ("", "tutorials") for f in os.listdir(os.path.join(ROOT, "docs", d))
    if f.endswith(".md")))
def test_markdown_fences_close(page):
    with open(os.path.join(ROOT, page), encoding="utf-8") as f:
        assert _unclosed_fence(f.read()) is None, f"{page}: the fence opened at this line never closes"
