"""The orthogonal (expRNN) cell: its recurrent matrix is orthogonal at initialisation and stays so under
training, its step is the documented equation, and what orthogonality buys (norms kept over long
spans, step Jacobians with unit singular values) holds. Loop reference, finite differences and
batched == per-sequence run for it in the shared cell families (conftest.CELLS)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnn_jax as rj
from rnn_jax import diagnostics


def _W(params):
    A = np.asarray(params["A"], np.float64)
    from scipy.linalg import expm
    return expm(A - A.T)


def _orth_error(W):
    return float(np.abs(W.T @ W - np.eye(W.shape[0])).max())


@pytest.mark.parametrize("init", ["henaff", "identity"])
def test_initial_recurrent_matrix(key, init):
    H = 7
    params = rj.orthogonal_rnn(H, recurrent_init=init).init(key, 3, jnp.float64)
    W = _W(params)
    assert _orth_error(W) < 1e-12
    if init == "identity":
        np.testing.assert_allclose(W, np.eye(H), atol=1e-15)
        return
    theta = np.asarray(params["A"])[np.arange(0, 6, 2), np.arange(1, 7, 2)]
    assert np.all(np.abs(theta) <= np.pi) and np.ptp(theta) > 0
    expected = np.eye(H)  # block diagonal of 2x2 rotations, a last 1x1 block of 1 (H odd)
    for k, t in enumerate(theta):
        expected[2 * k:2 * k + 2, 2 * k:2 * k + 2] = [[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]
    np.testing.assert_allclose(W, expected, atol=1e-12)


def test_step_is_the_documented_equation(key):
    cell = rj.orthogonal_rnn(5)
    params = cell.init(key, 3, jnp.float64)
    params["b"] = jnp.asarray([-0.5, 0.2, -0.1, 0.0, 0.3], jnp.float64)
    h, x = np.linspace(-1, 1, 5), np.array([0.3, -0.7, 1.1])
    z = x @ np.asarray(params["W_i"]) + h @ _W(params)
    want = np.sign(z) * np.maximum(np.abs(z) + np.asarray(params["b"]), 0)
    new, y = cell.step(params, jnp.asarray(h), jnp.asarray(x))
    np.testing.assert_allclose(new, want, atol=1e-12)
    np.testing.assert_allclose(y, want, atol=1e-12)
    assert np.any(np.asarray(new) == 0) or np.all(np.abs(z) + np.asarray(params["b"]) > 0)


def _primitives(jaxpr) -> set:
    """Every primitive in a jaxpr, nested ones (jit, scan bodies) included."""
    out = set()
    for e in jaxpr.eqns:
        out.add(e.primitive.name)
        for v in e.params.values():
            for sub in (v if isinstance(v, (list, tuple)) else [v]):
                sub = getattr(sub, "jaxpr", sub)
                if hasattr(sub, "eqns"):
                    out |= _primitives(sub)
    return out


def test_exponential_taken_once_per_sequence(key):
    """``prepare`` adds ``W``; the step on prepared params equals the step on raw ones, and the generic
    unroller and the diagnostics take the exponential before their loops, not inside them."""
    cell = rj.orthogonal_rnn(5)
    params = cell.init(key, 3, jnp.float64)
    ready = rj.prepared(cell, params)
    np.testing.assert_allclose(ready["W"], _W(params), atol=1e-12)
    h, x = jnp.linspace(-1, 1, 5), jnp.array([0.3, -0.7, 1.1])
    np.testing.assert_allclose(cell.step(ready, h, x)[0], cell.step(params, h, x)[0], atol=1e-14)
    assert rj.prepared(rj.gru(4), {"x": 1}) == {"x": 1}  # cells without a precomputation: unchanged
    xs = jax.random.normal(key, (20, 2, 3), jnp.float64)

    def loop_bodies(f, *args):
        eqns = jax.make_jaxpr(f)(*args).jaxpr.eqns
        scans = [e for e in eqns if e.primitive.name == "scan"]
        assert scans
        return [_primitives(e.params["jaxpr"].jaxpr) for e in scans]

    assert "lu" in _primitives(jax.make_jaxpr(cell.prepare)(params).jaxpr)  # the exponential solves with LU
    for prims in loop_bodies(lambda p: rj.unroll(cell, p, xs), params):  # the generic unroller
        assert "lu" not in prims
    for prims in loop_bodies(lambda p: diagnostics.step_jacobian_singular_values(cell, p, xs[:, 0]), params):
        assert "lu" not in prims
    # and the result is unchanged: unroll (generic scan) == a loop of raw steps
    ys, _ = rj.unroll(cell, params, xs[:, 0])
    s = jnp.zeros(5, jnp.float64)
    for t in range(20):
        s, y = cell.step(params, s, xs[t, 0])
        np.testing.assert_allclose(ys[t], y, atol=1e-12)


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-5), (jnp.float64, 1e-12)])
def test_stays_orthogonal_under_training(key, dtype, tol):
    """Adam with a large learning rate moves A far from its start; W = expm(A - A^T) stays orthogonal."""
    H, T = 16, 30
    layer = rj.rnn(rj.orthogonal_rnn(H))
    params = layer.init(key, 4, dtype)
    xs = jax.random.normal(jax.random.fold_in(key, 1), (8, T, 4), dtype)
    target = jax.random.normal(jax.random.fold_in(key, 2), (8, H), dtype)
    tx = optax.adam(0.05)
    opt = tx.init(params)

    @jax.jit
    def update(p, o):
        g = jax.grad(lambda p: jnp.mean((layer.apply(p, xs)[0][:, -1] - target) ** 2))(p)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o

    A0 = np.asarray(params["A"])
    for _ in range(50):
        params, opt = update(params, opt)
    assert np.abs(np.asarray(params["A"]) - A0).max() > 0.2  # it really moved
    assert _orth_error(_W(params)) < tol
    W_used = np.asarray(jax.scipy.linalg.expm(params["A"] - params["A"].T))  # the matrix the step uses
    assert W_used.dtype == np.dtype(dtype) and _orth_error(W_used.astype(np.float64)) < tol


def test_norm_kept_over_long_span_and_unit_singular_values(key):
    """With no input and a zero modReLU bias, h_t = h_{t-1} W: the state's norm is kept exactly over
    2000 steps, and every step Jacobian has all singular values 1 (the error neither vanishes nor
    explodes). A negative bias zeroes units and shortens the error: some singular values drop to 0."""
    H, T = 12, 2000
    cell = rj.orthogonal_rnn(H)
    params = dict(cell.init(key, 2, jnp.float64), b=jnp.zeros((H,), jnp.float64))
    h0 = jax.random.normal(key, (H,), jnp.float64)
    ys, final = rj.rnn(cell).apply(params, jnp.zeros((T, 2), jnp.float64), initial_state=h0)
    np.testing.assert_allclose(np.linalg.norm(ys, axis=-1), np.linalg.norm(h0), rtol=1e-10)
    sv = diagnostics.step_jacobian_singular_values(cell, params, jnp.zeros((50, 2), jnp.float64), h0)
    np.testing.assert_allclose(sv, 1.0, atol=1e-10)
    params["b"] = jnp.full((H,), -0.5, jnp.float64)
    sv = np.asarray(diagnostics.step_jacobian_singular_values(cell, params, jnp.zeros((5, 2), jnp.float64), h0))
    assert sv.max() <= 1 + 1e-10 and sv.min() < 1e-12


def test_bad_arguments():
    with pytest.raises(ValueError, match="recurrent_init"):
        rj.orthogonal_rnn(4, recurrent_init="orthogonal")
    with pytest.raises(ValueError, match="bias_bound"):
        rj.orthogonal_rnn(4, bias_bound=-1.0)
    with pytest.raises(ValueError, match="hidden_size"):
        rj.orthogonal_rnn(0)


def test_lstm_chrono_initialisation(key):
    H, T_max = 64, 1000
    p = rj.lstm(H, chrono=T_max).init(key, 3)
    b_input, b_forget = np.asarray(p["b_i"][:H]), np.asarray(p["b_i"][H:2 * H])
    assert np.all(b_forget >= 0) and np.all(b_forget <= np.log(T_max - 1) + 1e-6)
    assert b_forget.max() > np.log(T_max / 4)  # spread over the range, not all small
    np.testing.assert_allclose(b_input, -b_forget)
    np.testing.assert_array_equal(p["b_h"], 0)
    for bad in (2, 0, 10.5, True):
        with pytest.raises(ValueError, match="chrono"):
            rj.lstm(H, chrono=bad)
