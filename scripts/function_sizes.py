"""Lines of code per function in rnn_jax/ (docstrings, comments and blank lines not counted), longest first.

    python scripts/function_sizes.py [--over=80] [names...]
"""
from __future__ import annotations

import ast
import io
import os
import sys
import tokenize

ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "rnn_jax")


def code_lines(source: str, node: ast.AST) -> int:
    """Lines of ``node`` holding code: not blank, not only a comment, not its (or a nested def's) docstring."""
    doc = set()
    for n in ast.walk(node):
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body and \
                isinstance(n.body[0], ast.Expr) and isinstance(getattr(n.body[0], "value", None), ast.Constant) and \
                isinstance(n.body[0].value.value, str):
            doc.update(range(n.body[0].lineno, n.body[0].end_lineno + 1))
    code = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT):
            code.update(range(tok.start[0], tok.end[0] + 1))
    return len({i for i in range(node.lineno, node.end_lineno + 1) if i in code and i not in doc})


def sizes(root: str = ROOT):
    out = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.endswith(".py"):
                path = os.path.join(dirpath, f)
                source = open(path).read()
                for node in ast.walk(ast.parse(source)):
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        out.append((code_lines(source, node), os.path.relpath(path, os.path.dirname(root)),
                                    node.name, node.lineno))
    return sorted(out, reverse=True)


if __name__ == "__main__":
    over = next((int(a.split("=")[1]) for a in sys.argv[1:] if a.startswith("--over=")), 0)
    names = [a for a in sys.argv[1:] if not a.startswith("--")]
    for n, path, name, line in sizes():
        if n > over and (not names or name in names):
            print(f"{n:5d}  {path}:{line}  {name}")
