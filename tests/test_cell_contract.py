"""A cell written in ten lines (the contract of rnn_jax.Cell) gets every feature; a cell whose fields
disagree with its step is refused with a ValueError naming the field, before any JAX error."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnn_jax as rj
from conftest import CELLS, perturb
from reference import loop_unroll
from rnn_jax import train

I, H, T = 3, 4, 6


def min_gru(H, output_size=None, state_size=None):
    """minGRU (Feng et al. 2024), sequential form, as the Cell docstring writes it."""
    def init(key, input_size, dtype=jnp.float32):
        k1, k2 = jax.random.split(key)
        glorot = rj.initializers.glorot_uniform
        return {"W_z": glorot(k1, (input_size, H), dtype), "W_h": glorot(k2, (input_size, H), dtype)}

    def step(params, h, x):
        z = jax.nn.sigmoid(x @ params["W_z"])
        h = (1 - z) * h + z * (x @ params["W_h"])
        return h, h

    return rj.Cell(init, lambda dtype=jnp.float32: jnp.zeros((state_size or H,), dtype), step,
                   output_size=output_size or H)


def test_the_docstring_cell_is_the_one_tested():
    src = rj.Cell.__doc__
    for line in ('z = jax.nn.sigmoid(x @ params["W_z"])', 'h = (1 - z) * h + z * (x @ params["W_h"])',
                 "return rnn_jax.Cell(init, lambda dtype=jnp.float32: jnp.zeros((H,), dtype), step, output_size=H)"):
        assert line in src, line


def test_a_ten_line_cell_gets_lengths_reverse_bidirectional_stack_and_models(key):
    cell = min_gru(H)
    k1, k2, k3 = jax.random.split(key, 3)
    xs = jax.random.normal(k1, (3, T, I), jnp.float64)
    lengths = jnp.array([6, 2, 0])
    for reverse in (False, True):
        layer = rj.rnn(cell, reverse=reverse)
        params = layer.init(k2, I, jnp.float64)
        ys, final = layer.apply(params, xs, lengths)
        for b in range(3):
            want, want_final = loop_unroll(cell, params, xs[b], int(lengths[b]), reverse)
            np.testing.assert_allclose(ys[b], want, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(final[b], want_final, rtol=1e-12, atol=1e-12)
    deep = rj.stack(rj.bidirectional(rj.rnn(cell), rj.rnn(cell), merge="sum"), rj.rnn(cell, remat=2), skip="highway")
    model = rj.many_to_one(deep, 5, input_size=I)
    params = model.init(k3, jnp.float64)
    logits = model.apply(params, xs, lengths)
    assert logits.shape == (3, 5) and bool(jnp.all(jnp.isfinite(logits)))
    one = jax.vmap(lambda x, n: model.apply(params, x, n))(xs, lengths)  # per-sequence calls, mapped
    np.testing.assert_allclose(one, logits, rtol=1e-12, atol=1e-12)


def test_a_ten_line_cell_gets_gradcheck_per_example_gradients_streaming_and_fit(key):
    from rnn_jax import gradcheck

    cell = min_gru(H)
    layer = rj.rnn(cell)
    k1, k2 = jax.random.split(key)
    params = perturb(layer.init(k1, I, jnp.float64), k2)
    xs = jax.random.normal(k2, (2, T, I), jnp.float64)
    lengths = jnp.array([T, 3])

    def loss(p, x=xs, n=lengths):
        return jnp.sum(jnp.tanh(layer.apply(p, x, n)[0]))

    report = gradcheck.check(loss, params)
    assert report.ok, report.per_leaf
    per_example = jax.vmap(jax.grad(loss), (None, 0, 0))(params, xs, lengths)
    for b in range(2):
        jax.tree.map(lambda g, w: np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12), jax.tree.map(
            lambda a: a[b], per_example), jax.grad(loss)(params, xs[b], lengths[b]))
    state = rj.stream_init(layer, (2,), jnp.float64)
    outs = []
    for t in range(T):
        state, y = rj.stream_step(layer, params, state, xs[:, t])
        outs.append(y)
    np.testing.assert_allclose(jnp.stack(outs, 1), layer.apply(params, xs)[0], rtol=1e-12, atol=1e-12)

    model = rj.many_to_one(rj.rnn(min_gru(8)), 2, input_size=I)
    data = jax.random.normal(k1, (64, T, I), jnp.float32)
    labels = (data[:, :, 0].sum(1) > 0).astype(jnp.int32)

    def model_loss(p, batch):
        x, y = batch
        return rj.losses.softmax_cross_entropy(model.apply(p, x), y, reduction="mean"), {}

    p0 = model.init(k2, jnp.float32)
    result = train.fit(model_loss, p0, optax.adam(3e-2), lambda s: (data, labels), 60, progress=False)
    assert float(model_loss(result.state.params, (data, labels))[0]) < 0.5 * float(model_loss(p0, (data, labels))[0])


@pytest.mark.parametrize("name", CELLS)
def test_input_size_is_read_from_every_cell_and_layer_params(name, key):
    cell = CELLS[name](H)
    assert rj.input_size_of(cell.init, cell.init(key, 7)) == 7
    deep = rj.stack(rj.bidirectional(rj.rnn(CELLS[name](H)), rj.rnn(CELLS[name](H))), rj.rnn(rj.gru(2)))
    assert rj.input_size_of(deep.init, deep.init(key, 5)) == 5
    layer = rj.rnn(cell)
    with pytest.raises(ValueError, match=r"xs: expected shape \(\*batch, T, 7\) \(feature size 7, from params\)"):
        layer.apply(layer.init(key, 7), jnp.zeros((2, 3, 6)))


def test_a_cell_with_no_input_weights_has_no_input_size(key):
    """A cell whose params do not grow with the input (here: none at all) reports None, and runs."""
    cell = rj.Cell(lambda key, n, dtype=jnp.float32: {}, lambda dtype=jnp.float32: jnp.zeros((2,), dtype),
                   lambda p, h, x: (h + jnp.sum(x), h), output_size=2)
    assert rj.input_size_of(cell.init, {}) is None
    ys, final = rj.rnn(cell).apply({}, jnp.ones((1, 3, 4)))
    np.testing.assert_array_equal(final, [[12.0, 12.0]])


def _mismatched(**kw):
    good = min_gru(H)
    return good._replace(**kw)


@pytest.mark.parametrize("cell,field", [
    (min_gru(H, output_size=5), r"output_size is 5, but step returns an output of shape \(4,\)"),
    (min_gru(H, state_size=6), r"initial_state \(state \(6,\)\) do not agree with step"),
    (_mismatched(initial_state=lambda dtype=jnp.float32: (jnp.zeros((H,), dtype),)),
     r"initial_state \(\[0\] \(4,\)\) do not agree with step"),
    (_mismatched(step=lambda p, h, x: ((h,), h)), r"initial_state: step returns a state of structure"),
    (_mismatched(initial_state=lambda dtype=jnp.float32: jnp.zeros((H,), jnp.int32)),
     r"initial_state: shape \(4,\) int32, but step returns a state of shape \(4,\) float32"),
    (_mismatched(init=lambda key, n, dtype=jnp.float32: {"W_z": jnp.zeros((n, H + 1), dtype),
                                                          "W_h": jnp.zeros((n, H), dtype)}),
     r"init's params \(\['W_h'\] \(3, 4\), \['W_z'\] \(3, 5\)\)"),
    (_mismatched(step=lambda p, h, x: (h, jnp.zeros((H,), jnp.float16))), r"step returns a float16 output"),
    (_mismatched(init=lambda key, n: {}), r"init\(key, 3, float32\) failed"),
])
def test_a_mismatched_cell_is_refused_naming_the_field(cell, field, key):
    with pytest.raises(ValueError, match=field):
        rj.rnn(cell).init(key, I)
    with pytest.raises(ValueError, match=field):
        rj.check_cell(cell, I)
    with pytest.raises(ValueError, match=field):  # models initialise their layers
        rj.many_to_one(rj.rnn(cell), 2, input_size=I).init(key)


@pytest.mark.parametrize("kw,message", [
    (dict(output_size="4"), "cell.output_size: expected a positive int, got '4'"),
    (dict(output_size=0), "cell.output_size: expected a positive int, got 0"),
    (dict(step=None), "cell.step: expected a function, got NoneType"),
    (dict(fused=3), "cell.fused: expected a function or None, got int"),
    (dict(name=None), "cell.name: expected a string, got NoneType"),
])
def test_a_malformed_cell_is_refused_when_the_layer_is_built(kw, message):
    with pytest.raises(ValueError, match=message):
        rj.rnn(_mismatched(**kw))


def test_applied_params_are_checked_against_the_cell(key):
    layer = rj.rnn(min_gru(H))
    params = layer.init(key, I)
    with pytest.raises(ValueError, match=r"params\['W_h'\]: expected shape \(3, 4\), got \(3, 5\)"):
        layer.apply({**params, "W_h": jnp.zeros((I, H + 1))}, jnp.zeros((2, T, I)))
    with pytest.raises(ValueError, match=r"params\['W_h'\]: expected shape \(3, 4\), got \(3, 5\)"):
        rj.check_cell(min_gru(H), I, params={**params, "W_h": jnp.zeros((I, H + 1))})
