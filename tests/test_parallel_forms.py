"""The modern cells (minGRU, minLSTM, LRU, IndRNN): their equations, the same families of checks as every
cell (loop reference, finite differences, batch == per sequence, inert padding), and the parallel form
(lax.associative_scan) of the diagonal linear recurrences (minGRU, minLSTM, LRU) equal to the sequential
scan, values and gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from conftest import perturb
from reference import loop_unroll

I, H, T, B = 3, 4, 9, 3
MODERN = {"min_gru": rj.min_gru, "min_lstm": rj.min_lstm,
          "lru": lambda H: rj.lru(H, 3, r_min=0.5, max_phase=3.0),  # output width 3 != state width 4
          "indrnn": lambda H: rj.indrnn(H, recurrent_max=1.2)}
PARALLEL = ("min_gru", "min_lstm", "lru")


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def numpy_modern(name, params, xs):
    """The papers' equations in numpy, one step at a time (Feng et al. 2024, Orvieto et al. 2023, Li et al. 2018)."""
    P = {k: np.asarray(v) for k, v in params.items()}
    if name == "lru":
        lam = np.exp(-np.exp(P["nu_log"]) + 1j * np.exp(P["theta_log"]))
        h, out = np.zeros(lam.shape, complex), []
        for x in np.asarray(xs):
            h = lam * h + np.exp(P["gamma_log"]) * (x @ (P["B_re"] + 1j * P["B_im"]))
            out.append((h @ (P["C_re"] + 1j * P["C_im"])).real + x @ P["D"])
        return np.stack(out)
    if name == "indrnn":
        u, h, out = np.clip(P["u"], -1.2, 1.2), np.zeros(P["u"].shape), []
        for x in np.asarray(xs):
            h = np.maximum(x @ P["W_i"] + P["b"] + u * h, 0)
            out.append(h)
        return np.stack(out)
    W, b = P["W_i"], P["b_i"]
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
    cell = MODERN[name](H)
    k1, k2, k3 = jax.random.split(key, 3)
    params = perturb(cell.init(k1, I, jnp.float64), k2)
    xs = jax.random.normal(k3, batch + (T, I), jnp.float64)
    return cell, params, xs


