"""The benchmark scripts run end to end in their quick modes and write what they promise.

No timing is asserted (speed is reported by the scripts, not tested); these check that each script
runs, that its rows are complete, and the facts it reports that do not depend on the machine's speed.
"""
import json
import math
import os
import subprocess
import sys

import pytest

from conftest import FAST_COMPILE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# The scripts are run to check what they write, not to time anything: their programs are compiled at the
# lowest backend optimisation level, as every test's are (conftest.py), unless a test needs XLA's own.
# Scripts that need no flags of their own run in the test's process (_inproc); the others in a process
# started with their flags (_run): XLA's own level, two devices, no GPU visible.


def _run(module, *args, tmp_path, **extra_env):
    env = dict(os.environ, RNN_JAX_BENCH_OUT=str(tmp_path), XLA_FLAGS=FAST_COMPILE)
    env.update(extra_env)
    p = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


def _inproc(module, *args, tmp_path, monkeypatch, capsys):
    """``module.main(args)`` in this process, in float32 as from the command line (these scripts need no
    flags of their own: a started process would only add its start-up, seconds each); what it printed."""
    import importlib

    import jax

    monkeypatch.setenv("RNN_JAX_BENCH_OUT", str(tmp_path))
    with jax.enable_x64(False):
        rc = importlib.import_module(module).main(list(args))
    assert rc is None or rc == 0 or isinstance(rc, dict), rc
    return capsys.readouterr().out


def _positive(v):
    return isinstance(v, float) and math.isfinite(v) and v > 0


