"""Parity with Flax linen SimpleCell, LSTMCell, GRUCell after weight conversion, and the way back."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj

I, H, T = 4, 6, 9
FLAX_CELLS = {
    "simple_tanh": lambda: nn.SimpleCell(H),
    "simple_relu": lambda: nn.SimpleCell(H, activation_fn=jax.nn.relu),
    "lstm": lambda: nn.LSTMCell(H),
    "gru": lambda: nn.GRUCell(H),
}


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)


def _perturbed_flax(module, key):
    carry = module.initialize_carry(key, (I,))
    variables = module.init(key, carry, jnp.ones((I,), jnp.float32))
    leaves, tdef = jax.tree_util.tree_flatten(variables)
    ks = jax.random.split(key, len(leaves))
    return jax.tree_util.tree_unflatten(tdef, [l + 0.2 * jax.random.normal(k, l.shape, l.dtype) for l, k in zip(leaves, ks)])


@pytest.mark.parametrize("name", FLAX_CELLS)
def test_flax_nn_rnn_matches(name, key):
    module = FLAX_CELLS[name]()
    variables = _perturbed_flax(module, key)
    xs = jax.random.normal(key, (2, T, I), jnp.float32)
    lengths = jnp.array([T, 5])
    ref = nn.RNN(module).apply({"params": {"cell": variables["params"]}}, xs, seq_lengths=lengths)  # (B, T, H)
    cell, params = rj.interop.from_flax(module, variables)
    ys, _ = rj.rnn(cell).apply(params, xs, lengths)
    np.testing.assert_array_less(_rel(ys[0], ref[0]), 1e-5)
    np.testing.assert_array_less(_rel(ys[1, :5], ref[1, :5]), 1e-5)  # Flax does not zero the padding


@pytest.mark.parametrize("name", FLAX_CELLS)
def test_step_and_carry_match_and_round_trip(name, key):
    module = FLAX_CELLS[name]()
    variables = _perturbed_flax(module, key)
    x = jax.random.normal(key, (I,), jnp.float32)
    f_carry = module.initialize_carry(key, (I,))
    f_carry = jax.tree.map(lambda a: a + 0.5, f_carry)
    f_new, f_y = module.apply(variables, f_carry, x)
    cell, params = rj.interop.from_flax(module, variables)
    carry = rj.interop.lstm_carry_from_flax(f_carry) if name == "lstm" else f_carry
    new, y = cell.step(params, carry, x)
    assert _rel(y, f_y) < 1e-5
    if name == "lstm":
        assert _rel(new.c, f_new[0]) < 1e-5
    back = rj.interop.to_flax(module, params)
    assert jax.tree_util.tree_structure(back) == jax.tree_util.tree_structure(variables)
    _, y_back = module.apply(back, f_carry, x)
    assert _rel(y_back, f_y) < 1e-5


def test_from_flax_rejects_what_has_no_equivalent(key):
    with pytest.raises(ValueError, match="residual"):
        m = nn.SimpleCell(H, residual=True)
        rj.interop.from_flax(m, m.init(key, m.initialize_carry(key, (I,)), jnp.ones((I,), jnp.float32)))
    with pytest.raises(ValueError, match="expected flax.linen"):
        rj.interop.from_flax(nn.Dense(3), {})
