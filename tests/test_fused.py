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
    k1, k2, k3, k4 = jax.random.split(key, 4)
    params = perturb(fused_layer.init(k1, I, dtype), k2)
    xs = jax.random.normal(k3, (B, T, I), dtype)
    s0 = None
    if initial:
        s0 = jax.tree.map(lambda a: jax.random.normal(k4, (B,) + a.shape, dtype), fused_layer.initial_state(dtype))
    w = jax.random.normal(k4, (T, fused_layer.output_size), dtype)

    def loss_of(layer):
        def loss(p, x, s):
            ys, fin = layer.apply(p, x, lengths, s)
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


# Elman with activations given as callables: the known ones by identity, any other through its own VJP.
CALLABLE_CELLS = {
    "elman_jnp.tanh": lambda H: rj.elman(H, jnp.tanh),
    "elman_jax.nn.relu": lambda H: rj.elman(H, jax.nn.relu),
    "elman_jax.nn.sigmoid": lambda H: rj.elman(H, jax.nn.sigmoid),
    "elman_softsign": lambda H: rj.elman(H, jax.nn.soft_sign),
    "elman_softmax": lambda H: rj.elman(H, jax.nn.softmax),  # not elementwise: still exact
}
ALL_FUSABLE = {**{n: CELLS[n] for n in FUSABLE}, **CALLABLE_CELLS}


@pytest.mark.parametrize("name", ALL_FUSABLE)
@pytest.mark.parametrize("hoist", [True, False], ids=["hoisted", "in-loop"])
@pytest.mark.parametrize("lengths", [None, [7, 3, 0]], ids=["full", "lengths"])
def test_fused_equals_unroller(name, hoist, lengths, key):
    _check(lambda f: rj.rnn(ALL_FUSABLE[name](H), fused=f, hoist_input=hoist), key,
           None if lengths is None else jnp.array(lengths))


@pytest.mark.parametrize("name", ALL_FUSABLE)
def test_fused_reverse_initial_state_unroll(name, key):
    _check(lambda f: rj.rnn(ALL_FUSABLE[name](H), reverse=True, unroll=3, fused=f), key,
           jnp.array([7, 5, 2]), initial=True)


@pytest.mark.parametrize("skip", [None, "highway"])
def test_fused_bidirectional_stack(skip, key):
    def make(f):
        bi = rj.bidirectional(rj.rnn(rj.lstm(H), fused=f), rj.rnn(rj.gru(H), fused=f), merge="sum")
        return rj.stack(bi, rj.rnn(rj.elman(H), fused=f), skip=skip)
    _check(make, key, jnp.array([6, 7, 1]))


def _calls_kernel(layer, cell, batch=(2,)):
    """Does a batched ``layer.apply`` reach the cell's fused kernel? (Counted by wrapping it.)"""
    calls = []
    spy = cell._replace(fused=lambda *a, **k: calls.append(1) or cell.fused(*a, **k))
    lay = layer(spy)
    params = lay.init(jax.random.key(0), 3)
    lay.apply(params, jnp.ones(batch + (4, 3), jnp.float32))
    return bool(calls)


def test_every_fusable_cell_carries_its_kernel():
    for make in list(ALL_FUSABLE.values()):
        assert make(4).fused is not None
    assert rj.jordan(4, 2).fused is None


def test_batched_calls_take_the_kernel_unbatched_calls_the_scan():
    assert _calls_kernel(rj.rnn, rj.gru(4))
    assert _calls_kernel(rj.rnn, rj.elman(4, jnp.sin))                  # any callable activation
    assert not _calls_kernel(rj.rnn, rj.gru(4), batch=())               # one sequence: the generic scan
    assert not _calls_kernel(lambda c: rj.rnn(c, fused=False), rj.gru(4))
    assert not _calls_kernel(lambda c: rj.rnn(c, remat=8), rj.lstm(4))  # remat keeps the generic path
    assert _calls_kernel(lambda c: rj.stack(rj.bidirectional(rj.rnn(c), rj.rnn(c))), rj.lstm(4))


