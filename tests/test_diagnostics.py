import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from conftest import perturb
from rnn_jax import diagnostics

I, H, T = 3, 5, 10


@pytest.mark.parametrize("make", [lambda: rj.elman(H), lambda: rj.lstm(H), lambda: rj.gru(H)])
def test_error_reach_equals_gradient_through_carry(make, key):
    cell = make()
    params = perturb(cell.init(key, I, jnp.float64), key)
    xs = jax.random.normal(key, (T, I), jnp.float64)
    loss_of_last = lambda y: jnp.sum(jnp.sin(y))  # noqa: E731
    reach = diagnostics.error_reach(cell, params, xs, loss_of_last)
    assert reach.shape == (T - 1,)
    k = 4  # reference: carry after step k as an input, the rest of the sequence run from it
    carry_k = rj.unroll(cell, params, xs[:k + 1])[1]
    flat, unravel = jax.flatten_util.ravel_pytree(carry_k)
    g = jax.grad(lambda f: loss_of_last(rj.unroll(cell, params, xs[k + 1:], initial_state=unravel(f))[0][-1]))(flat)
    np.testing.assert_allclose(reach[k], jnp.linalg.norm(g), rtol=1e-10)


def test_jacobian_norms_against_jacrev(key):
    cell = rj.gru(H)
    params = perturb(cell.init(key, I, jnp.float64), key)
    xs = jax.random.normal(key, (T, I), jnp.float64)
    norms = diagnostics.jacobian_norms(cell, params, xs)
    np.testing.assert_allclose(norms[-1], 1.0, rtol=1e-12)
    k = 3
    h_k = rj.unroll(cell, params, xs[:k + 1])[1]
    J = jax.jacrev(lambda h: rj.unroll(cell, params, xs[k + 1:], initial_state=h)[1])(h_k)
    np.testing.assert_allclose(norms[k], np.linalg.norm(J, 2), rtol=1e-10)


def test_vanishing_under_small_weights_and_exploding_under_large():
    cell = rj.elman(H, "tanh")
    xs = jnp.zeros((30, I), jnp.float64)
    base = {"W_i": jnp.zeros((I, H), jnp.float64), "b_i": jnp.zeros((H,), jnp.float64)}
    small = diagnostics.jacobian_norms(cell, dict(base, W_h=0.5 * jnp.eye(H, dtype=jnp.float64)), xs)
    active = dict(base, b_i=jnp.ones((H,), jnp.float64), W_h=1.5 * jnp.eye(H, dtype=jnp.float64))
    big = diagnostics.jacobian_norms(rj.elman(H, "relu"), active, xs)  # positive state: relu' = 1
    np.testing.assert_allclose(small[0], 0.5 ** 29, rtol=1e-10)  # zero state: tanh' = 1, so exactly 0.5^(T-1)
    np.testing.assert_allclose(big[0], 1.5 ** 29, rtol=1e-10)
    spec = diagnostics.recurrent_spectrum({"W_h": 0.5 * np.eye(H)})
    assert abs(spec["W_h"]["spectral_radius"] - 0.5) < 1e-12 and abs(spec["W_h"]["max_singular_value"] - 0.5) < 1e-12
    assert set(diagnostics.recurrent_spectrum(rj.lstm(H).init(jax.random.key(0), I), gates=4)) == \
        {"block0", "block1", "block2", "block3"}


def test_plots(tmp_path):
    p1 = diagnostics.plot_reach({"a": np.geomspace(1e-8, 1, 20), "b": np.ones(20)}, str(tmp_path / "r.png"))
    p2 = diagnostics.plot_heatmap(np.random.default_rng(0).random((5, 20)), [0, 10, 20, 30, 40], str(tmp_path / "h.png"))
    for p in (p1, p2):
        with open(p, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
