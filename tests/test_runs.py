"""How a layer runs is one value (rnn_jax.runs): each spelling, check and way of running."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from rnn_jax import runs

B, T, I, H = 3, 7, 2, 4


@pytest.mark.parametrize(
    "make, keywords, how",
    [
        (rj.gru, {}, rj.Fused()),
        (rj.gru, {"fused": False}, rj.Scan()),
        (rj.gru, {"remat": 4}, rj.Scan(remat=4)),
        (rj.gru, {"unroll": 2, "hoist_input": False, "pack": False}, rj.Fused(2, False, False)),
        (rj.gru, {"fused": False, "pack": "always"}, rj.Scan(pack=True)),
        (lambda h: rj.jordan(h, 2), {}, rj.Scan()),
        (rj.min_gru, {"parallel": "linear", "linear_solver": "scan"}, rj.Linear("scan")),
        (rj.gru, {"parallel": "diagonal", "tol": 1e-4, "max_iters": 7}, rj.Newton(True, 1e-4, 7)),
    ],
)
def test_the_keywords_spell_the_same_value(make, keywords, how):
    assert rj.rnn(make(H), **keywords).how == rj.rnn(make(H), how=how).how
    assert rj.rnn(make(H), how=how).how == how.check(make(H))


@pytest.mark.parametrize("make, hows", [
    (rj.gru, [rj.Scan(), rj.Scan(unroll=3, remat=2), rj.Scan(pack=True), rj.Fused(), rj.Fused(pack=False),
              rj.Newton(tol=1e-12)]),
    (rj.min_gru, [rj.Scan(), rj.Linear("scan"), rj.Linear("associative"), rj.Newton(diagonal=True, tol=1e-12)]),
])
def test_every_way_of_running_gives_the_scans_values_and_gradients(make, hows):
    cell = make(H)
    params = rj.rnn(cell).init(jax.random.key(0), I, jnp.float64)
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
    lengths = jnp.array([7, 4, 0])

    def loss(layer, p):
        ys, final = layer.apply(p, xs, lengths)
        return jnp.sum(ys ** 2) + jnp.sum(jnp.sin(final))

    for how in hows:
        for reverse in (False, True):
            layer, base = rj.rnn(cell, how=how, reverse=reverse), rj.rnn(cell, how=rj.Scan(), reverse=reverse)
            got = jax.value_and_grad(lambda p: loss(layer, p))(params)
            want = jax.value_and_grad(lambda p: loss(base, p))(params)
            chex.assert_trees_all_close(got, want, rtol=1e-9, atol=1e-10, custom_message=f"{how} reverse={reverse}")


def test_each_value_refuses_what_the_cell_cannot_do():
    with pytest.raises(ValueError, match="how=Linear\\(\\): cell 'gru' declares no linear recurrence .* write "
                                         "how=rnn_jax.Newton\\(\\)"):
        rj.rnn(rj.gru(H), how=rj.Linear())
    with pytest.raises(ValueError, match="fused=True: cell 'jordan' has no fused recurrence"):
        rj.rnn(rj.jordan(H, 2), how=rj.Fused())
    with pytest.raises(ValueError, match="how=Scan\\(pack=True, remat=...\\): packed steps keep every step's state"):
        rj.rnn(rj.gru(H), how=rj.Scan(remat=2, pack=True))
    with pytest.raises(ValueError, match="how=Fused\\(pack='yes'\\): expected True or False"):
        rj.rnn(rj.gru(H), how=rj.Fused(pack="yes"))
    with pytest.raises(ValueError, match="max_iters: expected an int >= 1"):
        rj.rnn(rj.gru(H), how=rj.Newton(max_iters=0))


def test_a_way_of_running_is_given_once():
    with pytest.raises(ValueError, match="give the way of running once, as how .* or as keywords, not both"):
        rj.rnn(rj.gru(H), how=rj.Scan(), unroll=2)
    with pytest.raises(ValueError, match="how: expected rnn_jax.Scan\\(...\\), Fused\\(...\\), Linear\\(...\\) or "
                                         "Newton\\(...\\), got 'scan'"):
        rj.rnn(rj.gru(H), how="scan")
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['unrol'\\]"):
        rj.rnn(rj.gru(H), unrol=2)
    with pytest.raises(ValueError, match="recurrent_dropout, zoneout: act inside the step, with the generic scan "
                                         "only \\(how=Fused.*write how=rnn_jax.Scan\\(\\)"):
        rj.rnn(rj.gru(H), how=rj.Fused(), zoneout=0.1)
    with pytest.raises(ValueError, match="parallel='newton' with remat"):
        rj.rnn(rj.gru(H), parallel="newton", remat=2)


def test_regularisation_inside_the_step_runs_the_scan_whatever_the_default():
    # a GRU's default is its kernel; recurrent dropout in a call with a key runs the scan with the mask, and
    # the same call without a key runs the kernel: both equal the scan's values
    layer, scan = rj.rnn(rj.gru(H), recurrent_dropout=0.5), rj.rnn(rj.gru(H), how=rj.Scan(), recurrent_dropout=0.5)
    assert isinstance(layer.how, rj.Fused)
    p = layer.init(jax.random.key(0), I)
    xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float32)
    for key in (None, jax.random.key(2)):
        np.testing.assert_allclose(layer.apply(p, xs, key=key)[0], scan.apply(p, xs, key=key)[0], rtol=1e-5,
                                   atol=1e-6)
    assert runs.default(rj.lstm(2)) == rj.Fused() and runs.default(rj.min_gru(2)) == rj.Scan()


class TestWithAndWithoutJit(chex.TestCase):
    """Each way of running gives the same values called eagerly (op by op, no jit) and under jit."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_every_way_of_running(self):
        xs = jax.random.normal(jax.random.key(1), (B, T, I), jnp.float64)
        lengths = jnp.array([7, 4, 0])
        for make, how in [(rj.gru, rj.Fused()), (rj.gru, rj.Scan(unroll=2)), (rj.min_gru, rj.Linear()),
                          (rj.gru, rj.Newton(tol=1e-12))]:
            layer = rj.rnn(make(H), how=how)
            params = layer.init(jax.random.key(0), I, jnp.float64)
            apply = self.variant(lambda p, x, n: layer.apply(p, x, n))  # noqa: B023 - called in this iteration
            want = rj.rnn(make(H), how=rj.Scan()).apply(params, xs, lengths)
            chex.assert_trees_all_close(apply(params, xs, lengths), want, rtol=1e-9, atol=1e-10)
