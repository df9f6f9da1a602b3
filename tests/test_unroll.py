import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from conftest import CELLS, perturb
from reference import loop_unroll

I, H, T = 4, 6, 11


def _setup(name, key, dtype=jnp.float64):
    cell = CELLS[name](H)
    k1, k2, k3 = jax.random.split(key, 3)
    params = perturb(cell.init(k1, I, dtype), k2)
    xs = jax.random.normal(k3, (T, I), dtype)
    return cell, params, xs


def test_padding_semantics(key):
    cell, params, xs = _setup("lstm", key)
    L = 6
    ys, fin = rj.unroll(cell, params, xs, lengths=L)
    assert not np.asarray(ys[L:]).any()  # outputs past length are zero
    ys_short, fin_short = rj.unroll(cell, params, xs[:L])
    np.testing.assert_allclose(ys[:L], ys_short, rtol=1e-13)  # padding does not change valid outputs
    np.testing.assert_allclose(fin.c, fin_short.c, rtol=1e-13)  # final state is the last valid one
    garbage = xs.at[L:].set(1e6)
    ys_g, fin_g = rj.unroll(cell, params, garbage, lengths=L)
    np.testing.assert_array_equal(ys_g, ys)  # values in the padding are never read


def test_reverse_reads_valid_prefix_backwards(key):
    cell, params, xs = _setup("gru", key)
    L = 7
    ys, fin = rj.unroll(cell, params, xs, lengths=L, reverse=True)
    ys_flip, fin_flip = rj.unroll(cell, params, xs[:L][::-1])
    np.testing.assert_allclose(ys[:L], ys_flip[::-1], rtol=1e-13)
    np.testing.assert_allclose(fin, fin_flip, rtol=1e-13)
    assert not np.asarray(ys[L:]).any()


def test_sequence_mask_batches():
    m = rj.sequence_mask(jnp.array([[3, 0], [5, 1]]), 4)
    assert m.shape == (2, 2, 4)
    np.testing.assert_array_equal(m[0, 0], [True, True, True, False])
    np.testing.assert_array_equal(m[0, 1], [False] * 4)
    np.testing.assert_array_equal(m[1, 1], [True, False, False, False])


FAST_PATHS = [dict(unroll=3), dict(remat=True), dict(remat=4), dict(remat=4, unroll=2)]


@pytest.mark.parametrize("name", ["elman_tanh", "jordan", "lstm", "gru"])
def test_fast_paths_equal_reference_values_and_gradients(name, key):
    cell, params, xs = _setup(name, key)

    def loss(p, length, reverse, **kw):
        ys, fin = rj.unroll(cell, p, xs, lengths=length, reverse=reverse, **kw)
        return jnp.sum(ys ** 2) + sum(jnp.sum(l) for l in jax.tree_util.tree_leaves(fin))

    vg = jax.jit(jax.value_and_grad(loss), static_argnums=(1, 2), static_argnames=("unroll", "remat"))
    # reverse flips the inputs and outputs around the same loop: lengths with reverse covers lengths
    for length, reverse, paths in ((None, False, FAST_PATHS[:3]), (7, True, FAST_PATHS)):
        ref_v, ref_g = vg(params, length, reverse)
        for opts in paths:
            v, g = vg(params, length, reverse, **opts)
            np.testing.assert_allclose(v, ref_v, rtol=1e-10, err_msg=str(opts))
            for a, b in zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(ref_g)):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=str(opts))


def test_initial_state_is_used(key):
    cell, params, xs = _setup("lstm", key)
    c0 = rj.LSTMState(jnp.full((H,), 0.3), jnp.full((H,), -0.2))
    ys, _ = rj.unroll(cell, params, xs, initial_state=c0)
    ys_ref, _ = loop_unroll(cell, params, xs, carry=c0)
    np.testing.assert_allclose(ys, ys_ref, rtol=1e-13)
    assert not np.allclose(ys, rj.unroll(cell, params, xs)[0])


@pytest.mark.parametrize("name", CELLS)
def test_vmap_equals_per_example_loop(name, key):
    cell, params, _ = _setup(name, key)
    B = 4
    xs = jax.random.normal(key, (B, T, I), jnp.float64)
    lengths = jnp.array([T, 0, 3, 8])
    layer = rj.rnn(cell)
    ys, fin = layer.apply(params, xs, lengths)
    for b in range(B):
        ys_b, fin_b = layer.apply(params, xs[b], lengths[b])
        np.testing.assert_allclose(ys[b], ys_b, rtol=1e-13, atol=1e-15)
        for a, c in zip(jax.tree_util.tree_leaves(fin), jax.tree_util.tree_leaves(fin_b)):
            np.testing.assert_allclose(a[b], c, rtol=1e-13, atol=1e-15)


def test_second_jitted_call_does_not_retrace(key):
    traces = []
    layer = rj.stack(rj.bidirectional(rj.rnn(rj.lstm(H)), rj.rnn(rj.gru(H)), merge="sum"), rj.rnn(rj.elman(H)),
                     skip="highway")
    params = layer.init(key, I, jnp.float32)

    @jax.jit
    def f(params, xs, lengths):
        traces.append(1)
        return layer.apply(params, xs, lengths)[0].sum()

    xs = jnp.ones((3, T, I), jnp.float32)
    f(params, xs, jnp.array([1, 2, 3]))
    f(params, xs * 2, jnp.array([4, 5, 6]))
    f(jax.tree.map(lambda a: a + 1, params), xs, jnp.array([T, T, 0]))
    assert len(traces) == 1


def test_remat_chunk_longer_than_sequence_and_not_dividing(key):
    cell, params, xs = _setup("gru", key)
    ref, _ = rj.unroll(cell, params, xs)
    for k in (2, 5, T, 50):
        ys, _ = rj.unroll(cell, params, xs, remat=k)
        np.testing.assert_allclose(ys, ref, rtol=1e-13)


@pytest.mark.parametrize("remat", [False, True, 4, 5])
def test_unroll_reduce_equals_sum_over_unroll(remat, key):
    """The streaming loss (no stacked outputs, chunked checkpoints) equals the loss on unroll's outputs."""
    cell = rj.lstm(3)
    k1, k2, k3 = jax.random.split(key, 3)
    params = rj.lstm(3).init(k1, 2, jnp.float64)
    xs = jax.random.normal(k2, (11, 2), jnp.float64)
    tg = jax.random.normal(k3, (11, 3), jnp.float64)

    def per_step(y, t):
        return jnp.sum((y - t) ** 2)

    def ref(p):
        ys, fin = rj.unroll(cell, p, xs)
        return jnp.sum((ys - tg) ** 2), fin

    def red(p):
        return rj.unroll_reduce(cell, p, xs, per_step, targets=tg, remat=remat)

    (v, fin), g = jax.value_and_grad(red, has_aux=True)(params)
    (rv, rfin), rg = jax.value_and_grad(ref, has_aux=True)(params)
    assert abs(float(v - rv)) < 1e-12 * abs(float(rv))
    for a, b in zip(jax.tree_util.tree_leaves((fin, g)), jax.tree_util.tree_leaves((rfin, rg))):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