@pytest.mark.parametrize("name", MODERN)
def test_modern_cells_follow_their_equations(name, key):
    cell, params, xs = _setup(name, key, ())
    if name == "indrnn":
        params = {**params, "u": params["u"].at[:2].set(jnp.array([1.5, -2.0]))}  # past the bound: clipped
    ys, _ = rj.rnn(cell).apply(params, xs)
    np.testing.assert_allclose(ys, numpy_modern(name, params, xs), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", PARALLEL)
@pytest.mark.parametrize("reverse,solver", [(False, "associative"), (True, "associative"), (True, "scan")])
def test_parallel_form_equals_the_scan_and_the_loop(name, reverse, solver, key):
    """associative_scan == lax.scan == a loop of step, with lengths (0 and T included), a given initial
    state and reverse; values, final states and gradients (float64, 1e-10)."""
    cell, params, xs = _setup(name, key)
    lengths = jnp.array([T, 4, 0])
    s0 = jax.random.normal(jax.random.key(7), (B, H), jnp.float64)
    if name == "lru":  # a complex state
        s0 = s0 + 1j * jax.random.normal(jax.random.key(8), (B, H), jnp.float64)
    seq, par = rj.rnn(cell, reverse=reverse), rj.rnn(cell, reverse=reverse, parallel="linear", linear_solver=solver)

    def loss(layer):
        def f(p, x, n, s):
            ys, fin = layer.apply(p, x, n, s)
            return jnp.sum(jnp.sin(ys)) + jnp.sum(jnp.abs(fin) ** 2), (ys, fin)
        return jax.jit(jax.value_and_grad(f, (0, 1) if name == "lru" else (0, 1, 3), has_aux=True))

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


@pytest.mark.parametrize("name", MODERN)
def test_modern_cells_gradients_against_finite_differences_and_per_sequence_calls(name, key):
    cell, params, xs = _setup(name, key)
    lengths = jnp.array([T, 5, 1])
    layer = rj.rnn(cell, parallel="linear" if name in PARALLEL else None)

    def loss(p, x=xs, n=lengths):
        return jnp.sum(jnp.tanh(layer.apply(p, x, n)[0]))

    report = rj.gradcheck.check(loss, params)
    assert report.worst < 1e-6, report.per_leaf
    per_sequence = jax.vmap(lambda x, n: layer.apply(params, x, n)[0])(xs, lengths)
    np.testing.assert_allclose(per_sequence, layer.apply(params, xs, lengths)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", MODERN)
def test_padding_is_inert_in_the_parallel_form(name, key):
    cell, params, xs = _setup(name, key)
    lengths = jnp.array([T, 4, 0])
    pad = ~rj.sequence_mask(lengths, T)[..., None]
    layer = rj.rnn(cell, parallel="linear" if name in PARALLEL else None)
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
    with pytest.raises(ValueError, match=r"linear must return \(a, b\), two float32 arrays of the state's shape \(4,\)"):
        rj.rnn(bad, parallel="linear").init(key, 2)
    two_states = rj.min_gru(4)._replace(initial_state=lambda dtype=jnp.float32: (jnp.zeros(4, dtype),),
                                        step=lambda p, s, x: ((s[0],), s[0]))
    with pytest.raises(ValueError, match=r"linear: a diagonal linear recurrence has one state array"):
        rj.check_cell(two_states, 2)


def test_deer_takes_the_exact_diagonal_newton_step_of_a_diagonal_cell(key):
    """IndRNN declares a diagonal Jacobian: DEER's diagonal method reads it with one forward-mode product
    per step and takes exactly the dense Newton iterations (same count, same values), and its gradients
    (a diagonal adjoint recurrence) equal the scan's, float64."""
    cell, params, xs = _setup("indrnn", key)
    lengths = jnp.array([T, 4, 0])
    dense = cell._replace(diagonal=False)
    ys_d, fin_d, info_d = rj.parallel.deer(cell, params, xs, lengths, method="diagonal")
    ys_n, fin_n, info_n = rj.parallel.deer(dense, params, xs, lengths, method="newton")
    np.testing.assert_array_equal(info_d.iterations, info_n.iterations)
    assert bool(info_d.converged.all())
    ys_s, fin_s = rj.rnn(cell).apply(params, xs, lengths)
    for got in (ys_d, ys_n):
        np.testing.assert_allclose(got, ys_s, rtol=1e-10, atol=1e-12)
    # the quasi-Newton of a dense cell's diagonal needs more iterations than the exact step
    _, _, info_q = rj.parallel.deer(rj.elman(H, "relu"), perturb(rj.elman(H, "relu").init(key, I, jnp.float64), key),
                                    xs, lengths, method="diagonal")
    assert int(info_q.iterations.max()) > int(info_d.iterations.max())

    def loss(layer):
        return jax.grad(lambda p, x: jnp.sum(jnp.sin(layer.apply(p, x, lengths)[0])), (0, 1))

    g_d, g_s = loss(rj.rnn(cell, parallel="diagonal"))(params, xs), loss(rj.rnn(cell))(params, xs)
    for a, b in zip(jax.tree_util.tree_leaves(g_d), jax.tree_util.tree_leaves(g_s)):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_parallel_layers_take_a_stopping_rule_and_report_it(key):
    """rnn(parallel=..., tol=, max_iters=): an unconverged solve returns the scan's values, and
    layer.parallel_info says how many iterations ran and that it fell back."""
    cell = rj.gru(H)
    params = perturb(cell.init(key, I, jnp.float64), key)
    xs = jax.random.normal(jax.random.key(3), (B, T, I), jnp.float64)
    short = rj.rnn(cell, parallel="newton", max_iters=2)
    info = short.parallel_info(params, xs)
    assert info.iterations.shape == (B,) and bool((info.iterations == 2).all()) and not bool(info.converged.any())
    np.testing.assert_allclose(short.apply(params, xs)[0], rj.rnn(cell).apply(params, xs)[0], rtol=1e-12, atol=1e-12)
    full = rj.rnn(cell, parallel="newton", tol=1e-8)
    info = full.parallel_info(params, xs)
    assert bool(info.converged.all()) and bool((info.residual <= 1e-8).all()) and int(info.iterations.max()) <= T + 1
    assert rj.rnn(cell).parallel_info is None and rj.rnn(rj.min_gru(H), parallel="linear").parallel_info is None
    with pytest.raises(ValueError, match="tol, max_iters: Newton's stopping rule"):
        rj.rnn(cell, tol=1e-6)
    with pytest.raises(ValueError, match="max_iters"):
        rj.rnn(cell, parallel="newton", max_iters=0)
