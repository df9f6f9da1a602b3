import jax.numpy as jnp
import numpy as np

from rnn_jax.data import long_range as lr


def test_adding(key):
    xs, y = lr.adding(key, 4000, 50)
    assert xs.shape == (4000, 50, 2) and y.shape == (4000,)
    assert (np.asarray(xs[..., 1]).sum(1) == 2).all()
    assert (np.asarray(xs[:, :25, 1]).sum(1) == 1).all()
    np.testing.assert_allclose(float(jnp.mean((y - 1.0) ** 2)), lr.ADDING_BASELINE, rtol=0.08)


def test_copy_memory(key):
    x, y = lr.copy_memory(key, 3, 30)
    assert x.shape == y.shape == (3, 50)
    np.testing.assert_array_equal(y[:, -10:], x[:, :10])
    assert (np.asarray(x[:, 39]) == 9).all() and not np.asarray(y[:, :40]).any()
    assert 1 <= int(x[:, :10].min()) and int(x[:, :10].max()) <= 8


def test_temporal_order(key):
    x, labels = lr.temporal_order(key, 500, 100)
    x = np.asarray(x)
    assert (x[:, 0] == 6).all() and (x[:, -1] == 7).all()
    relevant = [np.flatnonzero((row == 4) | (row == 5)) for row in x]
    assert all(len(r) == 2 and 10 <= r[0] <= 20 and 50 <= r[1] <= 60 for r in relevant)
    decoded = [2 * (row[r[0]] - 4) + (row[r[1]] - 4) for row, r in zip(x, relevant)]
    np.testing.assert_array_equal(decoded, labels)
    assert set(np.asarray(labels).tolist()) == {0, 1, 2, 3}
