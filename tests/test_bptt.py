"""Hand-written BPTT == jax.grad (float64, < 1e-10) == central finite differences (< 1e-6)."""
import jax
import jax.numpy as jnp
import pytest

import rnn_jax as rj
from conftest import perturb
from rnn_jax import bptt

V = 5


def _model(cell, I):
    return rj.many_to_many(rj.rnn(cell), V, input_size=I)


def _case(cell, I, T, key):
    model = _model(cell, I)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    params = perturb(model.init(k1, jnp.float64), k2, 0.5)
    xs = jax.random.normal(k3, (T, I), jnp.float64)
    ys = jax.random.randint(k4, (T,), 0, V)
    return model, params, xs, ys


def _autodiff_loss(model, xs, ys, length):
    def loss(p):
        logits, _ = model.apply(p, xs, length)
        return rj.losses.softmax_cross_entropy(logits, ys, length, "sum")
    return loss


CASES = [("elman", "tanh"), ("elman", "relu"), ("elman", "sigmoid"), ("lstm", None), ("gru", None)]


@pytest.mark.parametrize("kind,act", CASES)
@pytest.mark.parametrize("I,H,T,length", [(3, 4, 6, None), (2, 7, 9, 5), (5, 3, 12, 0), (4, 6, 20, 20)])
def test_hand_bptt_equals_autodiff_and_finite_differences(kind, act, I, H, T, length, key):
    cell = {"elman": lambda: rj.elman(H, act), "lstm": lambda: rj.lstm(H), "gru": lambda: rj.gru(H)}[kind]()
    model, params, xs, ys = _case(cell, I, T, key)
    hand = {"elman": lambda p: bptt.elman_bptt(p, xs, ys, length, act),
            "lstm": lambda p: bptt.lstm_bptt(p, xs, ys, length),
            "gru": lambda p: bptt.gru_bptt(p, xs, ys, length)}[kind]
    loss = _autodiff_loss(model, xs, ys, length)
    E_hand, g_hand = jax.jit(hand)(params)
    E_ad, g_ad = jax.jit(jax.value_and_grad(loss))(params)
    assert abs(float(E_hand) - float(E_ad)) <= 1e-12 * max(1.0, abs(float(E_ad)))
    vs_autodiff = rj.gradcheck.relative_errors(g_hand, g_ad)
    assert max(vs_autodiff.values()) < 1e-10, vs_autodiff
    vs_fd = rj.gradcheck.check(loss, params, grad=lambda p: jax.jit(hand)(p)[1])
    assert vs_fd.worst < 1e-6, str(vs_fd)
    if length == 0:
        assert float(E_hand) == 0.0


def test_hand_bptt_catches_a_wrong_derivative(key):
    """The comparison is sharp: a hand BPTT with tanh' mistaken for 1 - s fails it."""
    model, params, xs, ys = _case(rj.elman(4), 3, 8, key)
    good = bptt.elman_bptt(params, xs, ys)[1]
    bptt._DERIV["tanh_wrong"] = lambda s: 1.0 - s
    bptt._ACT["tanh_wrong"] = jnp.tanh
    try:
        bad = bptt.elman_bptt(params, xs, ys, activation="tanh_wrong")[1]
    finally:
        del bptt._DERIV["tanh_wrong"], bptt._ACT["tanh_wrong"]
    ad = jax.grad(_autodiff_loss(model, xs, ys, None))(params)
    assert max(rj.gradcheck.relative_errors(good, ad).values()) < 1e-10
    assert max(rj.gradcheck.relative_errors(bad, ad).values()) > 1e-2
