"""Values that bypass checks made for Python numbers: traced values, numpy scalars, empty axes, odd
dtypes. Each either works as documented (and equals the reference) or raises a ValueError naming the
argument."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from rnn_jax import losses

I, H, T, V = 3, 4, 6, 7


@pytest.fixture(scope="module")
def lstm_layer():
    layer = rj.rnn(rj.lstm(H), reverse=True)
    return layer, layer.init(jax.random.key(0), I)


def _xs(B=2, T=T):
    return jax.random.normal(jax.random.key(1), (B, T, I), jnp.float32)


# ---- lengths past T, traced: act as T (clamped once, at the edge) ---------------------------------

def test_traced_lengths_past_T_act_as_T_in_a_reversed_layer(lstm_layer):
    layer, P = lstm_layer
    xb = _xs()
    ys, fin = jax.jit(lambda x, L: layer.apply(P, x, L))(xb, jnp.array([9, -1]))
    ref_ys, ref_fin = layer.apply(P, xb, jnp.array([T, 0]))
    np.testing.assert_allclose(ys, ref_ys, atol=1e-6)
    np.testing.assert_allclose(fin.h, ref_fin.h, atol=1e-6)
    g = jax.jit(jax.grad(lambda x, L: layer.apply(P, x, L)[0].sum()))(xb, jnp.array([9, 2]))
    g_ref = jax.grad(lambda x: layer.apply(P, x, jnp.array([T, 2]))[0].sum())(xb)
    assert np.isfinite(g).all()
    np.testing.assert_allclose(g, g_ref, atol=1e-6)


def test_traced_lengths_past_T_in_bidirectional_and_last_readout():
    bi = rj.bidirectional(rj.rnn(rj.gru(H)), rj.rnn(rj.gru(H)))
    model = rj.many_to_one(bi, 2, input_size=I, readout="ends")
    p = model.init(jax.random.key(2))
    xb = _xs()
    out = jax.jit(model.apply)(p, xb, jnp.array([T + 3, 2]))
    np.testing.assert_allclose(out, model.apply(p, xb, jnp.array([T, 2])), atol=1e-6)
    last = rj.many_to_one(rj.rnn(rj.gru(H)), 2, input_size=I, readout="last")
    p = last.init(jax.random.key(3))
    np.testing.assert_allclose(jax.jit(last.apply)(p, xb, jnp.array([40, 2])),
                               last.apply(p, xb, jnp.array([T, 2])), atol=1e-6)


def test_traced_source_lengths_past_S_in_encoder_decoder():
    m = rj.encoder_decoder(rj.rnn(rj.gru(H)), rj.gru(H), tgt_vocab=V, bos=0, eos=1, src_vocab=V)
    p = m.init(jax.random.key(4))
    src = jnp.array([[2, 3, 4, 5], [3, 3, 3, 3], [6, 5, 4, 3]])
    tgt = jnp.zeros((3, 3), jnp.int32)
    a = jax.jit(m.apply)(p, src, jnp.array([4, 6, 1]), tgt)
    np.testing.assert_allclose(a, m.apply(p, src, jnp.array([4, 4, 1]), tgt), atol=1e-6)
    toks, n = jax.jit(lambda p, s, L: m.generate(p, s, L, max_len=5))(p, src, jnp.array([4, 6, 1]))
    ref_toks, ref_n = m.generate(p, src, jnp.array([4, 4, 1]), max_len=5)
    np.testing.assert_array_equal(toks, ref_toks)
    np.testing.assert_array_equal(n, ref_n)


def test_traced_lengths_outside_range_are_caught_by_checked(lstm_layer):
    layer, P = lstm_layer
    err, _ = jax.jit(rj.checked(lambda x, L: layer.apply(P, x, L)[0]))(_xs(), jnp.array([9, 1]))
    with pytest.raises(Exception, match=r"lengths: expected values in \[0, T\]"):
        err.throw()


def test_numpy_scalar_lengths_are_checked_like_python_ints(lstm_layer):
    layer, P = lstm_layer
    with pytest.raises(ValueError, match=r"lengths: expected values in \[0, T\] = \[0, 6\], got 9"):
        layer.apply(P, _xs(1, T)[0], np.int64(9))
    with pytest.raises(ValueError, match="lengths: expected integers, got"):
        layer.apply(P, _xs(1, T)[0], np.float32(2))
    with pytest.raises(ValueError, match="lengths: expected"):
        layer.apply(P, _xs(1, T)[0], np.bool_(True))


# ---- temperature, whatever its type --------------------------------------------------------------

@pytest.fixture(scope="module")
def lm():
    m = rj.many_to_many(rj.rnn(rj.gru(H)), V, vocab_size=V, embed_size=5)
    return m, m.init(jax.random.key(5))


@pytest.mark.parametrize("zero", [0, 0.0, np.float32(0), np.int64(0), jnp.array(0.0)], ids=repr)
def test_temperature_zero_is_greedy_whatever_its_type(lm, zero):
    m, p = lm
    prompt = jnp.array([[1, 2, 3], [4, 5, 6]])
    greedy = m.generate(p, prompt, max_len=6)
    got = m.generate(p, prompt, max_len=6, key=jax.random.key(0), temperature=zero)
    np.testing.assert_array_equal(got[0], greedy[0])


def test_traced_temperature_zero_is_greedy_and_positive_samples(lm):
    m, p = lm
    prompt = jnp.array([[1, 2, 3], [4, 5, 6]])
    gen = jax.jit(lambda t, k: m.generate(p, prompt, max_len=6, key=k, temperature=t))
    np.testing.assert_array_equal(gen(0.0, jax.random.key(0))[0], m.generate(p, prompt, max_len=6)[0])
    k = jax.random.key(3)
    np.testing.assert_array_equal(gen(0.7, k)[0], m.generate(p, prompt, max_len=6, key=k, temperature=0.7)[0])


@pytest.mark.parametrize("bad", [-1, np.float32(-1), jnp.array(-1.0), float("nan"), np.float64("inf"),
                                 jnp.array([1.0, 2.0]), "1", True], ids=repr)
def test_bad_concrete_temperatures_are_refused(lm, bad):
    m, p = lm
    with pytest.raises(ValueError, match="temperature: expected"):
        m.generate(p, jnp.array([[1, 2]]), max_len=3, key=jax.random.key(0), temperature=bad)


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_bad_traced_temperatures_are_caught_by_checked_and_write_no_token(lm, bad):
    m, p = lm
    gen = lambda t: m.generate(p, jnp.array([[1, 2]]), max_len=3, key=jax.random.key(0), temperature=t)  # noqa: E731
    err, (toks, _) = jax.jit(rj.checked(gen))(bad)
    with pytest.raises(Exception, match="temperature: expected"):
        err.throw()
    toks, _ = jax.jit(gen)(bad)
    assert (np.asarray(toks) == -1).all()  # documented: no valid token is written


def test_generate_refuses_an_empty_prompt_under_checked(lm):
    m, p = lm
    f = jax.jit(rj.checked(lambda L: m.generate(p, jnp.array([[1, 2], [3, 4]]), L, max_len=3)))
    err, _ = f(jnp.array([2, 0]))
    with pytest.raises(Exception, match="prompt_lengths: expected"):
        err.throw()
    err, _ = f(jnp.array([2, 1]))
    err.throw()


# ---- empty axes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("readout", ["last", "mean", "max", "ends"])
def test_many_to_one_on_empty_sequences_reads_zeros(readout):
    m = rj.many_to_one(rj.rnn(rj.gru(H)), 2, vocab_size=V, readout=readout)
    p = m.init(jax.random.key(6))
    out = m.apply(p, jnp.zeros((2, 0), jnp.int32))
    assert out.shape == (2, 2)
    # an empty sequence reads as a sequence of length 0: the head's bias alone
    np.testing.assert_allclose(out, jnp.broadcast_to(p["head"]["b"], (2, 2)))
    np.testing.assert_allclose(out, m.apply(p, jnp.zeros((2, 3), jnp.int32), jnp.array([0, 0])), atol=1e-7)
    assert m.apply(p, jnp.zeros((0, 5), jnp.int32)).shape == (0, 2)


def test_encoder_decoder_with_empty_source_target_and_batch():
    m = rj.encoder_decoder(rj.rnn(rj.gru(H)), rj.gru(H), tgt_vocab=V, bos=0, eos=1, src_vocab=V)
    p = m.init(jax.random.key(7))
    empty_src = jnp.zeros((2, 0), jnp.int32)
    tgt = jnp.zeros((2, 3), jnp.int32)
    np.testing.assert_allclose(m.apply(p, empty_src, None, tgt),
                               m.apply(p, jnp.zeros((2, 4), jnp.int32), jnp.array([0, 0]), tgt), atol=1e-6)
    assert m.apply(p, jnp.ones((2, 4), jnp.int32), None, jnp.zeros((2, 0), jnp.int32)).shape == (2, 0, V)
    toks, n = m.generate(p, empty_src, max_len=4)
    assert toks.shape == (2, 4) and n.shape == (2,)
    toks, n = m.generate(p, jnp.zeros((0, 4), jnp.int32), max_len=4)
    assert toks.shape == (0, 4) and n.shape == (0,)


def test_language_model_generate_on_an_empty_batch(lm):
    m, p = lm
    toks, n = m.generate(p, jnp.zeros((0, 3), jnp.int32), max_len=4, key=jax.random.key(0))
    assert toks.shape == (0, 4) and n.shape == (0,)


# ---- single spots -------------------------------------------------------------------------------

def test_mean_reduction_counts_in_float32_for_half_precision():
    logits = jnp.zeros((1, 70000, 2), jnp.float16)
    ce = losses.softmax_cross_entropy(logits, jnp.zeros((1, 70000), jnp.int32), reduction="mean")
    np.testing.assert_allclose(float(ce), np.log(2), rtol=1e-3)
    s = losses.softmax_cross_entropy(logits, jnp.zeros((1, 70000), jnp.int32), reduction="sum")
    np.testing.assert_allclose(float(s), 70000 * np.log(2), rtol=1e-3)  # float16 overflows at 65504


def test_unroll_reduce_padding_targets_are_inert():
    cell = rj.elman(H)
    p = cell.init(jax.random.key(8), I, jnp.float64)
    xs = jax.random.normal(jax.random.key(9), (2, T, I), jnp.float64)
    L = jnp.array([4, 6])
    tgt = jnp.ones((2, T, H), jnp.float64)
    nan_tgt = tgt.at[0, 4:].set(jnp.nan)
    f = lambda p, t: rj.unroll_reduce(cell, p, xs, lambda y, g: jnp.sum((y - g) ** 2), targets=t, lengths=L)[0]  # noqa: E731
    g_nan, g = jax.grad(f)(p, nan_tgt), jax.grad(f)(p, tgt)
    assert np.isfinite(float(f(p, nan_tgt)))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12), g_nan, g)


def test_unroll_reduce_accumulates_half_precision_in_float32():
    cell = rj.elman(H)
    p = jax.tree.map(lambda a: a.astype(jnp.float16), cell.init(jax.random.key(8), I))
    xs = jnp.ones((1, 3000, I), jnp.float16)
    total, _ = rj.unroll_reduce(cell, p, xs, lambda y, g: jnp.float16(30.0))
    assert total.dtype == jnp.float32
    np.testing.assert_allclose(float(total), 90000.0)


def test_orthogonal_cell_refuses_an_infinite_bias_bound():
    with pytest.raises(ValueError, match="bias_bound: expected a finite number"):
        rj.orthogonal_rnn(4, bias_bound=float("inf"))
    with pytest.raises(ValueError, match="bias_bound: expected a finite number"):
        rj.orthogonal_rnn(4, bias_bound=np.float32("nan"))


@pytest.mark.parametrize("bad", ["a", None, float("nan"), True])
def test_lstm_forget_bias_must_be_a_finite_number(bad):
    with pytest.raises(ValueError, match="forget_bias: expected a finite number"):
        rj.lstm(4, forget_bias=bad)
    rj.lstm(4, forget_bias=np.float32(2.0))  # numpy numbers are numbers


def test_stream_step_refuses_integer_inputs():
    layer = rj.rnn(rj.gru(H))
    p = layer.init(jax.random.key(0), I)
    with pytest.raises(ValueError, match="x: expected a floating dtype, got int"):
        rj.stream_step(layer, p, rj.stream_init(layer, (2,)), jnp.ones((2, I), jnp.int32))
