import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from conftest import perturb
from reference import loop_unroll

I, H, T = 4, 5, 8


def _xs(key, dtype=jnp.float64):
    return jax.random.normal(key, (T, I), dtype)


@pytest.mark.parametrize("merge,fn", [("concat", lambda a, b: np.concatenate([a, b], -1)), ("sum", np.add),
                                      ("mean", lambda a, b: (a + b) / 2), ("mul", np.multiply)])
def test_bidirectional_merges_forward_and_reversed(merge, fn, key):
    fwd, bwd = rj.rnn(rj.lstm(H)), rj.rnn(rj.gru(H))
    layer = rj.bidirectional(fwd, bwd, merge)
    params = perturb(layer.init(key, I, jnp.float64), key)
    xs = _xs(key)
    L = 6
    ys, (fin_f, fin_b) = layer.apply(params, xs, L)
    yf, ff = loop_unroll(rj.lstm(H), params["fwd"], xs, L)
    yb, fb = loop_unroll(rj.gru(H), params["bwd"], xs, L, reverse=True)
    np.testing.assert_allclose(ys, fn(np.asarray(yf), np.asarray(yb)), rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(fin_b, fb, rtol=1e-13)
    np.testing.assert_allclose(fin_f.h, ff.h, rtol=1e-13)
    assert layer.output_size == (2 * H if merge == "concat" else H)
    assert not np.asarray(ys[L:]).any()


@pytest.mark.parametrize("skip", [None, "residual", "highway"])
def test_stack_connections(skip, key):
    layers = [rj.rnn(rj.gru(H)), rj.rnn(rj.elman(H)), rj.rnn(rj.lstm(H))]
    layer = rj.stack(*layers, skip=skip)
    params = perturb(layer.init(key, I, jnp.float64), key)
    xs = _xs(key)
    L = 5
    ys, finals = layer.apply(params, xs, L)
    h = xs
    for i, (sub, p) in enumerate(zip(layers, params["layers"])):
        y, _ = sub.apply(p, h, L)
        if i and skip == "residual":
            y = y + h
        elif i and skip == "highway":
            g = jax.nn.sigmoid(h @ params["gates"][i - 1]["W"] + params["gates"][i - 1]["b"][None, :])
            y = g * y + (1 - g) * h
        h = y
    np.testing.assert_allclose(ys, h, rtol=1e-13)
    assert len(finals) == 3
    assert len(params["gates"]) == (2 if skip == "highway" else 0)
    assert not np.asarray(ys[L:]).any()


def test_highway_gate_starts_mostly_carrying(key):
    layer = rj.stack(rj.rnn(rj.gru(H)), rj.rnn(rj.gru(H)), skip="highway", highway_bias=-2.0)
    params = layer.init(key, I)
    np.testing.assert_array_equal(params["gates"][0]["b"], -2.0)


def test_deep_bidirectional_stack(key):
    bi = lambda: rj.bidirectional(rj.rnn(rj.lstm(H)), rj.rnn(rj.lstm(H)))  # noqa: E731
    layer = rj.stack(bi(), bi(), bi(), skip="residual")
    params = layer.init(key, I, jnp.float64)
    ys, finals = layer.apply(params, _xs(key), 7)
    assert ys.shape == (T, 2 * H) and len(finals) == 3 and len(finals[0]) == 2


@pytest.mark.parametrize("make", [
    lambda: rj.rnn(rj.lstm(H)),
    lambda: rj.rnn(rj.jordan(H, 3)),
    lambda: rj.stack(rj.rnn(rj.gru(H)), rj.rnn(rj.elman(H)), skip="highway"),
    lambda: rj.stack(rj.rnn(rj.lstm(H)), rj.rnn(rj.lstm(H)), skip="residual"),
])
def test_streaming_equals_offline(make, key):
    layer = make()
    params = perturb(layer.init(key, I, jnp.float64), key)
    xs = _xs(key)
    ys, final = layer.apply(params, xs)
    state = rj.stream_init(layer, dtype=jnp.float64)
    step = jax.jit(lambda p, s, x: rj.stream_step(layer, p, s, x))
    for t in range(T):
        state, y = step(params, state, xs[t])
        np.testing.assert_allclose(y, ys[t], rtol=1e-12, atol=1e-14)
    for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(final)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_streaming_refuses_layers_that_need_the_future():
    with pytest.raises(ValueError, match="cannot run online"):
        rj.stream_init(rj.bidirectional(rj.rnn(rj.gru(H)), rj.rnn(rj.gru(H))))
    with pytest.raises(ValueError, match="cannot run online"):
        rj.stream_init(rj.rnn(rj.gru(H), reverse=True))


def test_reversed_layer_equals_reverse_unroll(key):
    layer = rj.rnn(rj.gru(H), reverse=True)
    params = layer.init(key, I, jnp.float64)
    xs = _xs(key)
    ys, _ = layer.apply(params, xs, 5)
    ref, _ = loop_unroll(rj.gru(H), params, xs, 5, reverse=True)
    np.testing.assert_allclose(ys, ref, rtol=1e-13)


@pytest.mark.parametrize("make", [
    lambda: rj.bidirectional(rj.rnn(rj.lstm(H)), rj.rnn(rj.jordan(H, H)), merge="mean"),
    lambda: rj.stack(rj.bidirectional(rj.rnn(rj.gru(H)), rj.rnn(rj.gru(H))),
                     rj.bidirectional(rj.rnn(rj.gru(H)), rj.rnn(rj.gru(H))), skip="highway"),
])
def test_combinators_vmap_equals_per_example_loop(make, key):
    layer = make()
    params = perturb(layer.init(key, I, jnp.float64), key)
    xs = jax.random.normal(key, (3, T, I), jnp.float64)
    lengths = jnp.array([T, 0, 5])
    ys, finals = layer.apply(params, xs, lengths)
    for b in range(3):
        ys_b, fin_b = layer.apply(params, xs[b], lengths[b])
        np.testing.assert_allclose(ys[b], ys_b, rtol=1e-13, atol=1e-15)
        for a, c in zip(jax.tree_util.tree_leaves(finals), jax.tree_util.tree_leaves(fin_b)):
            np.testing.assert_allclose(a[b], c, rtol=1e-13, atol=1e-15)

