"""Cells that are diagonal linear recurrences (minGRU, minLSTM): their equations, the same families of
checks as every cell (loop reference, finite differences, batch == per sequence, inert padding), and
their parallel form (lax.associative_scan) equal to the sequential scan, values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from conftest import perturb
from reference import loop_unroll

I, H, T, B = 3, 4, 9, 3
MINIMAL = {"min_gru": rj.min_gru, "min_lstm": rj.min_lstm}


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def numpy_minimal(name, params, xs):
    """The papers' equations in numpy, one step at a time (Feng et al. 2024)."""
    W, b = np.asarray(params["W_i"]), np.asarray(params["b_i"])
    h, out = np.zeros(W.shape[1] // (2 if name == "min_gru" else 3)), []
    for x in np.asarray(xs):
        g = np.split(x @ W + b, 2 if name == "min_gru" else 3)
        if name == "min_gru":
            z = _sigmoid(g[0])
            h = (1 - z) * h + z * g[1]
        else:
            f, i = _sigmoid(g[0]), _sigmoid(g[1])
            h = f / (f + i) * h + i / (f + i) * g[2]
        out.append(h)
    return np.stack(out)


def _setup(name, key, batch=(B,)):
    cell = MINIMAL[name](H)
    k1, k2, k3 = jax.random.split(key, 3)
    params = perturb(cell.init(k1, I, jnp.float64), k2)
    xs = jax.random.normal(k3, batch + (T, I), jnp.float64)
    return cell, params, xs


@pytest.mark.parametrize("name", MINIMAL)
def test_minimal_cells_follow_their_equations(name, key):
    cell, params, xs = _setup(name, key, ())
    ys, _ = rj.rnn(cell).apply(params, xs)
    np.testing.assert_allclose(ys, numpy_minimal(name, params, xs), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", MINIMAL)
@pytest.mark.parametrize("reverse", [False, True])
def test_parallel_form_equals_the_scan_and_the_loop(name, reverse, key):
    """associative_scan == lax.scan == a loop of step, with lengths (0 and T included), a given initial
    state and reverse; values, final states and gradients (float64, 1e-10)."""
    cell, params, xs = _setup(name, key)
    lengths = jnp.array([T, 4, 0])
    s0 = jax.random.normal(jax.random.key(7), (B, H), jnp.float64)
    seq, par = rj.rnn(cell, reverse=reverse), rj.rnn(cell, reverse=reverse, parallel="linear")

    def loss(layer):
        def f(p, x, n, s):
            ys, fin = layer.apply(p, x, n, s)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(fin ** 2), (ys, fin)
        return jax.jit(jax.value_and_grad(f, (0, 1, 3), has_aux=True))

    for n in (None, lengths):
        (v_s, (ys_s, fin_s)), g_s = loss(seq)(params, xs, n, s0)
        (v_p, (ys_p, fin_p)), g_p = loss(par)(params, xs, n, s0)
        np.testing.assert_allclose(ys_p, ys_s, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(fin_p, fin_s, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(v_p, v_s, rtol=1e-10)
        for a, b in zip(jax.tree_util.tree_leaves(g_p), jax.tree_util.tree_leaves(g_s)):
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    for b in range(B):
        want, want_fin = loop_unroll(cell, params, xs[b], int(lengths[b]), reverse, s0[b])
        np.testing.assert_allclose(ys_p[b], want, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(fin_p[b], want_fin, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", MINIMAL)
def test_minimal_cells_gradients_against_finite_differences_and_per_sequence_calls(name, key):
    cell, params, xs = _setup(name, key)
    lengths = jnp.array([T, 5, 1])
    layer = rj.rnn(cell, parallel="linear")

    def loss(p, x=xs, n=lengths):
        return jnp.sum(jnp.tanh(layer.apply(p, x, n)[0]))

    report = rj.gradcheck.check(loss, params)
    assert report.worst < 1e-6, report.per_leaf
    per_sequence = jax.vmap(lambda x, n: layer.apply(params, x, n)[0])(xs, lengths)
    np.testing.assert_allclose(per_sequence, layer.apply(params, xs, lengths)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", MINIMAL)
def test_padding_is_inert_in_the_parallel_form(name, key):
    cell, params, xs = _setup(name, key)
    lengths = jnp.array([T, 4, 0])
    pad = ~rj.sequence_mask(lengths, T)[..., None]
    layer = rj.rnn(cell, parallel="linear")
    grad = jax.jit(jax.value_and_grad(lambda p, x: jnp.sum(layer.apply(p, x, lengths)[0] ** 2), (0, 1)))
    clean, dirty = grad(params, jnp.where(pad, 0.0, xs)), grad(params, jnp.where(pad, jnp.nan, xs))
    for a, b in zip(jax.tree_util.tree_leaves(dirty), jax.tree_util.tree_leaves(clean)):
        np.testing.assert_array_equal(a, b)


def test_parallel_linear_needs_a_linear_cell_and_checks_it(key):
    with pytest.raises(ValueError, match="parallel='linear': cell 'gru' declares no linear recurrence"):
        rj.rnn(rj.gru(4), parallel="linear")
    with pytest.raises(ValueError, match="parallel='linear' with remat"):
        rj.rnn(rj.min_gru(4), parallel="linear", remat=True)
    bad = rj.min_gru(4)._replace(linear=lambda p, x: (jnp.ones(3), jnp.ones(3)))
    with pytest.raises(ValueError, match=r"linear must return \(a, b\), two float32 arrays of shape \(4,\)"):
        rj.rnn(bad, parallel="linear").init(key, 2)
    two_states = rj.min_gru(4)._replace(initial_state=lambda dtype=jnp.float32: (jnp.zeros(4, dtype),),
                                        step=lambda p, s, x: ((s[0],), s[0]))
    with pytest.raises(ValueError, match=r"linear: a diagonal linear recurrence has one state array"):
        rj.check_cell(two_states, 2)