def test_throughput_quick(tmp_path, monkeypatch, capsys):
    out = _inproc("benchmarks.throughput", "--quick", "--rounds", "1", "--cells", "gru",
               tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    data = json.loads((tmp_path / "throughput_quick.json").read_text())
    assert data["machine"]["jax"] and data["dtype"] == "float32"
    assert _positive(data["matmul_ceiling_gflops"])
    assert len(data["rows"]) == 1 * 2 * 2  # cells x sizes x modes
    for row in data["rows"]:
        for fw in ("rnn_jax", "scan", "flax"):
            assert _positive(row[f"{fw}_ms"]) and _positive(row[f"{fw}_first_call_s"])
        assert _positive(row["ratio_vs_flax"])
    assert "geometric mean rnn_jax/flax gru fwd+bwd" in out


def test_choices_quick(tmp_path, monkeypatch, capsys):
    _inproc("benchmarks.choices", "--quick", "--rounds", "1", "--cells", "elman", "--modes", "fwd+bwd",
            tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    rows = json.loads((tmp_path / "choices_quick.json").read_text())["rows"]
    assert len(rows) == 2
    for row in rows:
        assert len(row["ms"]) == 2 and row["best"] in row["ms"]  # hoisted / in-loop


def test_step_product_quick_forms_agree_and_report_their_backend(tmp_path):
    # XLA's default optimisation: which products reach YNNPACK is what this test reads
    _run("benchmarks.step_product", "--quick", tmp_path=tmp_path, XLA_FLAGS="")  # exits non-zero if the forms differ
    data = json.loads((tmp_path / "step_product_quick.json").read_text())
    (row,) = data["rows"]
    assert set(row["ms"]) == set(row["ynnpack"]) == {"fwd_rows", "fwd_transposed", "bwd_rows", "bwd_transposed"}
    assert all(_positive(v) for v in row["ms"].values())
    # the reason the transposed forms exist: XLA:CPU does not give them to YNNPACK
    assert not row["ynnpack"]["fwd_transposed"] and not row["ynnpack"]["bwd_transposed"]


def test_profile_step_quick_lists_the_loops_of_one_step(tmp_path, monkeypatch, capsys):
    _inproc("benchmarks.profile_step", "--quick", "--steps", "3", "--model", "classifier", "--cell", "gru",
            tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    step = json.loads((tmp_path / "profile_step_classifier_gru_rnn_jax_quick.json").read_text())["median_step"]
    loops = [o for o in step["ops"] if o["op"].startswith("while")]
    assert len(loops) == 2  # the GRU's forward and backward recurrences
    assert len(step["walls_ms"]) == 3 and step["wall_ms"] in step["walls_ms"]
    assert all(_positive(o["ms"]) for o in step["ops"]) and step["loops_ms"] <= step["wall_ms"]


def test_train_step_quick():
    from benchmarks import train_step

    out = train_step.main(["--quick", "--rounds", "1", "--cells", "gru"])
    assert {r["model"] for r in out["rows"]} == {"classifier", "char_lm", "seq2seq"}
    for r in out["rows"]:
        assert _positive(r["ms"]["rnn_jax"]) and _positive(r["ms"]["flax"]) and _positive(r["vs_flax"])


def test_host_memory_quick_runs_each_policy_in_its_own_process():
    from benchmarks import host_memory, tables

    out = host_memory.main(["--quick", "--cases", "classifier:gru"])
    assert out["children"]["reuse"][0]["reuse"] is True
    assert out["children"]["default"][0] == {"reuse": False, "mmap_threshold": None}
    assert [(r["case"], r["lib"]) for r in out["rows"]] == [("classifier:gru", "rnn_jax"), ("classifier:gru", "flax")]
    for r in out["rows"]:
        assert _positive(r["default_ms"]) and _positive(r["reuse_ms"]) and _positive(r["reuse_over_default"])
        assert r["default_faults_per_step"] >= 0 and r["reuse_faults_per_step"] >= 0
    assert tables.host(out).count("\n") == len(out["rows"]) + 3


def test_data_parallel_quick_splits_the_batch_over_two_devices(tmp_path):
    # the script checks each split step's loss against the one-device step before timing it
    out = _run("benchmarks.data_parallel", "--quick", "--models", "seq2seq", "--cells", "gru",
               tmp_path=tmp_path, XLA_FLAGS=f"--xla_force_host_platform_device_count=2 {FAST_COMPILE}")
    data = json.loads((tmp_path / "data_parallel_quick.json").read_text())
    assert len(data["devices"]) == 2 and [(r["model"], r["cell"]) for r in data["rows"]] == [("seq2seq", "gru")]
    for row in data["rows"]:
        assert set(row["ms"]) == {"rnn_jax x1", "rnn_jax x2", "flax x1", "flax x2", "flax shard_map x2"}
        assert all(_positive(v) for v in row["ms"].values())
        assert _positive(row["rnn_jax_x2_vs_x1"]) and _positive(row["rnn_jax_vs_flax_x2"])
    assert "rnn_jax x2/x1" in out
    from benchmarks import tables

    assert tables.data_parallel(data).count("\n") == len(data["rows"]) + 3


def test_packing_quick_checks_losses_and_renders(tmp_path, monkeypatch, capsys):
    # the script checks each packed step's first loss against the unpacked step's before timing it
    out = _inproc("benchmarks.packing", "--quick", "--rounds", "1", "--cells", "gru",
               tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    data = json.loads((tmp_path / "packing_quick.json").read_text())
    assert [r["spread"] for r in data["rows"]] == ["full", "half", "any"]
    for row in data["rows"]:
        assert set(row["ms"]) == {"packed", "unpacked", "flax"} and all(_positive(v) for v in row["ms"].values())
        assert 0 < row["valid"] <= 1
    assert data["rows"][0]["valid"] == 1.0 and data["rows"][2]["valid"] < data["rows"][1]["valid"] < 1
    assert "packed/unpacked" in out
    from benchmarks import tables

    assert tables.packing(data).count("\n") == len(data["rows"]) + 3


def test_deer_quick_converges(tmp_path, monkeypatch, capsys):
    _inproc("benchmarks.deer", "--quick", "--rounds", "1",
               tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    rows = json.loads((tmp_path / "deer_quick.json").read_text())["rows"]
    assert {r["mode"] for r in rows} == {"fwd", "fwd+bwd"}
    for r in rows:
        assert r["iterations"]["newton"]["converged"] and r["iterations"]["diagonal"]["converged"]
        assert r["iterations"]["newton"]["max"] <= r["T"]
        assert _positive(r["newton_ms"]) and _positive(r["scan_ms"])


def test_parallel_forms_quick_times_every_form(tmp_path, monkeypatch, capsys):
    # the script checks that the forms' losses agree before timing them
    _inproc("benchmarks.parallel_forms", "--quick", "--rounds", "1",
               tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    rows = json.loads((tmp_path / "parallel_forms_quick.json").read_text())["rows"]
    assert [(r["cell"], r["T"]) for r in rows] == [(c, T) for c in ("min_gru", "min_lstm", "lru", "indrnn")
                                                   for T in (100,)]
    for r in rows:
        forms = ("sequential", "deer_diagonal") if r["cell"] == "indrnn" else ("sequential", "associative", "linear_scan")
        assert all(_positive(r[f"{k}_ms"]) for k in forms), r


def test_scaling_quick_remat_gives_the_same_loss(tmp_path, monkeypatch, capsys):
    _inproc("benchmarks.scaling", "--quick",
               tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    rows = json.loads((tmp_path / "scaling_quick.json").read_text())["rows"]
    assert len(rows) == 4 and not any("error" in r for r in rows)
    for T in (300, 3000):
        plain, remat = [r for r in rows if r["T"] == T]
        assert plain["remat"] is False and remat["remat"] > 1
        assert remat["loss"] == pytest.approx(plain["loss"], rel=1e-5)
        assert plain["peak_rss_mib"] >= plain["rss_before_mib"] > 0


def test_accelerator_exits_cleanly_without_gpu(tmp_path):
    # JAX_PLATFORMS=cpu hides any GPU, so this holds on every machine
    out = _run("benchmarks.accelerator", tmp_path=tmp_path, JAX_PLATFORMS="cpu")
    assert "no GPU visible to JAX" in out
    assert not (tmp_path / "accelerator.json").exists()


def test_tables_render_the_committed_results():
    """benchmarks/README.md's tables come from the committed JSON through this script."""
    from benchmarks import tables

    for name in ("throughput", "scaling", "deer", "choices", "choices_unroll"):
        data = tables.load(name)
        text = getattr(tables, name.split("_")[0])(data)
        assert text.count("\n") >= len(data["rows"]) + 1
    ts = tables.load("train_step")
    assert tables.train_step(ts).count("\n") == len(ts["rows"]) + 3  # caption, blank, header, rule
    row = dict(ts["rows"][0], floor_vs_flax=0.5, floor_vs_rnn_jax=0.6)
    row["ms"] = dict(row["ms"], floor=1.25)  # a run that measured the products' floor gets its columns
    text = tables.train_step(dict(ts, rows=[row]))
    assert "| floor ms |" in text and "| 1.25 |" in text and text.rstrip().endswith("| 0.50 | 0.60 |")
    tp = tables.load("throughput")
    assert {r["cell"] for r in tp["rows"]} == {"elman", "lstm", "gru"}
    assert {r["B"] for r in tp["rows"]} >= {1, 64} and max(r["T"] for r in tp["rows"]) >= 1000
    assert max(r["H"] for r in tp["rows"]) >= 512
    sc = tables.load("scaling")
    assert max(r["T"] for r in sc["rows"] if "error" not in r) == 10 ** 6


def test_train_step_combines_processes_by_row_medians():
    from benchmarks import train_step

    def payload(*ratios):
        return {"rounds": 3, "rows": [{"model": "classifier", "cell": c, "ms": {"rnn_jax": 10 * v, "flax": 10.0},
                                       "vs_flax": v, "vs_torch": None} for c, v in zip(("elman", "gru"), ratios)]}

    out = train_step.combine([payload(0.7, 0.9), payload(0.8, 0.7), payload(0.75, 0.95)])
    assert out["processes"] == 3
    elman, gru = out["rows"]
    assert elman["vs_flax"] == 0.75 and elman["vs_flax_range"] == [0.7, 0.8] and elman["ms"]["rnn_jax"] == 7.5
    assert gru["vs_flax"] == 0.9 and gru["vs_flax_each"] == [0.9, 0.7, 0.95] and gru["vs_torch"] is None
    with pytest.raises(ValueError, match="different rows"):
        train_step.combine([payload(0.7, 0.9), {"rounds": 3, "rows": payload(0.7, 0.9)["rows"][:1]}])


def test_train_step_table_shows_ranges_over_processes():
    from benchmarks import tables, train_step

    rows = [{"model": "classifier", "cell": "gru", "ms": {"rnn_jax": 8.0, "flax": 10.0}, "vs_flax": v, "vs_torch": None}
            for v in (0.8, 0.7, 0.9)]
    text = tables.train_step(train_step.combine([{"rounds": 3, "rows": [r]} for r in rows]))
    assert "median over 3 fresh processes" in text and "| 0.80 (0.70-0.90) | - |" in text


def test_compile_time_quick_measures_both_paths_in_fresh_processes(tmp_path):
    out = _run("benchmarks.compile_time", "--quick", tmp_path=tmp_path)
    assert "| gru | kernel |" in out and "| gru | generic |" in out
    rows = json.load(open(tmp_path / "compile_time_quick.json"))["rows"]
    assert [r["path"] for r in rows] == ["kernel", "generic"]
    assert all(r["compile_s"] > 0 and r["lower_s"] > 0 and len(r["runs"]) == 1 for r in rows)


def test_grid_sizes_cover_every_cell_and_drop_only_the_costly():
    from benchmarks import grid

    kept = grid.sizes()
    assert {c for c, *_ in kept} == set(grid.CELLS)
    for c in grid.CELLS:  # every batch, length and width appears for every cell
        assert {B for cc, B, _, _ in kept if cc == c} == set(grid.BATCHES)
        assert {H for cc, _, _, H in kept if cc == c} == set(grid.HIDDEN)
    full = [(c, B, T, H) for c in grid.CELLS for H in grid.HIDDEN for T in grid.LENGTHS for B in grid.BATCHES]
    assert all(grid.gflop(*s) > grid.MAX_GFLOP for s in set(full) - set(kept))


def test_grid_quick_writes_every_ratio(tmp_path, monkeypatch, capsys):
    _inproc("benchmarks.grid", "--quick", "--rounds", "1", "--frameworks", "rnn_jax,flax",
            tmp_path=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    data = json.loads((tmp_path / "grid_quick.json").read_text())
    from benchmarks import grid

    assert len(data["rows"]) == len(grid.QUICK)
    for row in data["rows"]:
        assert _positive(row["rnn_jax_ms"])
        assert ("rnn_jax_vs_flax" in row) == (row["cell"] in grid.PEERS)
    assert data["summary"]["flax"]["sizes"] == sum(c in grid.PEERS for c, *_ in grid.QUICK)


def test_compare_flags_only_what_is_slower_beyond_the_noise():
    from benchmarks.compare import verdicts

    size, other = ("gru", 1, 100, 64), ("lstm", 8, 100, 64)
    this = [{size: 10.0, other: 10.0}, {size: 10.4, other: 12.0}, {size: 10.2, other: 8.0}]
    base = [{size: 9.0, other: 9.5}, {size: 9.1, other: 9.6}, {size: 9.0, other: 9.4}]
    rows = {(r["cell"], r["B"]): r for r in verdicts(this, base)}
    assert rows[("gru", 1)]["slower"]          # 1.13x, noise 4 %: slower
    assert not rows[("lstm", 8)]["slower"]     # 1.05x but noise 40 %: not shown to be slower
    assert not verdicts(base, this)[0]["slower"]


def test_compare_runs_against_another_checkout(tmp_path):
    out = _run("benchmarks.compare", f"--other={ROOT}", "--rounds=1", "--cells=elman", "--B=1", "--T=100",
               "--H=64", "--timing_rounds=1", "--name=self", tmp_path=tmp_path)
    data = json.loads((tmp_path / "compare_self.json").read_text())
    assert [(r["cell"], r["B"], r["T"], r["H"]) for r in data["rows"]] == [("elman", 1, 100, 64)]
    assert "of 1 sizes slower" in out


def test_long_memory_quick_times_both_frameworks(tmp_path, monkeypatch, capsys):
    _inproc("benchmarks.long_memory", "--quick", "--rounds", "1", tmp_path=tmp_path, monkeypatch=monkeypatch,
            capsys=capsys)
    data = json.loads((tmp_path / "long_memory_quick.json").read_text())
    assert [r["cell"] for r in data["rows"]] == ["indrnn", "min_gru"]
    for row in data["rows"]:
        assert _positive(row["rnn_jax_ms"]) and _positive(row["flax_ms"]) and row["T"] == 200


def test_derived_tangent_quick_times_both_rules_of_every_kernel(tmp_path):
    from benchmarks import derived_tangent

    out = tmp_path / "dt.json"
    derived_tangent.main(["--quick", f"--out={out}"])
    rows = json.load(open(out))["rows"]
    assert {r["cell"] for r in rows} == {"elman", "lstm", "gru", "indrnn"}
    assert all(r["hand_ms"] > 0 and r["derived_ms"] > 0 and r["ratio"] == r["derived_ms"] / r["hand_ms"] for r in rows)
