import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnn_jax as rj
from conftest import perturb
from rnn_jax import tbptt

B, L, I, V = 2, 12, 3, 4


def _setup(key):
    model = rj.many_to_many(rj.rnn(rj.lstm(5)), V, input_size=I)
    k1, k2, k3 = jax.random.split(key, 3)
    params = perturb(model.init(k1, jnp.float64), k1, 0.5)
    xs = jax.random.normal(k2, (B, L, I), jnp.float64)
    ys = jax.random.randint(k3, (B, L), 0, V)
    loss_fn = lambda out, y: rj.losses.softmax_cross_entropy(out, y, reduction="sequence_mean")  # noqa: E731
    return model, params, xs, ys, loss_fn


def test_schedule():
    assert tbptt.schedule(10, 5, 5) == [(0, 0, 5), (5, 5, 10)]
    assert tbptt.schedule(10, 2, 6) == [(0, 0, 2), (0, 2, 4), (0, 4, 6), (2, 6, 8), (4, 8, 10)]
    assert tbptt.schedule(7, 3, 3) == [(0, 0, 3), (3, 3, 6), (6, 6, 7)]
    with pytest.raises(ValueError, match="k2: expected a multiple of k1=4, got 6"):
        tbptt.schedule(10, 4, 6)


def test_whole_length_equals_full_bptt(key):
    model, params, xs, ys, loss_fn = _setup(key)
    res = tbptt.train(model, params, optax.sgd(0.1), xs, ys, L, L, loss_fn, keep_grads=True)

    def full(p):
        return loss_fn(model.apply(p, xs)[0], ys)

    loss, g = jax.value_and_grad(full)(params)
    assert len(res.losses) == 1 and abs(res.losses[0] - float(loss)) < 1e-12
    assert max(rj.gradcheck.relative_errors(res.grads[0], g).values()) < 1e-12
    expect = jax.tree.map(lambda p, gg: p - 0.1 * gg, params, g)
    for a, b in zip(jax.tree_util.tree_leaves(res.params), jax.tree_util.tree_leaves(expect)):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_chunks_carry_the_state_and_cut_the_gradient(key):
    """With a zero learning rate the chunk losses add up to the full loss (the state is carried), and the
    gradients add up to the gradient of the full loss with stop_gradient at the chunk boundaries."""
    model, params, xs, ys, loss_fn = _setup(key)
    k = 4
    res = tbptt.train(model, params, optax.sgd(0.0), xs, ys, k, k, loss_fn, keep_grads=True)

    def cut(p):
        state, total = None, 0.0
        for s in range(0, L, k):
            out, state = model.apply(p, xs[:, s:s + k], None, state)
            total = total + loss_fn(out, ys[:, s:s + k])
            state = jax.lax.stop_gradient(state)
        return total

    def full(p):
        return loss_fn(model.apply(p, xs)[0], ys)

    np.testing.assert_allclose(res.losses.sum(), full(params), rtol=1e-12)
    summed = jax.tree.map(lambda *g: sum(g), *res.grads)
    assert max(rj.gradcheck.relative_errors(summed, jax.grad(cut)(params)).values()) < 1e-12
    assert max(rj.gradcheck.relative_errors(summed, jax.grad(full)(params)).values()) > 1e-6  # truncation is real


def test_longer_backprop_window(key):
    """k1 < k2: the gradient of an update reaches k2 steps back: equal to a window recomputed by hand."""
    model, params, xs, ys, loss_fn = _setup(key)
    res = tbptt.train(model, params, optax.sgd(0.0), xs, ys, 3, 6, loss_fn, keep_grads=True)
    # the update for the window (start=3, split=6, end=9): context xs[3:6] from the state at 3
    state3 = model.apply(params, xs[:, :3])[1]

    def win(p):
        return tbptt.window_loss(model, loss_fn, p, state3, xs[:, 3:9], ys[:, 3:9], 3)[0]

    assert max(rj.gradcheck.relative_errors(res.grads[2], jax.grad(win)(params)).values()) < 1e-12


def test_learns_a_long_stream(key):
    """Chunked TBPTT learns to predict the input delayed by 2 steps on a stream of 300 steps."""
    model = rj.many_to_many(rj.rnn(rj.gru(16)), 2, input_size=2)
    params = model.init(key)
    toks = jax.random.randint(key, (4, 300), 0, 2)
    xs = jax.nn.one_hot(toks, 2, dtype=jnp.float32)
    ys = jnp.concatenate([jnp.zeros((4, 2), toks.dtype), toks[:, :-2]], 1)
    loss_fn = lambda out, y: rj.losses.softmax_cross_entropy(out, y, reduction="mean")  # noqa: E731
    res = tbptt.train(model, params, optax.adam(3e-2), jnp.tile(xs, (1, 10, 1)), jnp.tile(ys, (1, 10)), 20, 20,
                      loss_fn)
    assert res.losses[0] > 0.6 and res.losses[-20:].mean() < 0.1, (res.losses[0], res.losses[-20:].mean())


def test_a_window_whose_loss_is_not_finite_changes_nothing(key):
    # every window is one rnn_jax.train.update, fit's step: its finite check holds here too
    model, params, xs, ys, _ = _setup(key)
    second = lambda y: jnp.all(y == ys[:, 4:8])  # noqa: E731
    nan_second = lambda out, y: jnp.where(second(y), jnp.nan, jnp.mean(out ** 2))  # noqa: E731
    zero_second = lambda out, y: jnp.where(second(y), 0.0, 1.0) * jnp.mean(out ** 2)  # noqa: E731
    res = tbptt.train(model, params, optax.sgd(0.1), xs, ys, 4, 4, nan_second)
    assert np.isnan(res.losses[1]) and np.isfinite(res.losses[[0, 2]]).all()
    # skipping the window equals a window with zero gradient (plain SGD): the other two updates stand
    ref = tbptt.train(model, params, optax.sgd(0.1), xs, ys, 4, 4, zero_second)
    for a, b in zip(jax.tree.leaves(res.params), jax.tree.leaves(ref.params)):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)
    assert not np.allclose(res.params["rnn"]["W_h"], params["rnn"]["W_h"])
