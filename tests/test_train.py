import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import rnn_jax as rj
from rnn_jax import train


def _regression(key, n=64, T=6, I=2):
    """A tiny sequence regression task: predict the running sum of the inputs."""
    xs = jax.random.normal(key, (n, T, I), jnp.float32)
    ys = jnp.cumsum(xs.sum(-1), axis=1)[..., None]  # (n, T, 1)
    return xs, ys


def _setup(key):
    xs, ys = _regression(key)
    model = rj.many_to_many(rj.rnn(rj.gru(8)), 1, input_size=2)

    def loss_fn(params, batch):
        x, y = batch
        pred = jax.vmap(lambda a: model.apply(params, a)[0])(x)
        return jnp.mean((pred - y) ** 2), {}

    idx = train.epoch_batches(64, 16, jax.random.key(7))
    return model, loss_fn, (lambda step: (xs[idx(step)], ys[idx(step)]))


def test_clipping_comes_first_and_does_what_it_says():
    g = {"w": jnp.array([3.0, -4.0, 0.05])}
    p = {"w": jnp.zeros(3)}
    tx = train.optimizer("sgd", 1.0, clip_value=0.1)
    u, _ = tx.update(g, tx.init(p), p)
    np.testing.assert_allclose(u["w"], [-0.1, 0.1, -0.05])
    tx = train.optimizer("sgd", 1.0, clip_norm=1.0)
    u, _ = tx.update(g, tx.init(p), p)
    np.testing.assert_allclose(optax.tree_utils.tree_norm(u), 1.0, rtol=1e-6)
    tx = train.optimizer("sgd", 1.0, clip_value=1.0, clip_norm=1.0)  # value first: [1, -1, .05] then norm 1
    u, _ = tx.update(g, tx.init(p), p)
    np.testing.assert_allclose(-u["w"], np.array([1, -1, 0.05]) / np.linalg.norm([1, -1, 0.05]), rtol=1e-6)


@pytest.mark.parametrize("name", train.OPTIMIZERS)
def test_every_optimiser_learns(name, key):
    model, loss_fn, batch_fn = _setup(key)
    params = model.init(key)
    lr = {"sgd": 0.05, "momentum": 0.02, "nesterov": 0.02, "adagrad": 0.1}.get(name, 5e-3)
    res = train.fit(loss_fn, params, train.optimizer(name, lr, clip_norm=1.0), batch_fn, 120, progress=False,
                    log_every=10)
    first, last = res.history[0]["loss"], res.history[-1]["loss"]
    assert res.status == "done" and last < 0.5 * first, (first, last)


@pytest.mark.parametrize("sched", train.SCHEDULES)
def test_schedules(sched):
    s = train.schedule(1.0, sched, steps=100, warmup=10)
    assert 0 <= float(s(50)) <= 1.0
    if sched != "constant":
        assert float(s(99)) < float(s(20))


def test_resume_equals_uninterrupted(key, tmp_path):
    model, loss_fn, batch_fn = _setup(key)
    params = model.init(key)
    tx = train.optimizer("adam", 1e-2, clip_norm=1.0)
    full = train.fit(loss_fn, params, tx, batch_fn, 30, run_dir=str(tmp_path / "a"), progress=False,
                     checkpoint_every=10)
    part = train.fit(loss_fn, params, tx, batch_fn, 17, run_dir=str(tmp_path / "b"), progress=False,
                     checkpoint_every=10)  # "dies" after step 17; last checkpoint at 17 (end of fit)
    assert int(part.state.step) == 17
    resumed = train.fit(loss_fn, params, tx, batch_fn, 30, run_dir=str(tmp_path / "b"), resume=True, progress=False,
                        checkpoint_every=10)
    for a, b in zip(jax.tree_util.tree_leaves(full.state), jax.tree_util.tree_leaves(resumed.state)):
        np.testing.assert_array_equal(a, b)
    rows = [json.loads(line) for line in open(tmp_path / "b" / "metrics.jsonl")]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [10, 17, 20, 30]


