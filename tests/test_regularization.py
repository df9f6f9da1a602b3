"""Dropout, variational recurrent dropout, zoneout and the layer-normalised cells: masks shared where
they must be, expectations over masks, evaluation (no key) equal to no regularisation, clear errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from rnn_jax import gradcheck

I, B, T = 3, 4, 6


def echo_cell(size):
    """Outputs its input: ``y_t = x_t`` (the state counts steps)."""
    return rj.Cell(lambda key, input_size, dtype=jnp.float32: {"w": jnp.zeros((input_size,), dtype)},
                   lambda dtype=jnp.float32: jnp.zeros((size,), dtype),
                   lambda p, h, x: (h + 1, x + p["w"]), output_size=size)


def counter_cell(size, tuple_state=False):
    """``h_t = h_{t-1} + 1``; the output is the state that entered the step (after recurrent dropout).
    With ``tuple_state`` the state is ``(h, c)`` and the output is ``c``'s entering value."""
    def init(key, input_size, dtype=jnp.float32):
        return {"w": jnp.zeros((input_size, size), dtype)}

    if tuple_state:
        return rj.Cell(init, lambda dtype=jnp.float32: (jnp.zeros((size,), dtype), jnp.zeros((size,), dtype)),
                       lambda p, s, x: ((s[0] + 1 + x @ p["w"], s[1] + 1), s[1]), output_size=size)
    return rj.Cell(init, lambda dtype=jnp.float32: jnp.zeros((size,), dtype),
                   lambda p, h, x: (h + 1 + x @ p["w"], h), output_size=size)


def test_dropout_function_is_inverted_shares_axes_and_keeps_the_expectation(key):
    x = jnp.arange(1.0, 7.0).reshape(2, 3)
    assert rj.dropout(None, x, 0.5) is x and rj.dropout(key, x, 0.0) is x
    y = rj.dropout(key, jnp.ones((64, 50, 8)), 0.25, shared_axes=(1,))
    vals = np.unique(np.asarray(y))
    np.testing.assert_allclose(vals, [0.0, 1 / 0.75])
    assert bool(jnp.all(y == y[:, :1]))  # one mask along the shared axis
    assert abs(float((y == 0).mean()) - 0.25) < 0.03
    means = jnp.mean(jax.vmap(lambda k: rj.dropout(k, x, 0.3))(jax.random.split(key, 20000)), 0)
    np.testing.assert_allclose(means, x, rtol=0.03)  # E[dropout(x)] = x


def test_input_dropout_is_one_mask_per_sequence_and_feature(key):
    layer = rj.rnn(echo_cell(I), dropout=0.4)
    params = layer.init(key, I, jnp.float64)
    xs = jnp.ones((64, T, I))
    ys, _ = layer.apply(params, xs, key=jax.random.key(3))
    assert bool(jnp.all(ys == ys[:, :1]))                       # shared across time
    assert len(np.unique(np.asarray(ys[:, 0]).round(6), axis=0)) > 1  # not across sequences
    np.testing.assert_allclose(np.unique(np.asarray(ys)), [0.0, 1 / 0.6], rtol=1e-6)
    np.testing.assert_array_equal(layer.apply(params, xs)[0], xs)  # evaluation: no dropout
    # padding stays zero, whatever the mask
    ys, _ = layer.apply(params, xs, jnp.array([6, 2, 0] + [6] * 61), key=jax.random.key(3))
    assert bool(jnp.all(ys[1, 2:] == 0)) and bool(jnp.all(ys[2] == 0))


@pytest.mark.parametrize("tuple_state", [False, True])
def test_recurrent_dropout_masks_the_hidden_vector_once_per_sequence(key, tuple_state):
    p = 0.5
    layer = rj.rnn(counter_cell(16, tuple_state), recurrent_dropout=p)
    params = layer.init(key, I, jnp.float64)
    xs = jnp.zeros((32, T, I))
    ys, _ = layer.apply(params, xs, key=jax.random.key(5))
    if tuple_state:  # the second leaf (an LSTM's c) is never dropped: it enters as 0, 1, 2, ...
        np.testing.assert_array_equal(ys, jnp.broadcast_to(jnp.arange(T, dtype=ys.dtype)[None, :, None], ys.shape))
        return
    m = ys[:, 1]  # y_1 = m * h_1 = m (h_1 = 1): the mask itself, in {0, 1 / (1 - p)}
    np.testing.assert_allclose(np.unique(np.asarray(m)), [0.0, 1 / (1 - p)])
    np.testing.assert_allclose(ys[:, 2], m * (m + 1), rtol=1e-12)  # y_2 = m * h_2 = m (m + 1): the same mask
    np.testing.assert_array_equal(layer.apply(params, xs)[0], jnp.broadcast_to(
        jnp.arange(T, dtype=ys.dtype)[None, :, None], ys.shape))  # evaluation: h enters undropped


