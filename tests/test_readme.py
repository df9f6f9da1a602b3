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
