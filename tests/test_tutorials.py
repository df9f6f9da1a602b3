"""The tutorials (docs/tutorials/*.md) run as written: each page's Python blocks, in order, in a fresh
process with JAX's defaults (float32), in an empty folder (their figures go to ./figures/).

    python tests/test_tutorials.py          # run every tutorial in docs/tutorials, rewriting its figures
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = os.path.join(ROOT, "docs", "tutorials")
NAMES = sorted(n[:-3] for n in os.listdir(PAGES) if n.endswith(".md"))


def code(name: str) -> str:
    with open(os.path.join(PAGES, name + ".md"), encoding="utf-8") as f:
        return "\n".join(re.findall(r"```python\n(.*?)```", f.read(), flags=re.S))


def run(name: str, cwd: str, xla_flags: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_ENABLE_X64", "XLA_FLAGS")}
    if xla_flags:
        env["XLA_FLAGS"] = xla_flags
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code(name)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.mark.parametrize("name", NAMES)
def test_tutorial_runs(name, tmp_path):
    from conftest import FAST_COMPILE

    p = run(name, str(tmp_path), FAST_COMPILE)
    assert p.returncode == 0, (p.stdout[-2000:], p.stderr[-3000:])
    with open(os.path.join(PAGES, name + ".md"), encoding="utf-8") as f:
        for figure in re.findall(r"!\[[^\]]*\]\((figures/[^)]+)\)", f.read()):
            assert os.path.exists(tmp_path / figure), f"{name}: {figure} was not drawn"
            assert os.path.exists(os.path.join(PAGES, figure)), f"{name}: {figure} is not committed"


if __name__ == "__main__":
    for n in sys.argv[1:] or NAMES:
        proc = run(n, PAGES)
        print(f"{n}: exit {proc.returncode}\n{proc.stdout[-1500:]}{proc.stderr[-1500:] if proc.returncode else ''}")
