import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from conftest import CELLS, perturb
from reference import loop_unroll, numpy_elman, numpy_jordan

I, H, T = 5, 7, 9


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64, jnp.bfloat16])
def test_step_shapes_and_dtypes(name, dtype, key):
    cell = CELLS[name](H)
    params = cell.init(key, I, dtype)
    assert all(l.dtype == dtype for l in jax.tree_util.tree_leaves(params))
    carry = cell.initial_state(dtype)
    carry, y = cell.step(params, carry, jnp.ones((I,), dtype))
    assert y.shape == (cell.output_size,) and y.dtype == dtype
    assert all(l.dtype == dtype for l in jax.tree_util.tree_leaves(carry))
    assert jnp.all(jnp.isfinite(y.astype(jnp.float32)))


@pytest.mark.parametrize("act,g", [("tanh", np.tanh), ("relu", lambda z: np.maximum(z, 0)),
                                   ("sigmoid", lambda z: 1 / (1 + np.exp(-z))), (jnp.sin, np.sin)])
def test_elman_matches_seed_equations(act, g, key):
    cell = rj.elman(H, act)
    k1, k2, k3 = jax.random.split(key, 3)
    params = perturb(cell.init(k1, I, jnp.float64), k2)
    xs = jax.random.normal(k3, (T, I), jnp.float64)
    ys, _ = rj.unroll(cell, params, xs)
    np.testing.assert_allclose(ys, numpy_elman(params, xs, g), rtol=1e-12, atol=1e-12)


def test_jordan_feeds_back_the_output(key):
    cell = rj.jordan(H, 3)
    k1, k2, k3 = jax.random.split(key, 3)
    params = perturb(cell.init(k1, I, jnp.float64), k2)
    xs = jax.random.normal(k3, (T, I), jnp.float64)
    ys, final = rj.unroll(cell, params, xs)
    np.testing.assert_allclose(ys, numpy_jordan(params, xs), rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(final.y, ys[-1])
    assert ys.shape == (T, 3)


@pytest.mark.parametrize("name", CELLS)
def test_unroll_equals_python_loop(name, key):
    cell = CELLS[name](H)
    k1, k2, k3 = jax.random.split(key, 3)
    params = perturb(cell.init(k1, I, jnp.float64), k2)
    xs = jax.random.normal(k3, (T, I), jnp.float64)
    for length in (None, 0, 1, 5, T):
        for reverse in (False, True):
            ys, fin = rj.unroll(cell, params, xs, lengths=length, reverse=reverse)
            ys_ref, fin_ref = loop_unroll(cell, params, xs, length, reverse)
            np.testing.assert_allclose(ys, ys_ref, rtol=1e-13, atol=1e-13, err_msg=f"{length=} {reverse=}")
            for a, b in zip(jax.tree_util.tree_leaves(fin), jax.tree_util.tree_leaves(fin_ref)):
                np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_lstm_gate_order_and_forget_bias(key):
    cell = rj.lstm(H, forget_bias=1.5)
    params = cell.init(key, I)
    np.testing.assert_array_equal(params["b_i"][H:2 * H], 1.5)
    np.testing.assert_array_equal(params["b_i"][:H], 0.0)
    np.testing.assert_array_equal(params["b_h"], 0.0)
    # With only the output gate's pre-activation pushed up and a zero cell, h stays zero:
    # o scales tanh(c), so gate order i, f, g, o is visible through which block changes what.
    p = jax.tree.map(jnp.zeros_like, params)
    p["b_i"] = p["b_i"].at[2 * H:3 * H].set(1.0)  # g = tanh(1)
    p["b_i"] = p["b_i"].at[:H].set(50.0)          # i = 1
    state, h = cell.step(p, cell.initial_state(), jnp.zeros((I,)))
    np.testing.assert_allclose(state.c, np.tanh(1.0), rtol=1e-6)  # c = i * g
    np.testing.assert_allclose(h, 0.5 * np.tanh(np.tanh(1.0)), rtol=1e-6)  # o = sigmoid(0)


def test_gru_reset_applies_after_recurrent_product(key):
    cell = rj.gru(H)
    params = perturb(cell.init(key, I, jnp.float64), key)
    h0 = jnp.linspace(-1, 1, H)
    x = jnp.linspace(0.5, -0.5, I)
    _, h = cell.step(params, h0, x)
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    p = jax.tree.map(np.asarray, params)
    gx, gh = x @ p["W_i"] + p["b_i"], h0 @ p["W_h"] + p["b_h"]
    r, z = sig(gx[:H] + gh[:H]), sig(gx[H:2 * H] + gh[H:2 * H])
    n = np.tanh(gx[2 * H:] + r * gh[2 * H:])  # r multiplies (W_hn h + b_hn)
    np.testing.assert_allclose(h, (1 - z) * n + z * np.asarray(h0), rtol=1e-12)


@pytest.mark.parametrize("init,check", [
    ("orthogonal", lambda W: np.allclose(W.T @ W, np.eye(W.shape[0]), atol=1e-5)),
    (rj.initializers.identity(0.5), lambda W: np.allclose(W, 0.5 * np.eye(W.shape[0]))),
    ("zeros", lambda W: not W.any()),
])
def test_recurrent_initialisers_per_gate_block(init, check, key):
    for cell in (rj.elman(H, recurrent_init=init), rj.lstm(H, recurrent_init=init), rj.gru(H, recurrent_init=init)):
        W = np.asarray(cell.init(key, I)["W_h"])
        blocks = np.split(W, W.shape[1] // H, axis=1)
        assert all(check(b) for b in blocks), cell.name


@pytest.mark.parametrize("name,bound", [("glorot_uniform", np.sqrt(6 / (I + H))), ("he_uniform", np.sqrt(6 / I)),
                                        ("lecun_uniform", np.sqrt(3 / I)), ("pytorch", 1 / np.sqrt(H))])
def test_uniform_initialiser_bounds(name, bound, key):
    W = np.asarray(rj.elman(H, kernel_init=name).init(key, I)["W_i"])
    assert np.abs(W).max() <= bound + 1e-6
    assert np.abs(W).max() > 0.5 * bound  # actually spread over the interval


@pytest.mark.parametrize("name,std", [("glorot_normal", np.sqrt(2 / (200 + 200))), ("he_normal", np.sqrt(2 / 200)),
                                      ("lecun_normal", np.sqrt(1 / 200))])
def test_normal_initialiser_scale(name, std, key):
    W = np.asarray(rj.elman(200, kernel_init=name).init(key, 200)["W_i"])
    assert abs(W.std() / std - 1) < 0.05


def test_irnn_identity_keeps_state(key):
    cell = rj.elman(H, "relu", recurrent_init=rj.initializers.identity(1.0))
    params = cell.init(key, I)
    h0 = jnp.abs(jnp.linspace(0.1, 1.0, H))
    h, _ = cell.step(params, h0, jnp.zeros((I,)))
    np.testing.assert_allclose(h, h0, rtol=1e-6)
