import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj


def test_cross_entropy_is_the_sum_of_step_losses(key):
    logits = jax.random.normal(key, (6, 4), jnp.float64)
    targets = jnp.array([0, 1, 2, 3, 0, 1])
    logp = jax.nn.log_softmax(logits)
    per_step = -logp[jnp.arange(6), targets]
    np.testing.assert_allclose(rj.losses.softmax_cross_entropy(logits, targets), per_step.sum(), rtol=1e-12)
    np.testing.assert_allclose(rj.losses.softmax_cross_entropy(logits, targets, 4), per_step[:4].sum(), rtol=1e-12)
    np.testing.assert_allclose(rj.losses.softmax_cross_entropy(logits, targets, 4, "mean"), per_step[:4].mean(),
                               rtol=1e-12)
    none = rj.losses.softmax_cross_entropy(logits, targets, 4, "none")
    np.testing.assert_allclose(none[:4], per_step[:4], rtol=1e-12)
    assert not np.asarray(none[4:]).any()
    np.testing.assert_allclose(rj.losses.bits_per_char(logits, targets, 4), per_step[:4].mean() / math.log(2),
                               rtol=1e-12)


def test_uniform_prediction_is_log2_v_bits():
    assert abs(float(rj.losses.bits_per_char(jnp.zeros((5, 8)), jnp.zeros((5,), jnp.int32))) - 3.0) < 1e-6


def test_accuracy_and_mse():
    logits = jnp.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 2.0]])
    targets = jnp.array([0, 0, 0, 0])
    assert float(rj.losses.accuracy(logits, targets)) == 0.5
    assert float(rj.losses.accuracy(logits, targets, 3)) == 2 / 3
    assert float(rj.losses.accuracy(logits, targets, 3, "sum")) == 2
    preds, tgt = jnp.array([[1.0, 2.0], [3.0, 4.0], [9.0, 9.0]]), jnp.zeros((3, 2))
    np.testing.assert_allclose(rj.losses.mse(preds, tgt, 2), (2.5 + 12.5) / 2)
    np.testing.assert_allclose(rj.losses.mse(jnp.array(2.0), jnp.array(0.0)), 4.0)


def test_zero_length_gives_zero_not_nan():
    out = rj.losses.softmax_cross_entropy(jnp.ones((3, 2)), jnp.zeros((3,), jnp.int32), 0, "mean")
    assert float(out) == 0.0


def test_cross_entropy_of_one_prediction_with_a_scalar_target():
    """A single prediction (logits (V,), target ()) is one example: it works, and a bad id is named."""
    logits = jnp.asarray([0.5, -1.0, 2.0])
    want = -jax.nn.log_softmax(logits)[2]
    np.testing.assert_allclose(rj.losses.softmax_cross_entropy(logits, jnp.asarray(2)), want, rtol=1e-6)
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\), got 3"):
        rj.losses.softmax_cross_entropy(logits, jnp.asarray(3))