def test_zoneout_keeps_units_and_its_expectation_is_the_evaluation(key):
    p, n = 0.3, 4000
    layer = rj.rnn(counter_cell(n), zoneout=p)
    params = layer.init(key, I, jnp.float64)
    xs = jnp.zeros((2, T, I))
    _, h_eval = layer.apply(params, xs)
    np.testing.assert_allclose(h_eval, T * (1 - p), rtol=1e-12)  # h = p h + (1 - p)(h + 1) at each step
    _, h_train = layer.apply(params, xs, key=jax.random.key(9))
    assert bool(jnp.all(h_train == jnp.round(h_train)))  # each step either kept (+0) or updated (+1)
    assert abs(float(h_train.mean()) - T * (1 - p)) < 0.05  # E over masks = the evaluation's state
    # past a sequence's length the state is frozen, zoneout or not; reversed layers too
    lengths = jnp.array([2, 0])
    for reverse in (False, True):
        lay = rj.rnn(counter_cell(8), zoneout=p, reverse=reverse)
        _, h = lay.apply(lay.init(key, I, jnp.float64), xs, lengths, key=jax.random.key(1))
        assert bool(jnp.all(h[1] == 0)) and bool(jnp.all(h[0] <= 2))


def test_stack_dropout_is_the_documented_mask_on_every_layers_outputs(key):
    p = 0.5
    deep = rj.stack(rj.rnn(echo_cell(I)), rj.rnn(echo_cell(I)), dropout=p)
    params = deep.init(key, I, jnp.float64)
    xs = jax.random.normal(key, (B, T, I))
    k = jax.random.key(11)
    ys, _ = deep.apply(params, xs, key=k)
    want = xs
    for i in range(2):
        keep = jax.random.bernoulli(jax.random.fold_in(k, i), 1 - p, (B, T, I))
        want = jnp.where(keep, want / (1 - p), 0)
    np.testing.assert_allclose(ys, want, rtol=1e-12)
    np.testing.assert_array_equal(deep.apply(params, xs)[0], xs)


def test_evaluation_equals_the_unregularised_model_and_training_differs(key):
    xs = jax.random.normal(key, (B, T, I))
    lengths = jnp.array([6, 3, 1, 0])
    plain = rj.many_to_one(rj.stack(rj.rnn(rj.lstm(5)), rj.rnn(rj.gru(5))), 2, input_size=I)
    reg = rj.many_to_one(rj.stack(rj.rnn(rj.lstm(5), dropout=0.3, recurrent_dropout=0.3),
                                  rj.rnn(rj.gru(5), dropout=0.2), dropout=0.5), 2, input_size=I)
    params = plain.init(key, jnp.float64)
    np.testing.assert_array_equal(reg.apply(params, xs, lengths), plain.apply(params, xs, lengths))
    a = reg.apply(params, xs, lengths, key=jax.random.key(1))
    b = reg.apply(params, xs, lengths, key=jax.random.key(2))
    assert not np.allclose(a, plain.apply(params, xs, lengths)) and not np.allclose(a, b)
    np.testing.assert_array_equal(a, reg.apply(params, xs, lengths, key=jax.random.key(1)))  # reproducible
    # gradients with dropout: finite, under jit, and vmapped over keys (seeds)
    def loss(p, k):
        return jnp.sum(reg.apply(p, xs, lengths, key=k) ** 2)
    g = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(params, jax.random.split(key, 3))
    assert all(bool(jnp.all(jnp.isfinite(leaf))) for leaf in jax.tree.leaves(g))


def test_many_to_many_and_encoder_decoder_take_a_key(key):
    lm = rj.many_to_many(rj.stack(rj.rnn(rj.gru(6)), dropout=0.5), 7, vocab_size=7, embed_size=4)
    params = lm.init(key)
    toks = jnp.array([[1, 2, 3, 4], [4, 3, 2, 1]])
    a, _ = lm.apply(params, toks)
    b, _ = lm.apply(params, toks, key=jax.random.key(0))
    assert a.shape == b.shape and not np.allclose(a, b)
    s2s = rj.encoder_decoder(rj.stack(rj.rnn(rj.gru(6)), dropout=0.5), rj.gru(6), tgt_vocab=7, bos=0, eos=1,
                             src_vocab=7)
    p2 = s2s.init(key)
    a = s2s.apply(p2, toks, None, toks)
    b = s2s.apply(p2, toks, None, toks, key=jax.random.key(0))
    assert a.shape == b.shape and not np.allclose(a, b)


