"""``reuse_host_memory``: a training step stops faulting in fresh pages at every call; results unchanged."""
import json
import os
import subprocess
import sys

import pytest

from rnn_jax import host_memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE = os.path.join(ROOT, "tests", "_host_memory_probe.py")


@pytest.mark.skipif(host_memory._glibc() is None, reason="reuse_host_memory acts on glibc's malloc only")
def test_reuse_removes_the_page_faults_of_each_step():
    p = subprocess.run([sys.executable, PROBE], cwd=ROOT, capture_output=True, text=True, timeout=300,
                       env=dict(os.environ, XLA_FLAGS=""))
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["applied"] and r["again"]
    assert r["state"] == {"reuse": True, "mmap_threshold": r["state"]["mmap_threshold"]}
    assert r["state"]["mmap_threshold"] >= 1 << 25
    # by default every call faults its temporary in afresh; kept memory is reused. Alone on the machine
    # the faults fall about tenfold; with the other test worker busy, XLA's thread pool still faults some
    # pages in (3x fewer was measured under load), so the bound here is 2x
    assert r["before"] >= 1.0, r
    assert r["after"] <= r["before"] / 2, r
    assert r["losses"][0] == r["losses"][1]  # same program, same numbers

def test_without_glibc_it_does_nothing_and_says_so(monkeypatch):
    monkeypatch.setattr(host_memory, "_glibc", lambda: None)
    monkeypatch.setattr(host_memory, "_state", {"reuse": False, "mmap_threshold": None})
    assert host_memory.reuse_host_memory() is False
    assert host_memory.host_memory_state() == {"reuse": False, "mmap_threshold": None}


def test_use_policy_names_the_bad_value_and_leaves_default_alone(monkeypatch):
    monkeypatch.setattr(host_memory, "_state", {"reuse": False, "mmap_threshold": None})
    with pytest.raises(ValueError, match=r"policy: expected one of \('reuse', 'default'\), got 'always'"):
        host_memory.use_policy("always")
    assert host_memory.use_policy("default") == {"reuse": False, "mmap_threshold": None}
