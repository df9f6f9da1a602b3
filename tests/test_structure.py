"""The core stays readable: short functions, one masking rule (scripts/function_sizes.py measures)."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from function_sizes import sizes  # noqa: E402


def test_no_function_in_the_library_is_over_80_lines_and_rnn_and_fit_under_60():
    rows = sizes()
    long = [f"{path}:{line} {name} ({n} lines)" for n, path, name, line in rows if n > 80]
    assert not long, "functions over 80 lines of code: " + "; ".join(long)
    core = {(path, name): n for n, path, name, _ in rows if (path, name) in
            {("rnn_jax/layers.py", "rnn"), ("rnn_jax/train.py", "fit")}}
    assert len(core) == 2 and all(n < 60 for n in core.values()), core


def test_sizes_count_code_not_docstrings_or_comments(tmp_path):
    from function_sizes import code_lines
    import ast

    src = 'def f(x):\n    """Doc.\n\n    More doc.\n    """\n    # a comment\n\n    y = (x +\n         1)\n    return y\n'
    assert code_lines(src, ast.parse(src).body[0]) == 4  # def, the two lines of y, return


def test_the_masking_rule_is_built_in_one_place():
    # every mask by length is rnn_jax._ops.valid_steps (or a view of it): no `arange(T) < lengths` elsewhere
    found = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "rnn_jax")):
        for f in files:
            if f.endswith(".py") and f != "_ops.py":
                for i, line in enumerate(open(os.path.join(dirpath, f)), 1):
                    if re.search(r"arange\([^)]*\)[^#>]*<", line) and ">>>" not in line:
                        found.append(f"{f}:{i}: {line.strip()}")
    assert not found, found
