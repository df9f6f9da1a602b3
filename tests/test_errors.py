"""Bad input raises ValueError naming the argument, the expected and the actual shape or value."""
import jax
import jax.numpy as jnp
import pytest

import rnn_jax as rj

I, H, T = 3, 4, 5


def f32(shape):
    return jnp.ones(shape, jnp.float32)


@pytest.fixture
def lstm_layer(key):
    layer = rj.rnn(rj.lstm(H))
    return layer, layer.init(key, I)


def test_wrong_rank(lstm_layer):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match=r"xs: expected shape \(T, 3\), got \(2, 5, 3\); batch with jax.vmap"):
        layer.apply(params, f32((2, T, I)))
    with pytest.raises(ValueError, match=r"xs: expected shape \(T, 3\), got \(5,\)"):
        layer.apply(params, f32((T,)))


def test_wrong_feature_size(lstm_layer):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match=r"xs: expected shape \(T, 3\) \(feature size 3\), got \(5, 7\)"):
        layer.apply(params, f32((T, 7)))


@pytest.mark.parametrize("length", [-1, T + 1])
def test_length_outside_range(lstm_layer, length):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match=rf"length: expected a value in \[0, T\] = \[0, 5\], got {length}"):
        layer.apply(params, f32((T, I)), jnp.array(length))


def test_batch_lengths_checked_before_tracing(lstm_layer):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match=r"lengths: expected values in \[0, T\] = \[0, 5\], got 9 at index 1"):
        rj.apply_batch(layer, params, f32((2, T, I)), jnp.array([3, 9]))
    with pytest.raises(ValueError, match=r"lengths: expected shape \(2,\), got \(3,\)"):
        rj.apply_batch(layer, params, f32((2, T, I)), jnp.array([3, 4, 5]))
    with pytest.raises(ValueError, match=r"xs: expected shape \(B, T, 3\) \(feature size 3\), got \(2, 5, 4\)"):
        rj.apply_batch(layer, params, f32((2, T, 4)), jnp.array([3, 4]))
    with pytest.raises(ValueError, match="lengths: expected an integer dtype"):
        rj.apply_batch(layer, params, f32((2, T, I)), jnp.array([3.0, 4.0]))


def test_params_that_do_not_match_the_cell(lstm_layer, key):
    layer, _ = lstm_layer
    gru_params = rj.gru(H).init(key, I)
    with pytest.raises(ValueError, match=r"params\['W_h'\]: expected shape \(4, 16\), got \(4, 12\)"):
        layer.apply(gru_params, f32((T, I)))
    with pytest.raises(ValueError, match="params: do not match"):
        layer.apply({"W_i": f32((I, 4 * H))}, f32((T, I)))


def test_mixed_dtypes(lstm_layer, key):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match="xs: dtype float64 does not match the params' dtype float32"):
        layer.apply(params, jnp.ones((T, I), jnp.float64))
    mixed = dict(params, W_h=params["W_h"].astype(jnp.float64))
    with pytest.raises(ValueError, match=r"params: mixed dtypes \['float32', 'float64'\]"):
        layer.apply(mixed, f32((T, I)))


def test_integer_inputs(lstm_layer):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match="xs: expected a floating dtype, got int"):
        layer.apply(params, jnp.ones((T, I), jnp.int32))


def test_stack_errors_name_the_inner_leaf(key):
    layer = rj.stack(rj.rnn(rj.gru(H)), rj.rnn(rj.gru(H)))
    params = layer.init(key, I)
    bad = {"layers": (params["layers"][0], rj.gru(H + 1).init(key, H)), "gates": ()}
    with pytest.raises(ValueError, match=r"params\['layers'\]\[1\]\['W_h'\]: expected shape \(4, 12\), got \(5, 15\)"):
        layer.apply(bad, f32((T, I)))


@pytest.mark.parametrize("make,match", [
    (lambda: rj.elman(0), "hidden_size: expected a positive int, got 0"),
    (lambda: rj.lstm(4.5), "hidden_size: expected a positive int, got 4.5"),
    (lambda: rj.elman(4, "swish!"), "activation: unknown activation 'swish!'"),
    (lambda: rj.gru(4, kernel_init="nope"), "kernel_init: unknown initialiser 'nope'"),
    (lambda: rj.bidirectional(rj.rnn(rj.gru(4)), rj.rnn(rj.gru(5)), "sum"), "fwd and bwd output sizes must match"),
    (lambda: rj.bidirectional(rj.rnn(rj.gru(4)), rj.rnn(rj.gru(4)), "max"), "merge: expected one of"),
    (lambda: rj.stack(rj.rnn(rj.gru(4)), rj.rnn(rj.gru(5)), skip="residual"), r"layers\[1\] output size 5"),
    (lambda: rj.stack(rj.rnn(rj.gru(4)), skip="dense"), "skip: expected one of"),
    (lambda: rj.stack(), "layers: expected at least one Layer"),
    (lambda: rj.rnn(rj.rnn(rj.gru(4))), "cell: expected an rnn_jax Cell"),
    (lambda: rj.many_to_one(rj.rnn(rj.gru(4)), 2, readout="first", input_size=3), "readout: expected one of"),
])
def test_construction_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_unroll_option_errors(key):
    cell = rj.gru(H)
    params = cell.init(key, I)
    with pytest.raises(ValueError, match="unroll: expected an int >= 1, got 0"):
        rj.unroll(cell, params, f32((T, I)), unroll=0)
    with pytest.raises(ValueError, match="remat: expected a bool or an int chunk size >= 1, got -2"):
        rj.unroll(cell, params, f32((T, I)), remat=-2)


def test_stream_step_shape(key):
    layer = rj.rnn(rj.gru(H))
    params = layer.init(key, I)
    with pytest.raises(ValueError, match=r"x: expected shape \(3,\), got \(5, 3\)"):
        rj.stream_step(layer, params, rj.stream_init(layer), f32((T, I)))


def test_loss_shape_errors():
    with pytest.raises(ValueError, match=r"targets: expected shape \(5,\) for logits of shape \(5, 3\), got \(4,\)"):
        rj.losses.softmax_cross_entropy(f32((5, 3)), jnp.ones((4,), jnp.int32))
    with pytest.raises(ValueError, match="reduction: expected 'sum', 'mean' or 'none'"):
        rj.losses.mse(f32((5,)), f32((5,)), reduction="max")


def test_checks_happen_at_trace_time_under_jit(lstm_layer):
    layer, params = lstm_layer
    with pytest.raises(ValueError, match="feature size"):
        jax.jit(layer.apply)(params, f32((T, 7)))
