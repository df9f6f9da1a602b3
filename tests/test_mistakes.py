"""Mistakes a researcher makes, each answered by a message that names the argument and what to write.

Each case here passed silently or met a JAX or numpy message before; the property tests run over the
classes of values (rates, keys, what a user's function returns).
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rnn_jax as rj
from rnn_jax import train


@pytest.fixture(scope="module")
def setup():
    m = rj.many_to_one(rj.rnn(rj.gru(4)), 1, input_size=2)
    p = m.init(jax.random.key(0))
    xs, ys = jnp.ones((3, 5, 2), jnp.float32), jnp.ones((3, 1), jnp.float32)
    return m, p, xs, ys, train.optimizer("adam", 1e-2)


def _mse(m):
    return lambda p, b: jnp.mean((m.apply(p, b[0]) - b[1]) ** 2)


def test_bidirectional_refuses_a_backward_layer_built_reversed():
    c = rj.gru(4)
    with pytest.raises(ValueError, match=r"bwd: .*already reads backwards.*rnn_jax.bidirectional\(rnn_jax.rnn\(cell\), "
                                         r"rnn_jax.rnn\(cell\)\)"):
        rj.bidirectional(rj.rnn(c), rj.rnn(c, reverse=True))
    with pytest.raises(ValueError, match="bwd: "):  # a bidirectional layer reads backwards too
        rj.bidirectional(rj.rnn(c), rj.bidirectional(rj.rnn(c), rj.rnn(c)))
    bi = rj.bidirectional(rj.rnn(c), rj.rnn(c))
    assert bi.reads_backward and not rj.rnn(c).reads_backward and rj.rnn(c, reverse=True).reads_backward


def test_fit_names_a_loss_fn_that_returns_a_bare_loss(setup):
    m, p, xs, ys, tx = setup
    with pytest.raises(ValueError, match=r"loss_fn: expected it to return \(loss, aux dict\), e.g. \(loss, \{\}\), "
                                         r"got an array float32\[\]"):
        train.fit(_mse(m), p, tx, lambda s: (xs, ys), 2, progress=False)


def test_fit_names_a_loss_fn_that_returns_a_vector(setup):
    m, p, xs, ys, tx = setup
    with pytest.raises(ValueError, match=r"loss_fn: expected a scalar loss .* got an array float\d+\[3\]"):
        train.fit(lambda p, b: (jnp.ones(3) * p["head"]["b"][0], {}), p, tx, lambda s: (xs, ys), 2, progress=False)


def test_fit_says_what_batch_fn_returned_when_loss_fn_fails_on_it(setup):
    m, p, xs, ys, tx = setup
    loss = lambda p, b: (_mse(m)(p, b), {})  # noqa: E731  (it indexes the batch: b[0])
    with pytest.raises(ValueError, match=r"loss_fn: calling it on batch_fn\(0\) = dict \{'x': 'float32\[3, 5, 2\]'"):
        train.fit(loss, p, tx, lambda s: {"x": xs, "y": ys}, 2, progress=False)


@pytest.mark.parametrize("batch,said", [(None, r"loss_fn: calling it on batch_fn\(0\) = None raised TypeError"),
                                        ("text", r"batch_fn: expected batch_fn\(0\) to return a batch"),
                                        ((), r"loss_fn: calling it on batch_fn\(0\) = tuple \(\) raised IndexError"),
                                        (("a", "b"), r"batch_fn: expected batch_fn\(0\) to return a batch")])
def test_fit_names_a_batch_that_is_no_batch(setup, batch, said):
    m, p, xs, ys, tx = setup
    with pytest.raises(ValueError, match=said):
        train.fit(lambda p, b: (_mse(m)(p, b), {}), p, tx, lambda s: batch, 2, progress=False)


@pytest.mark.parametrize("kw", ["key", "carry"])
def test_fit_refuses_key_or_carry_for_a_loss_fn_without_that_keyword(setup, kw):
    m, p, xs, ys, tx = setup
    value = jax.random.key(0) if kw == "key" else jnp.zeros(3)
    with pytest.raises(ValueError, match=rf"loss_fn: fit\({kw}=...\) calls loss_fn\(params, batch, {kw}=...\), but "
                                         rf"loss_fn takes no '{kw}' argument"):
        train.fit(lambda p, b: (_mse(m)(p, b), {}), p, tx, lambda s: (xs, ys), 2, progress=False, **{kw: value})


@pytest.mark.parametrize("returned", ["good", 0.5, [("loss", 1.0)], {"loss": "low"}])
def test_fit_names_an_eval_fn_that_returns_no_metrics(setup, returned):
    m, p, xs, ys, tx = setup
    with pytest.raises(ValueError, match="eval_fn: expected"):
        train.fit(lambda p, b: (_mse(m)(p, b), {}), p, tx, lambda s: (xs, ys), 2, progress=False,
                  eval_fn=lambda p: returned, eval_every=1)


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), -1.0, 0.0])
def test_optimizer_refuses_a_learning_rate_that_is_not_finite_and_positive(lr):
    with pytest.raises(ValueError, match="lr: expected a finite positive number"):
        train.optimizer("adam", lr)


@settings(max_examples=30, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-3, 3)))
def test_dropout_takes_the_rates_every_layer_takes(rate):
    """One domain for every dropout entry point: ``rj.dropout`` refuses what ``rnn(dropout=)`` refuses."""
    x = jnp.ones((2, 3))
    layer_ok = True
    try:
        rj.rnn(rj.gru(3), dropout=rate)
    except ValueError:
        layer_ok = False
    try:
        y = rj.dropout(jax.random.key(0), x, rate)
    except ValueError as e:
        assert not layer_ok and str(e).startswith("rate: expected")
    else:
        assert layer_ok and 0 <= rate < 1
        assert set(np.unique(np.asarray(y)).tolist()) <= {0.0, 1 / (1 - rate)}


@settings(max_examples=20, deadline=None)
@given(st.one_of(st.integers(-5, 2 ** 40), st.none(), st.floats(allow_nan=False), st.text(max_size=3)))
def test_init_refuses_every_key_that_is_no_key(key):
    for init in (lambda k: rj.rnn(rj.lstm(3)).init(k, 2), lambda k: rj.many_to_one(rj.rnn(rj.lstm(3)), 1,
                                                                                    input_size=2).init(k)):
        with pytest.raises(ValueError, match="key: expected a jax.random.key"):
            init(key)


def test_fit_prints_plain_progress_lines_when_stderr_is_not_a_terminal(setup, capsys, monkeypatch):
    m, p, xs, ys, tx = setup
    monkeypatch.setattr(rj.callbacks, "PLAIN_PROGRESS_EVERY_S", 0.0)  # a line at every update
    train.fit(lambda p, b: (_mse(m)(p, b), {}), p, tx, lambda s: (xs, ys), 4, log_every=2)
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("train: step 4/4 (100 %), loss ")
    assert any("steps/s, ETA" in line for line in lines) and len(lines) >= 4


def test_fit_refuses_an_unknown_progress_setting(setup):
    m, p, xs, ys, tx = setup
    with pytest.raises(ValueError, match="progress: expected True, False, 'force' or 'plain', got 'yes'"):
        train.fit(lambda p, b: (_mse(m)(p, b), {}), p, tx, lambda s: (xs, ys), 2, progress="yes")


def test_gradcheck_command_line_takes_a_users_cell(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "mycells.py").write_text("import rnn_jax as rj\n\ndef cifg(hidden):\n    return rj.lstm(hidden)\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    run = lambda *a: subprocess.run([sys.executable, "-m", "rnn_jax.gradcheck", *a], cwd=tmp_path, env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    ok = run("--cell", "mycells:cifg", "--steps", "3")
    assert ok.returncode == 0 and "(OK, tol 1e-06)" in ok.stdout, ok.stderr[-2000:]
    for args, said in ((["--cell", "mycells:missing"], "cannot import missing from mycells"),
                       (["--cell", "lstm", "--activation", "relu"], "--activation is the Elman cell's"),
                       (["--tol", "nan"], "--tol must be a finite positive number")):
        bad = run(*args)
        assert bad.returncode == 2 and said in bad.stderr, bad.stderr[-2000:]


def _eager_and_checked(fn, *args):
    """The message of ``fn(*args)`` run eagerly, and of the same call under ``jit`` inside ``rj.checked``."""
    with pytest.raises(ValueError) as eager:
        fn(*args)
    err, _ = jax.jit(rj.checked(fn))(*args)
    with pytest.raises(Exception) as checked:
        err.throw()
    return str(eager.value).splitlines()[0], str(checked.value).splitlines()[0]


def test_checked_mode_reports_the_offending_value_as_the_eager_check_does():
    layer = rj.rnn(rj.gru(4))
    p = layer.init(jax.random.key(0), 3)
    eager, checked = _eager_and_checked(lambda p, x, n: layer.apply(p, x, n)[0], p, jnp.ones((3, 20, 3), jnp.float32),
                                        jnp.array([5, 25, 3]))
    assert eager == "lengths: expected values in [0, T] = [0, 20], got 25 at index (1,)"
    assert checked.startswith(eager)
    m = rj.many_to_one(rj.rnn(rj.gru(4)), 3, vocab_size=5)
    pm = m.init(jax.random.key(0))
    eager, checked = _eager_and_checked(m.apply, pm, jnp.array([[1, 2, 3], [4, 9, 0]]))
    assert eager == "xs: expected token ids in [0, 5), got 9 at index (1, 1)" and checked.startswith(eager)
    eager, checked = _eager_and_checked(lambda lg, y: rj.losses.softmax_cross_entropy(lg, y), jnp.zeros((2, 4, 3)),
                                        jnp.array([[0, 1, 2, 1], [2, 3, 0, 0]]))
    assert eager.endswith("got 3 at index (1, 1)") and checked.startswith(eager)


@pytest.mark.parametrize("make", [rj.layer_norm_lstm, rj.layer_norm_gru])
def test_layer_norm_cells_refuse_a_zero_eps(make):
    with pytest.raises(ValueError, match=r"eps: expected a finite number > 0 .* got 0.0"):
        make(4, eps=0.0)
    ys, _ = rj.rnn(make(4, eps=1e-5)).apply(rj.rnn(make(4)).init(jax.random.key(0), 3), jnp.ones((1, 3, 3), jnp.float32))
    assert bool(jnp.all(jnp.isfinite(ys)))


@settings(max_examples=15, deadline=None)
@given(st.floats(min_value=1e-45, max_value=1e-3))
def test_a_tiny_temperature_samples_the_greedy_token(t):
    """(logits - max) / t never overflows: a temperature near 0 gives the greedy token, not token 0."""
    from rnn_jax.models import _pick

    logits = jnp.array([[0.5, 3.0, -1.0, 2.0], [9.0, -2.0, 10.0, 0.0]], jnp.float32)
    assert _pick(jax.random.key(1), logits, float(t)).tolist() == [1, 2]


def _gru_with_kernel(transform):
    """A GRU whose ``fused`` is the built-in kernel with its result passed through ``transform``."""
    base = rj.gru(4)

    def fused(params, xs, h0, mask, **kw):
        return transform(*base.fused(params, xs, h0, mask, **kw))

    return base._replace(fused=fused)


@pytest.mark.parametrize("transform,said", [
    (lambda ys, h: (jnp.concatenate([ys, ys], -1), h), r"outputs of shape \(6, 2, 8\), expected \(T, B, output_size\) = \(6, 2, 4\)"),
    (lambda ys, h: (ys, h[:, :2]), r"a final state \(2, 2\), expected .* \(2, 4\)"),
    (lambda ys, h: (ys, (h, h)), r"a final state"),
])
def test_a_users_kernel_is_checked_against_the_cells_sizes(transform, said):
    cell = _gru_with_kernel(transform)
    layer = rj.rnn(cell)
    p = layer.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="gru: its fused kernel returned " + said):
        layer.apply(p, jnp.ones((2, 6, 3), jnp.float32))


def test_a_users_kernel_without_pack_runs_under_pack_false():
    base = rj.gru(4)

    def fused(params, xs, h0, mask, *, unroll=1, hoist="auto", rule="vjp", static=None):  # no pack
        return base.fused(params, xs, h0, mask, unroll=unroll, hoist=hoist, rule=rule, static=static)

    cell = base._replace(fused=fused)
    p = rj.rnn(cell).init(jax.random.key(0), 3)
    x = jnp.ones((2, 6, 3), jnp.float32)
    np.testing.assert_allclose(rj.rnn(cell, pack=False).apply(p, x)[0], rj.rnn(base).apply(p, x)[0], rtol=1e-6)


def test_generate_under_jit_closing_over_concrete_lengths():
    m = rj.many_to_many(rj.rnn(rj.gru(8)), 5, vocab_size=5)
    p = m.init(jax.random.key(0))
    prompt, lengths = jnp.array([[1, 2, 3], [2, 3, 0]]), jnp.array([3, 2])
    eager = m.generate(p, prompt, lengths, max_len=4)[0]
    for n in (lengths, np.array([3, 2])):
        assert (jax.jit(lambda p, prompt, n=n: m.generate(p, prompt, n, max_len=4))(p, prompt)[0] == eager).all()


def test_resume_refuses_a_damaged_metrics_line_with_rows_after_it(setup, tmp_path, capsys):
    m, p, xs, ys, tx = setup
    loss = lambda p, b: (_mse(m)(p, b), {})  # noqa: E731
    run = tmp_path / "run"
    train.fit(loss, p, tx, lambda s: (xs, ys), 4, run_dir=str(run), log_every=1, checkpoint_every=2, progress=False)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    damaged = lines[:1] + ['{"step": 2, "loss": 0.1'] + lines[2:]
    metrics.write_text("\n".join(damaged) + "\n")
    with pytest.raises(ValueError, match=r"resume: line 2 of .*metrics.jsonl is damaged .* rows follow it; nothing was "
                                         r"changed"):
        train.fit(loss, p, tx, lambda s: (xs, ys), 6, run_dir=str(run), resume=True, progress=False)
    assert metrics.read_text().splitlines() == damaged  # kept as it was
    metrics.write_text("\n".join(lines + ['{"step": 5, "lo']) + "\n")  # a torn last line: dropped, said so
    res = train.fit(loss, p, tx, lambda s: (xs, ys), 6, run_dir=str(run), resume=True, progress=False)
    assert res.status == "done" and "its last line was torn" in capsys.readouterr().err


def _scan_and_parallel(cell, method, xs, lengths=None):
    layer, par = rj.rnn(cell), rj.rnn(cell, parallel=method)
    p = layer.init(jax.random.key(0), xs.shape[-1], xs.dtype)
    return p, layer.apply(p, xs, lengths), par.apply(p, xs, lengths), par.parallel_info(p, xs, lengths)


@pytest.mark.parametrize("make,method", [(lambda: rj.elman(4), "newton"), (lambda: rj.elman(4), "diagonal"),
                                         (lambda: rj.min_gru(4), "newton"), (lambda: rj.indrnn(4), "diagonal")])
def test_parallel_solves_propagate_a_nan_input_as_the_scan_does(make, method):
    xs = jax.random.normal(jax.random.key(1), (2, 9, 3)).at[0, 4, 1].set(jnp.nan)
    _, (ys, _), (yp, _), info = _scan_and_parallel(make(), method, xs)
    assert bool(jnp.isnan(ys[0, 4:]).any(axis=-1).all())               # the scan: NaN from step 4 on
    np.testing.assert_array_equal(np.isnan(yp), np.isnan(ys))          # the solve: the same
    assert info.converged.tolist() == [False, True]                    # and it says so
    np.testing.assert_allclose(yp[1], ys[1], rtol=1e-6, atol=1e-8)


def test_parallel_solve_of_an_overflowing_relu_recurrence_is_the_scans_answer():
    cell = rj.elman(4, "relu", recurrent_init=rj.initializers.identity(1e30))
    xs = jnp.full((1, 12, 3), 1e3)
    _, (ys, _), (yp, _), info = _scan_and_parallel(cell, "newton", xs)
    assert not bool(jnp.isfinite(ys).all())
    np.testing.assert_array_equal(np.asarray(yp), np.asarray(ys))
    assert not bool(info.converged[0])


@pytest.mark.parametrize("method", ["newton", "diagonal"])
def test_parallel_solves_run_for_complex_states_empty_sequences_and_checked_mode(method):
    xs = jax.random.normal(jax.random.key(2), (2, 6, 3))
    _, (ys, hs), (yp, hp), info = _scan_and_parallel(rj.lru(4), method, xs)          # a complex state
    np.testing.assert_allclose(yp, ys, rtol=1e-4, atol=1e-5)
    assert hp.dtype == hs.dtype and bool(info.converged.all())
    _, (ys0, _), (yp0, _), info0 = _scan_and_parallel(rj.elman(4), method, jnp.zeros((2, 0, 3)))  # T = 0
    assert yp0.shape == ys0.shape == (2, 0, 4) and bool(info0.converged.all())
    layer = rj.rnn(rj.elman(4), parallel=method)
    p = layer.init(jax.random.key(0), 3, xs.dtype)
    err, (yc, _) = jax.jit(rj.checked(lambda p, x: layer.apply(p, x, jnp.array([6, 4]))))(p, xs)
    err.throw()  # valid inputs: no error
    np.testing.assert_allclose(yc, layer.apply(p, xs, jnp.array([6, 4]))[0], rtol=1e-6)


def test_the_complex_state_lru_works_as_a_decoder():
    m = rj.encoder_decoder(rj.rnn(rj.gru(8)), rj.lru(8), tgt_vocab=5, bos=0, eos=4, src_vocab=6)
    p = m.init(jax.random.key(0))
    src, tgt = jnp.array([[1, 2, 3], [2, 3, 5]]), jnp.array([[1, 2], [3, 1]])
    logits = m.apply(p, src, None, tgt)
    assert logits.shape == (2, 2, 5) and logits.dtype == jnp.float32
    g = jax.grad(lambda p: jnp.sum(m.apply(p, src, None, tgt) ** 2))(p)
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(g))
    assert m.generate(p, src, max_len=3)[0].shape == (2, 3)
    g2m = rj.one_to_many(rj.lru(8), 3, vocab_size=5, bos=0, eos=4)
    pg = g2m.init(jax.random.key(0))
    assert g2m.generate(pg, jnp.ones((2, 3), jnp.float32), max_len=4)[0].shape == (2, 4)
    assert g2m.apply(pg, jnp.ones((2, 3), jnp.float32), jnp.array([[1, 2], [3, 1]])).shape == (2, 2, 5)


def test_the_messages_the_guide_quotes_are_the_messages_the_code_gives():
    import os
    import re

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "docs", "guide.md"), encoding="utf-8") as f:
        quoted = set(re.findall(r"`([^`]+: expected [^`]+)`", f.read()))
    layer = rj.rnn(rj.gru(4))
    p = layer.init(jax.random.key(0), 3)
    x5 = jnp.ones((2, 5, 3), jnp.float32)
    m = rj.many_to_one(rj.rnn(rj.gru(4)), 2, vocab_size=6)
    pm = m.init(jax.random.key(0))
    gen = rj.many_to_many(rj.rnn(rj.gru(4)), 6, vocab_size=6)
    cases = {
        "lengths: expected values in [0, T] = [0, 5], got 9 at index (1,)": lambda: layer.apply(p, x5, jnp.array([5, 9])),
        "xs: expected token ids in [0, 6), got 99 at index (0, 1)": lambda: m.apply(pm, jnp.array([[1, 99, 2], [0, 1, 2]])),
        "bos: expected a token id in [0, 6), got 9": lambda: rj.one_to_many(rj.gru(4), 3, vocab_size=6, bos=9, eos=1),
        "forget_bias: expected a finite number, got 'a'": lambda: rj.lstm(4, forget_bias="a"),
        "temperature: expected a finite number >= 0, got np.float32(-1.0)":
            lambda: gen.generate(gen.init(jax.random.key(0)), jnp.array([[1, 2]]), max_len=2, key=jax.random.key(0),
                                 temperature=np.float32(-1.0)),
    }
    checked = 0
    for message, make in cases.items():
        if message not in quoted:
            continue
        with pytest.raises(ValueError) as e:
            make()
        assert str(e.value).splitlines()[0] == message
        checked += 1
    assert checked >= 4, quoted


def test_linear_solver_without_the_linear_form_is_refused():
    with pytest.raises(ValueError, match=r"linear_solver='scan': the solver of parallel='linear' only"):
        rj.rnn(rj.min_gru(4), linear_solver="scan")
    rj.rnn(rj.min_gru(4), parallel="linear", linear_solver="scan")  # with it: taken


def test_sweep_names_an_unknown_or_non_numeric_hyperparameter(setup):
    m, p, xs, ys, tx = setup
    args = (lambda p, b: (_mse(m)(p, b), {}), m.init, optax_adam(), )
    with pytest.raises(ValueError, match=r"settings: \['lr'\] are not arguments of optimizer_fn"):
        train.sweep(args[0], m.init, args[2], [{"lr": 1e-3}], 1, lambda s: (xs, ys), 2)
    with pytest.raises(ValueError, match=r"settings\[0\]\['learning_rate'\]: expected a finite number, got nan"):
        train.sweep(args[0], m.init, args[2], [{"learning_rate": float("nan")}], 1, lambda s: (xs, ys), 2)


def optax_adam():
    import optax

    return optax.adam


def test_fit_names_a_carry_whose_shape_changes(setup):
    m, p, xs, ys, tx = setup

    def loss(p, b, carry):
        return _mse(m)(p, b), ({}, jnp.concatenate([carry, carry]))

    with pytest.raises(ValueError, match=r"loss_fn: the new carry it returned \(an array float32\[6\]\) differs"):
        train.fit(loss, p, tx, lambda s: (xs, ys), 2, carry=jnp.zeros(3, jnp.float32), progress=False)


def test_stream_step_blames_the_input_not_the_params():
    layer = rj.rnn(rj.gru(4))
    p = layer.init(jax.random.key(0), 2)
    state = rj.stream_init(layer, (3,))
    with pytest.raises(ValueError, match=r"^x: expected shape \(\*batch, 2\) \(feature size 2, from params\), got \(3, 5\)"):
        rj.stream_step(layer, p, state, jnp.ones((3, 5), jnp.float32))


def test_generate_without_max_len_says_what_to_write():
    lm = rj.many_to_many(rj.rnn(rj.gru(4)), 5, vocab_size=5)
    p = lm.init(jax.random.key(0))
    with pytest.raises(ValueError, match=r"max_len: generate writes max_len tokens .* max_len=50\); got none"):
        lm.generate(p, jnp.array([[1, 2]]))
