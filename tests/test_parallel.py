"""Parallel-in-time (DEER) evaluation equals the sequential scan: values, final states, gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from rnn_jax import parallel
from conftest import CELLS, perturb

T, I, H = 24, 3, 4


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _setup(name, key, dtype=jnp.float64, scale=0.3):
    cell = CELLS[name](H)
    k1, k2, k3 = jax.random.split(key, 3)
    params = perturb(cell.init(k1, I, dtype), k2, scale)
    xs = jax.random.normal(k3, (T, I), dtype)
    return cell, params, xs


@pytest.mark.parametrize("name", list(CELLS))
@pytest.mark.parametrize("method", parallel.METHODS)
def test_deer_equals_scan(name, method, key):
    cell, params, xs = _setup(name, key)
    ys, fin, info = parallel.deer(cell, params, xs, method=method, fallback=False, max_iters=200)
    ref_ys, ref_fin = rj.unroll(cell, params, xs)
    assert bool(info.converged)
    assert int(info.iterations) <= (T if method == "newton" else 200)
    assert _rel(ys, ref_ys) < 1e-5
    for a, b in zip(jax.tree_util.tree_leaves(fin), jax.tree_util.tree_leaves(ref_fin)):
        assert _rel(a, b) < 1e-5


@pytest.mark.parametrize("name", ["elman_tanh", "lstm", "gru"])
def test_deer_gradients_equal_scan(name, key):
    cell, params, xs = _setup(name, key)
    w = jax.random.normal(key, (T, cell.output_size), jnp.float64)

    def loss(run):
        def f(p, x):
            ys, fin = run(p, x)
            return jnp.sum(jnp.sin(ys) * w) + sum(jnp.sum(l ** 2) for l in jax.tree_util.tree_leaves(fin))
        return f

    deer_loss = loss(lambda p, x: parallel.deer(cell, p, x, fallback=False)[:2])
    ref_loss = loss(lambda p, x: rj.unroll(cell, p, x))
    g = jax.grad(deer_loss, argnums=(0, 1))(params, xs)
    r = jax.grad(ref_loss, argnums=(0, 1))(params, xs)
    for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(r)):
        assert _rel(a, b) < 1e-5


def test_deer_lengths_reverse_initial_state(key):
    cell, params, xs = _setup("gru", key)
    h0 = jax.random.normal(key, (H,), jnp.float64)
    for length in (T, 9, 0):
        got = parallel.deer(cell, params, xs, lengths=length, reverse=True, initial_state=h0)
        want = rj.unroll(cell, params, xs, lengths=length, reverse=True, initial_state=h0)
        assert _rel(got[0], want[0]) < 1e-5 or np.abs(np.asarray(want[0])).max() == 0
        assert _rel(got[1], want[1]) < 1e-5


def test_deer_falls_back_to_scan_when_not_converged(key):
    cell, params, xs = _setup("lstm", key, scale=1.0)
    ys, fin, info = parallel.deer(cell, params, xs, max_iters=1)
    assert not bool(info.converged) and int(info.iterations) == 1
    ref_ys, _ = rj.unroll(cell, params, xs)
    assert _rel(ys, ref_ys) < 1e-12
    ys_nf, _, _ = parallel.deer(cell, params, xs, max_iters=1, fallback=False)
    assert _rel(ys_nf, ref_ys) > 1e-3  # one Newton step alone is not the answer: the fallback mattered


def test_deer_float32_and_vmap(key):
    cell, params, xs = _setup("elman_tanh", key, dtype=jnp.float32)
    batch = jnp.stack([xs, xs[::-1]])
    got = jax.jit(jax.vmap(lambda x: parallel.deer(cell, params, x)[0]))(batch)
    want = jax.vmap(lambda x: rj.unroll(cell, params, x)[0])(batch)
    assert got.dtype == jnp.float32
    assert _rel(got, want) < 1e-5


def test_linear_recurrence_matches_loop(key):
    k1, k2, k3 = jax.random.split(key, 3)
    A = 0.5 * jax.random.normal(k1, (9, 3, 3), jnp.float64)
    b = jax.random.normal(k2, (9, 3), jnp.float64)
    s = s0 = jax.random.normal(k3, (3,), jnp.float64)
    want = []
    for t in range(9):
        s = A[t] @ s + b[t]
        want.append(s)
    assert _rel(parallel.linear_recurrence(A, b, s0), jnp.stack(want)) < 1e-12
    d = jnp.diagonal(A, axis1=1, axis2=2)
    s, want = s0, []
    for t in range(9):
        s = d[t] * s + b[t]
        want.append(s)
    assert _rel(parallel.linear_recurrence(d, b, s0), jnp.stack(want)) < 1e-12


def test_deer_errors(key):
    cell, params, xs = _setup("gru", key)
    with pytest.raises(ValueError, match="method: expected one of"):
        parallel.deer(cell, params, xs, method="jacobi")
    with pytest.raises(ValueError, match="max_iters"):
        parallel.deer(cell, params, xs, max_iters=0)
    with pytest.raises(ValueError, match="xs"):
        parallel.deer(cell, params, xs[:, :2])


def test_rnn_layer_parallel_option(key):
    cell, params, xs = _setup("gru", key)
    batch = jnp.stack([xs, xs * 0.5])
    got = rj.rnn(cell, parallel="newton").apply(params, batch, jnp.array([T, 7]))[0]
    want = rj.rnn(cell, fused=False).apply(params, batch, jnp.array([T, 7]))[0]
    assert _rel(got, want) < 1e-5
    with pytest.raises(ValueError, match="parallel: expected None or one of"):
        rj.rnn(cell, parallel="yes")
