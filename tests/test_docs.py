"""The documentation site: an API page for every module, a strict build (no broken reference, no
missing page) and every public name in the built reference."""
import importlib
import os
import pkgutil
import re
import subprocess
import sys

import pytest

import rnn_jax

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API = os.path.join(ROOT, "docs", "api")


def _modules():
    """Every public module of the package: (name, its public names)."""
    out = []
    for info in pkgutil.walk_packages(rnn_jax.__path__, "rnn_jax."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        mod = importlib.import_module(info.name)
        names = getattr(mod, "__all__", None)
        if names is None:  # the functions and classes it defines
            names = [n for n, v in vars(mod).items() if not n.startswith("_") and callable(v)
                     and getattr(v, "__module__", None) == info.name]
        out.append((info.name, sorted(names)))
    return out


def _pages():
    pages = {}
    for name in os.listdir(API):
        with open(os.path.join(API, name), encoding="utf-8") as f:
            text = f.read()
        for target in re.findall(r"^::: (rnn_jax[\w.]*)", text, flags=re.M):
            pages[target] = "show_submodules: true" in text
    return pages


def test_every_module_has_an_api_page():
    pages = _pages()
    for name, _ in _modules():
        parents = [".".join(name.split(".")[:i]) for i in range(2, name.count(".") + 1)]
        assert name in pages or any(pages.get(p) for p in parents), f"{name}: no page in docs/api"


def test_site_builds_strictly_and_lists_every_public_name(tmp_path):
    pytest.importorskip("mkdocs", reason="the documentation tools are the optional extra rnn_jax[docs]")
    pytest.importorskip("mkdocstrings", reason="the documentation tools are the optional extra rnn_jax[docs]")
    site = tmp_path / "site"
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    p = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    html = "".join(open(os.path.join(d, f), encoding="utf-8").read()
                   for d, _, files in os.walk(site / "api") for f in files if f.endswith(".html"))
    anchors = set(re.findall(r'id="(rnn_jax[\w.]*)"', html))
    missing = [f"{mod}.{n}" for mod, names in _modules() for n in names
               if f"{mod}.{n}" not in anchors and not _reexported(mod, n, anchors)]
    assert not missing, f"not in the API reference: {missing[:20]} ({len(missing)})"


def _reexported(mod, name, anchors):
    """A name a module imports from another module of the package is documented where it is defined."""
    obj = getattr(importlib.import_module(mod), name, None)
    home = getattr(obj, "__module__", None)
    return home is not None and home != mod and f"{home}.{name}" in anchors