def test_bad_rates_and_keys_raise_clear_errors(key):
    for kw in ({"dropout": 1.0}, {"dropout": -0.1}, {"recurrent_dropout": 1.5}, {"zoneout": float("nan")}):
        with pytest.raises(ValueError, match=list(kw)[0]):
            rj.rnn(rj.gru(4), **kw)
    with pytest.raises(ValueError, match="dropout"):
        rj.stack(rj.rnn(rj.gru(4)), dropout=1)
    with pytest.raises(ValueError, match="generic scan"):
        rj.rnn(rj.gru(4), zoneout=0.1, fused=True)
    with pytest.raises(ValueError, match="generic scan"):
        rj.rnn(rj.min_gru(4), recurrent_dropout=0.1, parallel="linear")
    layer = rj.rnn(rj.gru(4), dropout=0.1)
    params = layer.init(key, I, jnp.float64)
    with pytest.raises(ValueError, match="key: expected None"):
        layer.apply(params, jnp.zeros((2, T, I)), key=0)
    model = rj.many_to_one(layer, 2, input_size=I)
    with pytest.raises(ValueError, match="key: expected None"):
        model.apply(model.init(key, jnp.float64), jnp.zeros((2, T, I)), key=np.zeros(3, np.uint32))


def test_fused_cells_with_input_dropout_equal_the_generic_scan(key):
    xs = jax.random.normal(key, (B, T, I), jnp.float64)
    lengths = jnp.array([6, 3, 1, 0])
    for cell in (rj.lstm(5), rj.gru(5), rj.elman(5)):
        a = rj.rnn(cell, dropout=0.3)
        b = rj.rnn(cell, dropout=0.3, fused=False)
        params = a.init(key, I, jnp.float64)
        k = jax.random.key(4)
        np.testing.assert_allclose(a.apply(params, xs, lengths, key=k)[0], b.apply(params, xs, lengths, key=k)[0],
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("make", [rj.layer_norm_lstm, rj.layer_norm_gru])
def test_layer_norm_cells_are_scale_invariant_and_their_gradients_check(key, make):
    cell = make(5)
    params = cell.init(key, I, jnp.float64)
    xs = jax.random.normal(key, (2, T, I), jnp.float64)
    layer = rj.rnn(cell)
    ys, _ = layer.apply(params, xs)
    # invariant to the scale of either product (up to eps, here negligible)
    exact = rj.rnn(make(5, eps=1e-14))
    scaled = dict(params, W_i=3.0 * params["W_i"], W_h=0.25 * params["W_h"])
    np.testing.assert_allclose(exact.apply(scaled, xs)[0], exact.apply(params, xs)[0], rtol=1e-8, atol=1e-10)
    # normalisation is over the whole product: the pre-activations of one step have mean 0, variance 1
    z = rj.cells.layer_norm(xs[0, 0] @ params["W_i"], jnp.ones(params["W_i"].shape[1]))
    np.testing.assert_allclose([float(z.mean()), float(z.var())], [0.0, 1.0], atol=1e-4)

    def loss(p):
        return jnp.sum(jnp.sin(layer.apply(p, xs, jnp.array([6, 4]))[0]))

    report = gradcheck.check(loss, params, tol=1e-6)
    assert report.ok, str(report)


def test_streaming_a_zoneout_layer_equals_its_evaluation(key):
    layer = rj.rnn(rj.gru(5), zoneout=0.3, dropout=0.2, recurrent_dropout=0.2)
    params = layer.init(key, I, jnp.float64)
    xs = jax.random.normal(key, (B, T, I), jnp.float64)
    ys, final = layer.apply(params, xs)
    state = rj.stream_init(layer, (B,), jnp.float64)
    for t in range(T):
        state, y = rj.stream_step(layer, params, state, xs[:, t])
        np.testing.assert_allclose(y, ys[:, t], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state, final, rtol=1e-12, atol=1e-12)
    lm = rj.many_to_many(rj.stack(layer), 7, vocab_size=7, embed_size=I)
    toks, _ = lm.generate(lm.init(key, jnp.float64), jnp.array([[1, 2, 3]]), max_len=4)
    assert toks.shape == (1, 4)
