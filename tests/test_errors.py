"""Bad input raises ValueError naming the argument, the expected and the actual shape or value."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from conftest import run_main

I, H, T = 3, 4, 5


def f32(shape):
    return jnp.ones(shape, jnp.float32)


@pytest.fixture
def lstm_layer(key):
    layer = rj.rnn(rj.lstm(H))
    return layer, layer.init(key, I)


def test_wrong_rank(lstm_layer):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match=r"xs: expected shape \(\*batch, T, I\), got \(5,\)"):
        layer.apply(params, f32((T,)))


def test_wrong_feature_size(lstm_layer):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match=r"xs: expected shape \(\*batch, T, 3\) \(feature size 3, from params\), "
                                         r"got \(5, 7\)"):
        layer.apply(params, f32((T, 7)))
    with pytest.raises(ValueError, match=r"xs: expected shape \(\*batch, T, 3\) .* got \(2, 5, 4\)"):
        layer.apply(params, f32((2, T, 4)), jnp.array([3, 4]))


@pytest.mark.parametrize("length", [-1, T + 1])
def test_length_outside_range(lstm_layer, length):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match=rf"lengths: expected values in \[0, T\] = \[0, 5\], got {length}"):
        layer.apply(params, f32((T, I)), jnp.array(length))


def test_fractional_length_is_an_error_not_a_rounding(lstm_layer):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match="lengths: expected integers, got 2.5"):
        layer.apply(params, f32((T, I)), 2.5)
    with pytest.raises(ValueError, match="lengths: expected an integer dtype, got float"):
        layer.apply(params, f32((2, T, I)), jnp.array([3.0, 4.0]))


def test_batch_lengths_checked_before_tracing(lstm_layer):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match=r"lengths: expected values in \[0, T\] = \[0, 5\], got 9 at index \(1,\)"):
        layer.apply(params, f32((2, T, I)), jnp.array([3, 9]))
    with pytest.raises(ValueError, match=r"lengths: expected shape \(2,\) \(the batch dimensions of xs\), got \(3,\)"):
        layer.apply(params, f32((2, T, I)), jnp.array([3, 4, 5]))
    with pytest.raises(ValueError, match=r"lengths: expected values .* got 6 at index \(1, 0\)"):
        layer.apply(params, f32((2, 2, T, I)), jnp.array([[3, 4], [6, 1]]))


def test_lengths_under_jit_are_checked_in_checked_mode(lstm_layer):
    layer, params = lstm_layer
    f = jax.jit(rj.checked(lambda p, x, L: layer.apply(p, x, L)[0]))
    err, _ = f(params, f32((2, T, I)), jnp.array([3, 4]))
    err.throw()  # nothing wrong
    err, _ = f(params, f32((2, T, I)), jnp.array([3, 9]))
    with pytest.raises(Exception, match=r"lengths: expected values in \[0, T\] = \[0, 5\]"):
        err.throw()


def test_initial_states_are_checked(lstm_layer, key):
    layer, params = lstm_layer
    xs = f32((2, T, I))
    with pytest.raises(ValueError, match=r"initial_state: expected the structure"):
        layer.apply(params, xs, None, f32((2, H)))  # an LSTM needs LSTMState(h, c)
    with pytest.raises(ValueError, match=r"initial_state\.c: expected shape \(2, 4\), got \(3, 4\)"):
        layer.apply(params, xs, None, rj.LSTMState(f32((2, H)), f32((3, H))))
    with pytest.raises(ValueError, match=r"initial_state\.h: expected dtype float32, got float64"):
        layer.apply(params, xs, None, rj.LSTMState(jnp.ones((2, H), jnp.float64), f32((2, H))))


def test_params_that_do_not_match_the_cell(lstm_layer, key):
    layer, _ = lstm_layer
    gru_params = rj.gru(H).init(key, I)
    with pytest.raises(ValueError, match=r"params\['W_h'\]: expected shape \(4, 16\), got \(4, 12\)"):
        layer.apply(gru_params, f32((T, I)))
    with pytest.raises(ValueError, match="params: do not match"):
        layer.apply({"W_i": f32((I, 4 * H))}, f32((T, I)))


def test_mixed_dtypes(lstm_layer, key):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match="xs: dtype float64 does not match the params' dtype float32"):
        layer.apply(params, jnp.ones((T, I), jnp.float64))
    mixed = dict(params, W_h=params["W_h"].astype(jnp.float64))
    with pytest.raises(ValueError, match=r"params: mixed dtypes \['float32', 'float64'\]"):
        layer.apply(mixed, f32((T, I)))


def test_integer_inputs(lstm_layer):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match="xs: expected a floating dtype, got int"):
        layer.apply(params, jnp.ones((T, I), jnp.int32))


def test_stack_errors_name_the_inner_leaf(key):
    layer = rj.stack(rj.rnn(rj.gru(H)), rj.rnn(rj.gru(H)))
    params = layer.init(key, I)
    bad = {"layers": (params["layers"][0], rj.gru(H + 1).init(key, H)), "gates": ()}
    with pytest.raises(ValueError, match=r"params\['layers'\]\[1\]\['W_h'\]: expected shape \(4, 12\), got \(5, 15\)"):
        layer.apply(bad, f32((T, I)))


@pytest.mark.parametrize("make,match", [
    (lambda: rj.elman(0), "hidden_size: expected a positive int, got 0"),
    (lambda: rj.lstm(4.5), "hidden_size: expected a positive int, got 4.5"),
    (lambda: rj.elman(4, "swish!"), "activation: unknown activation 'swish!'"),
    (lambda: rj.gru(4, kernel_init="nope"), "kernel_init: unknown initialiser 'nope'"),
    (lambda: rj.bidirectional(rj.rnn(rj.gru(4)), rj.rnn(rj.gru(5)), "sum"), "fwd and bwd output sizes must match"),
    (lambda: rj.bidirectional(rj.rnn(rj.gru(4)), rj.rnn(rj.gru(4)), "max"), "merge: expected one of"),
    (lambda: rj.stack(rj.rnn(rj.gru(4)), rj.rnn(rj.gru(5)), skip="residual"), r"layers\[1\] output size 5"),
    (lambda: rj.stack(rj.rnn(rj.gru(4)), skip="dense"), "skip: expected one of"),
    (lambda: rj.stack(), "layers: expected at least one Layer"),
    (lambda: rj.rnn(rj.rnn(rj.gru(4))), "cell: expected an rnn_jax Cell"),
    (lambda: rj.many_to_one(rj.rnn(rj.gru(4)), 2, readout="first", input_size=3), "readout: expected one of"),
])
def test_construction_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_unroll_option_errors(key):
    cell = rj.gru(H)
    params = cell.init(key, I)
    with pytest.raises(ValueError, match="unroll: expected an int >= 1, got 0"):
        rj.unroll(cell, params, f32((T, I)), unroll=0)
    with pytest.raises(ValueError, match="remat: expected a bool or an int chunk size >= 1, got -2"):
        rj.unroll(cell, params, f32((T, I)), remat=-2)


def test_stream_state_and_step_are_checked(key):
    layer = rj.rnn(rj.gru(H))
    params = layer.init(key, I)
    with pytest.raises(ValueError, match=r"state: expected shape \(5, 4\), got \(4,\)"):
        rj.stream_step(layer, params, rj.stream_init(layer), f32((T, I)))  # a batch of 5 needs a batch of states
    with pytest.raises(ValueError, match=r"x: expected shape \(\*batch, 3\) \(feature size 3, from params\), got \(7,\)"):
        rj.stream_step(layer, params, rj.stream_init(layer), f32((7,)))  # the input is wrong, not the params
    with pytest.raises(ValueError, match="batch_shape: expected a tuple of positive ints"):
        rj.stream_init(layer, (0,))
    with pytest.raises(ValueError, match="needs future inputs"):
        rj.stream_init(rj.rnn(rj.gru(H), reverse=True))


def test_loss_errors():
    with pytest.raises(ValueError, match=r"targets: expected shape \(5,\) for logits of shape \(5, 3\), got \(4,\)"):
        rj.losses.softmax_cross_entropy(f32((5, 3)), jnp.ones((4,), jnp.int32))
    with pytest.raises(ValueError, match="reduction: expected one of"):
        rj.losses.mse(f32((5, 1)), f32((5, 1)), reduction="max")
    for bad in (3, -1):  # a target >= V gave NaN, -1 a number
        with pytest.raises(ValueError, match=r"targets: expected class ids in \[0, 3\), got "):
            rj.losses.softmax_cross_entropy(f32((2, 5, 3)), jnp.full((2, 5), bad, jnp.int32))
    # padding past each length may hold any id
    out = rj.losses.softmax_cross_entropy(f32((2, 5, 3)), jnp.array([[0, 1, 9, 9, 9], [2] * 5]), jnp.array([2, 5]))
    assert jnp.isfinite(out)
    with pytest.raises(ValueError, match="lengths: expected integers"):
        rj.losses.accuracy(f32((5, 3)), jnp.zeros((5,), jnp.int32), 2.5)


def test_token_errors(key):
    model = rj.many_to_many(rj.rnn(rj.gru(H)), 6, vocab_size=6, embed_size=3)
    params = model.init(key)
    for bad in (6, -1, 99):  # clamped to 5 by the gather before
        with pytest.raises(ValueError, match=rf"xs: expected token ids in \[0, 6\), got {bad}"):
            model.apply(params, jnp.array([[1, bad, 2]]))
    with pytest.raises(ValueError, match=r"prompt: expected token ids in \[0, 6\)"):
        model.generate(params, jnp.array([7]), max_len=3)
    with pytest.raises(ValueError, match="prompt: expected at least one token"):
        model.generate(params, jnp.zeros((0,), jnp.int32), max_len=3)
    with pytest.raises(ValueError, match="max_len: expected a positive int, got -2"):
        model.generate(params, jnp.array([1]), max_len=-2)
    with pytest.raises(ValueError, match="prompt_lengths: expected every prompt to hold at least one token"):
        model.generate(params, jnp.array([[1, 2], [3, 4]]), jnp.array([2, 0]), max_len=3)
    # padding past each length may hold any id (e.g. -1); it reaches neither outputs nor gradients
    padded = jnp.array([[1, 2, -1, 99], [3, 4, 5, 1]])
    lengths = jnp.array([2, 4])
    clean = padded.at[0, 2:].set(0)
    out, _ = model.apply(params, padded, lengths)
    np.testing.assert_array_equal(out, model.apply(params, clean, lengths)[0])
    g = jax.grad(lambda p, x: jnp.sum(model.apply(p, x, lengths)[0] ** 2))
    for a, b in zip(jax.tree_util.tree_leaves(g(params, padded)), jax.tree_util.tree_leaves(g(params, clean))):
        np.testing.assert_array_equal(a, b)
    onehot = rj.many_to_one(rj.rnn(rj.gru(H)), 2, vocab_size=4)
    with pytest.raises(ValueError, match=r"xs: expected token ids in \[0, 4\), got 10"):
        onehot.apply(onehot.init(key), jnp.array([10, 1]))
    err, _ = jax.jit(rj.checked(lambda p, x: model.apply(p, x)[0]))(params, jnp.array([[1, 9]]))
    with pytest.raises(Exception, match=r"xs: expected token ids in \[0, 6\)"):
        err.throw()


@pytest.mark.parametrize("make,match", [
    (lambda: rj.encoder_decoder(rj.rnn(rj.gru(4)), rj.gru(4), tgt_vocab=6, bos=9, eos=1, src_vocab=5),
     r"bos: expected a token id in \[0, 6\), got 9"),
    (lambda: rj.one_to_many(rj.gru(4), 3, vocab_size=6, bos=0, eos=-1), r"eos: expected a token id"),
    (lambda: rj.many_to_one(rj.rnn(rj.gru(4)), 0, input_size=3), "output_size: expected a positive int, got 0"),
    (lambda: rj.many_to_many(rj.rnn(rj.gru(4)), -2, input_size=3), "output_size: expected a positive int, got -2"),
    (lambda: rj.many_to_one(rj.rnn(rj.gru(4)), 2, vocab_size=0), "vocab_size: expected a positive int"),
    (lambda: rj.many_to_one(rj.gru(4), 2, input_size=3), "layer: expected an rnn_jax Layer"),
])
def test_model_construction_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_mismatched_params_name_what_is_wrong(key):
    layer = rj.stack(rj.rnn(rj.gru(H)), rj.rnn(rj.gru(H)))
    with pytest.raises(ValueError, match="params: do not match the cell/layer: expected structure"):
        layer.apply(rj.gru(H).init(key, I), f32((2, T, I)))  # was KeyError 'layers'
    model = rj.many_to_one(layer, 2, input_size=I)
    with pytest.raises(ValueError, match="params: do not match"):
        model.apply({"rnn": layer.init(key, I)}, f32((2, T, I)))


def test_checks_happen_at_trace_time_under_jit(lstm_layer):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match="feature size"):
        jax.jit(layer.apply)(params, f32((T, 7)))


def test_state_dict_keys_must_match_exactly():
    from rnn_jax.interop import from_torch_state_dict

    rng = np.random.default_rng(0)
    sd = {"weight_ih_l0": rng.standard_normal((12, 3)), "weight_hh_l0": rng.standard_normal((12, 4)),
          "bias_ih_l0": rng.standard_normal(12), "bias_hh_l0": rng.standard_normal(12)}
    from_torch_state_dict(sd, "GRU", 4)
    with pytest.raises(ValueError, match=r"state_dict: missing \['bias_hh_l0'\]"):
        from_torch_state_dict({k: v for k, v in sd.items() if k != "bias_hh_l0"}, "GRU", 4)
    with pytest.raises(ValueError, match=r"state_dict: unexpected \['weight_ih_l1'\]"):
        from_torch_state_dict(dict(sd, weight_ih_l1=sd["weight_ih_l0"]), "GRU", 4)
    no_bias = {k: v for k, v in sd.items() if k.startswith("weight")}
    _, p = from_torch_state_dict(no_bias, "GRU", 4, bias=False)  # a module built with bias=False
    assert not np.any(np.asarray(p["b_i"]))
    with pytest.raises(ValueError, match=r"state_dict\['W_h'\]: expected shape \(4, 12\), got \(5, 12\)"):
        from_torch_state_dict(dict(sd, weight_hh_l0=rng.standard_normal((12, 5))), "GRU", 4)


@pytest.mark.parametrize("argv,match", [
    (["--steps=-1"], "--steps: expected a positive int, got -1"),
    (["--batch_size=-3"], "--batch_size: expected a positive int, got -3"),
    (["--batch_size=0"], "--batch_size: expected a positive int, got 0"),
    (["--hidden=0"], "--hidden: expected a positive int, got 0"),
    (["--lr=nan"], "--lr: expected a finite number, got nan"),
    (["--cell4=lstm"], "--cell4: expected some of elman,jordan, got 'lstm'"),
    (["--resume=/nonexistent/run"], "--resume: /nonexistent/run is not a run folder"),
])
def test_bad_command_lines_exit_2_before_a_run_folder_is_made(argv, match, tmp_path, capsys):
    from experiments import bit_reverse

    with pytest.raises(SystemExit) as e:
        bit_reverse.main(argv + [f"--out={tmp_path}"])
    assert e.value.code == 2
    assert match in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # no run folder, not even a config.json


@pytest.mark.parametrize("module,argv,match", [
    ("sentiment", ["--dropout_words=1.5"], "--dropout_words: expected a number in [0, 1), got 1.5"),
    ("sentiment", ["--folds=1"], "--folds: expected 0 (one fixed split) or an int >= 3, got 1"),
    ("tagging", ["--max_sentences=-5"], "--max_sentences: expected an int >= 0, got -5"),
    ("long_range", ["--adding_T=0"], "--adding_T: expected ints >= 2, got 0"),
    ("long_range", ["--adding_T=50,-5"], "--adding_T: expected ints >= 2, got -5"),
    ("long_range", ["--clips=norm,foo"], "--clips: expected some of none,value,norm, got 'foo'"),
    ("generate", ["--levels=1"], "--levels: expected ints >= 2, got 1"),
    ("generate", ["--quick", "--temperatures=nan"], "--temperatures: expected finite numbers >= 0, got nan"),
    ("char_lm", ["--dropout=1"], "--dropout: expected a number in [0, 1), got 1.0"),
    ("char_lm", ["--temperatures=0.5,-1"], "--temperatures: expected finite numbers >= 0, got -1.0"),
])
def test_each_fields_domain_is_checked_before_a_run_folder_is_made(module, argv, match, tmp_path, capsys):
    import importlib

    with pytest.raises(SystemExit) as e:
        importlib.import_module(f"experiments.{module}").main(argv + [f"--out={tmp_path}"])
    assert e.value.code == 2
    assert match in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_zero_dropout_means_none_as_the_help_says(capsys):
    from experiments import _common, char_lm

    cfg, _ = _common.parse_config(char_lm.Config, ["--dropout=0"])
    assert cfg.dropout == 0
    with pytest.raises(SystemExit):
        _common.parse_config(char_lm.Config, ["--help"])
    assert "(0 = none) (default: 0.1; allowed: a number in [0, 1))" in " ".join(capsys.readouterr().out.split())


def test_a_shorter_resume_never_rewrites_a_finished_run(tmp_path, capsys):
    from experiments import bit_reverse

    res = run_main("experiments.bit_reverse", ["--quick", "--problems=1", "--steps=30", "--hidden=8", f"--out={tmp_path}"])
    run_dir = res["run_dir"]
    with open(os.path.join(run_dir, "results.json")) as f:
        before = f.read()
    with pytest.raises(SystemExit) as e:
        bit_reverse.main([f"--resume={run_dir}", "--steps=10"])
    assert e.value.code == 2 and "was started with steps=30; a resume may not shorten it" in capsys.readouterr().err
    with open(os.path.join(run_dir, "results.json")) as f:
        assert f.read() == before


def test_a_resume_with_changed_flags_is_refused_and_a_longer_one_recorded(tmp_path, capsys):
    import json

    from experiments import bit_reverse

    res = run_main("experiments.bit_reverse", ["--quick", "--problems=1", "--steps=20", "--hidden=8", f"--out={tmp_path}"])
    run_dir = res["run_dir"]
    with pytest.raises(SystemExit) as e:
        bit_reverse.main([f"--resume={run_dir}", "--steps=25", "--lr=0.5"])
    assert e.value.code == 2 and "--lr: the run in" in capsys.readouterr().err
    with open(os.path.join(run_dir, "config.json")) as f:
        assert json.load(f)["config"]["steps"] == 20  # a refused resume changes nothing
    bit_reverse.main([f"--resume={run_dir}", "--steps=25"])
    with open(os.path.join(run_dir, "config.json")) as f:
        config = json.load(f)
    assert config["config"]["steps"] == 25 and config["resumes"][0]["steps"] == [20, 25]
    assert "--steps=25" in config["command"]


def test_run_folders_are_unique(tmp_path):
    import argparse

    from experiments import _common, bit_reverse

    args = argparse.Namespace(resume=None, out=str(tmp_path), quick=True)
    cfg = bit_reverse.Config()
    a, b = _common.make_run_dir("x", cfg, args), _common.make_run_dir("x", cfg, args)  # the same second
    assert a != b and os.path.exists(os.path.join(a, "config.json")) and os.path.exists(os.path.join(b, "config.json"))


def test_a_mesh_that_does_not_split_a_batch_is_refused_before_a_run_folder(tmp_path, capsys, monkeypatch):
    import types

    from experiments import _common, bit_reverse

    four = types.SimpleNamespace(local_devices=[object()] * 4)  # a process with 4 devices on the data axis
    assert _common.mesh_batch_problem(four, {"--batch_size": 64}) is None
    assert _common.mesh_batch_problem(four, {"problem 1's batch": 2}) == (
        "--mesh: problem 1's batch 2 does not split over 1 process(es) x 4 device(s) each; choose a batch size "
        "divisible by 4")
    from rnn_jax import distributed

    monkeypatch.setattr(distributed, "make_mesh", lambda spec: four)
    with pytest.raises(SystemExit) as e:
        bit_reverse.main(["--mesh=data=4", f"--out={tmp_path}"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "problem 1's batch 2 does not split over 1 process(es) x 4 device(s)" in err and "leave it out" in err
    assert not any(tmp_path.iterdir())
    with pytest.raises(SystemExit):
        bit_reverse.main(["--mesh=data=4", "--batch_size=30", f"--out={tmp_path}"])
    assert "--mesh: --batch_size 30 does not split" in capsys.readouterr().err


BENCHMARKS_WITH_FLAGS = ("accelerator", "choices", "compile_time", "data_parallel", "deer", "experiment_steps", "generic_hoist",
                         "host_memory", "packing", "parallel_forms", "profile_step", "scaling", "step_product",
                         "throughput", "train_step")


@pytest.mark.parametrize("name", BENCHMARKS_WITH_FLAGS)
def test_every_benchmark_flag_says_what_it_takes(name, monkeypatch):
    """``--help`` of a benchmark explains each flag (its allowed values) and shows its default."""
    import importlib
    import argparse

    class Parsed(Exception):
        pass

    def grab(self, *args, **kwargs):
        raise Parsed(self)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", grab)
    with pytest.raises(Parsed) as e:
        importlib.import_module(f"benchmarks.{name}").main([])
    parser = e.value.args[0]
    assert parser.formatter_class is argparse.ArgumentDefaultsHelpFormatter
    for action in parser._actions:
        if action.dest == "help" or action.help == argparse.SUPPRESS:
            continue
        assert action.help and len(action.help) >= 10, (name, action.option_strings, action.help)
