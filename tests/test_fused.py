"""The fused recurrences (hand-written backward pass) equal the generic unroller, values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from rnn_jax import fused
from conftest import CELLS, perturb

FUSABLE = [n for n in CELLS if n != "jordan"]
B, T, I, H = 3, 7, 4, 5
TOL = 1e-10


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _assert_trees_close(got, want, tol=TOL):
    got_l, want_l = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)
    assert len(got_l) == len(want_l)
    for g, w in zip(got_l, want_l):
        assert g.shape == w.shape
        assert _rel(g, w) < tol, _rel(g, w)


def _pair(make, key, lengths, initial, dtype=jnp.float64):
    """(fused loss, reference loss, params, xs): the loss weighs every output and final-state leaf."""
    ref_layer, fused_layer = make(False), make(True)
    assert ref_layer.batched is None and fused_layer.batched is not None
    k1, k2, k3, k4 = jax.random.split(key, 4)
    params = perturb(fused_layer.init(k1, I, dtype), k2)
    xs = jax.random.normal(k3, (B, T, I), dtype)
    s0 = None
    if initial:
        s0 = jax.tree.map(lambda a: jax.random.normal(k4, (B,) + a.shape, dtype), fused_layer.initial_state(dtype))
    w = jax.random.normal(k4, (T, fused_layer.output_size), dtype)

    def loss_of(layer):
        def loss(p, x, s):
            ys, fin = rj.apply_batch(layer, p, x, lengths, s)
            fin_term = sum(jnp.sum(jnp.sin(l)) for l in jax.tree_util.tree_leaves(fin))
            return jnp.sum(jnp.tanh(ys) * jnp.broadcast_to(w, ys.shape)) + fin_term, (ys, fin)
        return loss

    return loss_of(fused_layer), loss_of(ref_layer), params, xs, s0


def _check(make, key, lengths=None, initial=False):
    f_loss, r_loss, params, xs, s0 = _pair(make, key, lengths, initial)
    argnums = (0, 1, 2) if initial else (0, 1)
    (fv, faux), fg = jax.value_and_grad(f_loss, argnums=argnums, has_aux=True)(params, xs, s0)
    (rv, raux), rg = jax.value_and_grad(r_loss, argnums=argnums, has_aux=True)(params, xs, s0)
    _assert_trees_close(faux, raux)
    assert abs(float(fv - rv)) <= TOL * abs(float(rv))
    _assert_trees_close(fg, rg)


@pytest.mark.parametrize("name", FUSABLE)
@pytest.mark.parametrize("layout", ["batch", "feature"])
@pytest.mark.parametrize("hoist", [True, False], ids=["hoisted", "in-loop"])
@pytest.mark.parametrize("lengths", [None, [7, 3, 0]], ids=["full", "lengths"])
def test_fused_equals_unroller(name, layout, hoist, lengths, key):
    _check(lambda f: rj.rnn(CELLS[name](H), fused=f, layout=layout, hoist_input=hoist), key,
           None if lengths is None else jnp.array(lengths))


@pytest.mark.parametrize("name", FUSABLE)
@pytest.mark.parametrize("layout", ["batch", "feature"])
def test_fused_reverse_initial_state_unroll(name, layout, key):
    _check(lambda f: rj.rnn(CELLS[name](H), reverse=True, unroll=3, fused=f, layout=layout), key,
           jnp.array([7, 5, 2]), initial=True)


@pytest.mark.parametrize("skip", [None, "highway"])
def test_fused_bidirectional_stack(skip, key):
    def make(f):
        bi = rj.bidirectional(rj.rnn(rj.lstm(H), fused=f), rj.rnn(rj.gru(H), fused=f), merge="sum")
        return rj.stack(bi, rj.rnn(rj.elman(H), fused=f), skip=skip)
    _check(make, key, jnp.array([6, 7, 1]))


def test_default_picks_fused_when_available():
    assert rj.rnn(rj.gru(4)).batched is not None
    assert rj.rnn(rj.jordan(4, 2)).batched is None           # no fused kernel: vmap of the unroller
    assert rj.rnn(rj.elman(4, jnp.sin)).batched is None       # custom activation
    assert rj.rnn(rj.lstm(4), remat=8).batched is None        # remat keeps the generic path
    assert rj.bidirectional(rj.rnn(rj.lstm(4)), rj.rnn(rj.jordan(4, 4))).batched is None


def test_fused_errors():
    with pytest.raises(ValueError, match="fused=True: cell 'jordan'"):
        rj.rnn(rj.jordan(4, 2), fused=True)
    with pytest.raises(ValueError, match="fused=True with remat"):
        rj.rnn(rj.lstm(4), fused=True, remat=4)
    with pytest.raises(ValueError, match="hoist_input: expected True, False or 'auto'"):
        rj.rnn(rj.lstm(4), hoist_input="yes")
    with pytest.raises(ValueError, match="layout: expected 'auto'"):
        rj.rnn(rj.lstm(4), layout="time")
    with pytest.raises(ValueError, match="fused: expected None, True or False"):
        rj.rnn(rj.lstm(4), fused="yes")
    layer = rj.rnn(rj.gru(4))
    params = layer.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="W_h"):
        rj.apply_batch(layer, {**params, "W_h": params["W_h"][:2]}, jnp.zeros((2, 5, 3)))


def test_fused_jit_does_not_retrace(key):
    layer = rj.rnn(rj.lstm(H))
    params = layer.init(key, I, jnp.float32)
    traces = []

    @jax.jit
    def loss(p, x):
        traces.append(1)
        return jnp.mean(rj.apply_batch(layer, p, x)[0] ** 2)

    g = jax.grad(loss)
    x = jnp.ones((B, T, I), jnp.float32)
    g(params, x)
    g(params, x + 1.0)
    assert len(traces) == 1


def test_fused_float32_matches(key):
    layer, ref = rj.rnn(rj.lstm(H), fused=True), rj.rnn(rj.lstm(H), fused=False)
    params = layer.init(key, I, jnp.float32)
    xs = jax.random.normal(key, (B, T, I), jnp.float32)
    got, want = rj.apply_batch(layer, params, xs)[0], rj.apply_batch(ref, params, xs)[0]
    assert got.dtype == jnp.float32
    assert _rel(got, want) < 1e-5


def test_flip_valid_batch_matches_per_sequence():
    xs = jnp.arange(2 * 5 * 3.0).reshape(5, 2, 3)
    lengths = jnp.array([5, 2])
    got = fused.flip_valid_batch(xs, lengths)
    for b in range(2):
        np.testing.assert_array_equal(got[:, b], rj.flip_valid(xs[:, b], lengths[b]))


@pytest.mark.parametrize("name", FUSABLE)
@pytest.mark.parametrize("hoist", [True, False, "auto"])
def test_fused_inference_path_equals_unroller(name, hoist, key):
    """Without differentiation the custom_vjp runs its primal (no residuals kept): same values."""
    layer = rj.rnn(CELLS[name](H), hoist_input=hoist, fused=True)
    ref = rj.rnn(CELLS[name](H), fused=False)
    params = perturb(layer.init(key, I, jnp.float64), key)
    xs = jax.random.normal(key, (B, T, I), jnp.float64)
    lengths = jnp.array([7, 2, 5])
    got = jax.jit(lambda p, x: rj.apply_batch(layer, p, x, lengths))(params, xs)
    want = rj.apply_batch(ref, params, xs, lengths)
    _assert_trees_close(got, want)


def test_choose_hoist_rule():
    assert fused.choose_hoist("elman_tanh", 16, 1000, 128) == (True, True)
    if jax.default_backend() == "cpu":
        assert fused.choose_hoist("gru", 16, 100, 256) == (False, False)
        assert fused.choose_hoist("lstm", 16, 100, 256) == (False, True)
        assert fused.choose_hoist("lstm", 16, 1000, 128) == (False, False)