def test_nan_stops_and_keeps_last_good_checkpoint(key, tmp_path):
    model, loss_fn, batch_fn = _setup(key)
    params = model.init(key)

    def poisoned(params, batch):
        loss, aux = loss_fn(params, batch[:2])
        return jnp.where(batch[2] >= 5, jnp.nan, loss), aux

    res = train.fit(poisoned, params, train.optimizer("adam", 1e-2), lambda s: (*batch_fn(s), s), 50,
                    run_dir=str(tmp_path), progress=False, checkpoint_every=100)
    assert res.status == "diverged" and "step 5: loss or gradient is not finite" in res.message
    assert int(res.state.step) == 5
    assert all(np.isfinite(l).all() for l in jax.tree_util.tree_leaves(res.state.params))
    template = train.init_state(params, train.optimizer("adam", 1e-2))
    saved, extra = train.load_checkpoint(str(tmp_path / "checkpoint.msgpack"), template)
    assert extra["step"] == 5
    for a, b in zip(jax.tree_util.tree_leaves(saved.params), jax.tree_util.tree_leaves(res.state.params)):
        np.testing.assert_array_equal(a, b)
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert rows[-1]["kind"] == "diverged"


def test_corrupt_or_missing_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.msgpack"
    path.write_bytes(b"\x00garbage")
    with pytest.raises(ValueError, match="corrupt or not an rnn_jax checkpoint"):
        train.load_checkpoint(str(path), {"w": jnp.zeros(2)})
    with pytest.raises(FileNotFoundError, match="checkpoint: no file at"):
        train.load_checkpoint(str(tmp_path / "nope"), {"w": jnp.zeros(2)})


def test_seeds_train_in_one_program(key):
    model, loss_fn, batch_fn = _setup(key)
    keys = jax.random.split(key, 3)
    stacked = jax.vmap(model.init)(keys)
    tx = train.optimizer("adam", 1e-2)
    multi = train.fit(loss_fn, stacked, tx, batch_fn, 15, seeds=3, progress=False)
    assert np.shape(multi.history[-1]["loss"]) == (3,)
    single = train.fit(loss_fn, model.init(keys[1]), tx, batch_fn, 15, progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(single.state.params), jax.tree_util.tree_leaves(multi.state.params)):
        np.testing.assert_allclose(b[1], a, rtol=2e-5, atol=1e-6)


def test_evaluation_with_several_seeds_uses_the_mean(key, tmp_path):
    model, loss_fn, batch_fn = _setup(key)
    stacked = jax.vmap(model.init)(jax.random.split(key, 2))
    scores = iter([[0.5, 0.1], [0.2, 0.6], [0.9, 0.0]])  # means 0.3, 0.4, 0.45: always improving

    res = train.fit(loss_fn, stacked, train.optimizer("adam", 1e-3), batch_fn, 15, seeds=2, eval_every=5,
                    eval_fn=lambda p: {"acc": next(scores)}, monitor="acc", mode="max", patience=1,
                    run_dir=str(tmp_path), progress=False)
    assert res.status == "done" and res.best["acc"] == [0.9, 0.0]


def test_early_stopping(key, tmp_path):
    model, loss_fn, batch_fn = _setup(key)
    calls = []

    def eval_fn(params):
        calls.append(1)
        return {"val_loss": 1.0}  # never improves after the first evaluation

    res = train.fit(loss_fn, model.init(key), train.optimizer("adam", 1e-3), batch_fn, 1000, eval_fn=eval_fn,
                    eval_every=5, patience=3, run_dir=str(tmp_path), progress=False)
    assert res.status == "early_stopped" and len(calls) == 4 and int(res.state.step) == 20
    assert os.path.exists(tmp_path / "best.msgpack")


def test_optimizer_argument_errors():
    with pytest.raises(ValueError, match="name: expected one of"):
        train.optimizer("lbfgs")
    with pytest.raises(ValueError, match="clip_norm: expected a positive number, got -1"):
        train.optimizer("adam", clip_norm=-1)