def test_converted_cells_get_their_kernel(key):
    import flax.linen as nn

    for module in (nn.SimpleCell(5), nn.GRUCell(5), nn.LSTMCell(5)):
        variables = module.init(key, module.initialize_carry(key, (3,)), jnp.ones((3,)))
        cell, _ = rj.interop.from_flax(module, variables)
        assert cell.fused is not None, type(module).__name__


def test_fused_errors():
    with pytest.raises(ValueError, match="fused=True: cell 'jordan'"):
        rj.rnn(rj.jordan(4, 2), fused=True)
    with pytest.raises(ValueError, match="fused=True with remat"):
        rj.rnn(rj.lstm(4), fused=True, remat=4)
    with pytest.raises(ValueError, match="hoist_input: expected True, False or 'auto'"):
        rj.rnn(rj.lstm(4), hoist_input="yes")
    with pytest.raises(ValueError, match="fused: expected None, True or False"):
        rj.rnn(rj.lstm(4), fused="yes")
    layer = rj.rnn(rj.gru(4))
    params = layer.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="W_h"):
        layer.apply({**params, "W_h": params["W_h"][:2]}, jnp.zeros((2, 5, 3)))


def test_fused_jit_does_not_retrace(key):
    layer = rj.rnn(rj.lstm(H))
    params = layer.init(key, I, jnp.float32)
    traces = []

    @jax.jit
    def loss(p, x):
        traces.append(1)
        return jnp.mean(layer.apply(p, x)[0] ** 2)

    g = jax.grad(loss)
    x = jnp.ones((B, T, I), jnp.float32)
    g(params, x)
    g(params, x + 1.0)
    assert len(traces) == 1


def test_fused_float32_matches(key):
    layer, ref = rj.rnn(rj.lstm(H), fused=True), rj.rnn(rj.lstm(H), fused=False)
    params = layer.init(key, I, jnp.float32)
    xs = jax.random.normal(key, (B, T, I), jnp.float32)
    got, want = layer.apply(params, xs)[0], ref.apply(params, xs)[0]
    assert got.dtype == jnp.float32
    assert _rel(got, want) < 1e-5


def test_flip_valid_reverses_each_valid_prefix():
    from rnn_jax import _ops

    xs = jnp.arange(2 * 5 * 3.0).reshape(5, 2, 3)  # (T, B, I)
    lengths = jnp.array([5, 2])
    got = _ops.flip_valid(xs, lengths)
    np.testing.assert_array_equal(got[:, 0], xs[::-1, 0])
    np.testing.assert_array_equal(got[:, 1], jnp.concatenate([xs[1::-1, 1], xs[2:, 1]]))
    np.testing.assert_array_equal(_ops.flip_valid(got, lengths), xs)  # an involution


@pytest.mark.parametrize("name", ALL_FUSABLE)
@pytest.mark.parametrize("hoist", [True, False, "auto"])
def test_fused_inference_path_equals_unroller(name, hoist, key):
    """Without differentiation the custom_vjp runs its primal (no residuals kept): same values."""
    layer = rj.rnn(ALL_FUSABLE[name](H), hoist_input=hoist, fused=True)
    ref = rj.rnn(ALL_FUSABLE[name](H), fused=False)
    params = perturb(layer.init(key, I, jnp.float64), key)
    xs = jax.random.normal(key, (B, T, I), jnp.float64)
    lengths = jnp.array([7, 2, 5])
    got = jax.jit(lambda p, x: layer.apply(p, x, lengths))(params, xs)
    want = ref.apply(params, xs, lengths)
    _assert_trees_close(got, want)


def test_hoist_rule():
    assert fused._hoist(False, (True, True)) == (False, False)  # the user's choice wins
    assert fused._hoist(True, (False, False)) == (True, True)
    if jax.default_backend() == "cpu":
        assert fused._hoist("auto", (False, True)) == (False, True)
    with pytest.raises(ValueError, match="hoist"):
        fused._hoist("yes", (True, True))
