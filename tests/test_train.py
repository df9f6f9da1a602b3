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
        pred = model.apply(params, x)[0]  # (B, T, 1)
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
    assert int(res.state.step) == 6  # batches consumed; the bad one updated nothing
    assert int(res.state.opt_state[0][0].count) == 5  # Adam saw the 5 good updates only
    assert all(np.isfinite(l).all() for l in jax.tree_util.tree_leaves(res.state.params))
    template = train.init_state(params, train.optimizer("adam", 1e-2))
    saved, extra = train.load_checkpoint(str(tmp_path / "checkpoint.msgpack"), template)
    assert extra["step"] == 6 == int(saved.step)  # a resume goes on with the next batch, never one twice
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


def test_seed_batches_give_each_seed_its_own_data(key):
    """``seed_batches``: seed i trained on batch stream i equals a single run on that stream."""
    model, loss_fn, batch_fn = _setup(key)
    other = lambda s: jax.tree.map(lambda a: a[::-1], batch_fn(s + 7))  # noqa: E731  a different stream
    stacked = jax.vmap(model.init)(jax.random.split(key, 2))
    tx = train.optimizer("adam", 1e-2)
    both = lambda s: jax.tree.map(lambda a, b: jnp.stack([a, b]), batch_fn(s), other(s))  # noqa: E731
    multi = train.fit(loss_fn, stacked, tx, both, 10, seeds=2, seed_batches=True, progress=False)
    for i, stream in enumerate((batch_fn, other)):
        one = train.fit(loss_fn, jax.tree.map(lambda a: a[i], stacked), tx, stream, 10, progress=False)
        for a, b in zip(jax.tree_util.tree_leaves(one.state.params), jax.tree_util.tree_leaves(multi.state.params)):
            np.testing.assert_allclose(b[i], a, rtol=2e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"batch_fn\(0\).*leading seed axis of size 2"):
        train.fit(loss_fn, stacked, tx, batch_fn, 2, seeds=2, seed_batches=True, progress=False)
    with pytest.raises(ValueError, match="seed_batches=True needs seeds"):
        train.fit(loss_fn, stacked, tx, both, 2, seed_batches=True, progress=False)


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


@pytest.mark.parametrize("mode,scores,stops_after", [("min", [0.5, 0.2, 0.05, 0.01], 3),
                                                      ("max", [0.5, 0.99, 1.0, 1.0], 3)])
def test_stop_at_a_target(key, tmp_path, mode, scores, stops_after):
    """stop_at ends the run at the first evaluation that reaches the target, with status 'reached',
    a checkpoint at that step, and the steps it took; a target never reached trains to the end."""
    model, loss_fn, batch_fn = _setup(key)
    target = 0.1 if mode == "min" else 1.0
    it = iter(scores)
    res = train.fit(loss_fn, model.init(key), train.optimizer("adam", 1e-3), batch_fn, 100, eval_every=5,
                    eval_fn=lambda p: {"m": next(it)}, monitor="m", mode=mode, stop_at=target,
                    run_dir=str(tmp_path / mode), progress=False)
    assert res.status == "reached" and int(res.state.step) == 5 * stops_after and "reached" in res.message
    assert os.path.exists(tmp_path / mode / "checkpoint.msgpack")
    again = train.fit(loss_fn, model.init(key), train.optimizer("adam", 1e-3), batch_fn, 100, eval_every=5,
                      eval_fn=lambda p: {"m": 0.5}, monitor="m", mode=mode, stop_at=target,
                      run_dir=str(tmp_path / mode), resume=True, progress=False)
    assert again.status == "reached" and int(again.state.step) == 5 * stops_after  # resuming keeps it stopped
    for a, b in zip(jax.tree_util.tree_leaves(again.state.params), jax.tree_util.tree_leaves(res.state.params)):
        np.testing.assert_array_equal(a, b)
    never = train.fit(loss_fn, model.init(key), train.optimizer("adam", 1e-3), batch_fn, 10, eval_every=5,
                      eval_fn=lambda p: {"m": 0.5}, monitor="m", mode=mode, stop_at=target, progress=False)
    assert never.status == "done" and int(never.state.step) == 10
    with pytest.raises(ValueError, match="stop_at"):
        train.fit(loss_fn, model.init(key), train.optimizer("adam", 1e-3), batch_fn, 10, stop_at=float("nan"),
                  progress=False)


def test_optimizer_argument_errors():
    with pytest.raises(ValueError, match="name: expected one of"):
        train.optimizer("lbfgs")
    with pytest.raises(ValueError, match="clip_norm: expected a positive number, got -1"):
        train.optimizer("adam", clip_norm=-1)


# ---------------------------------------------------------------------------------------------
# Runs never lose or mix data.

def test_run_dir_is_never_reused_without_resume(key, tmp_path):
    model, loss_fn, batch_fn = _setup(key)
    tx = train.optimizer("adam", 1e-3)
    train.fit(loss_fn, model.init(key), tx, batch_fn, 3, run_dir=str(tmp_path), progress=False, log_every=1)
    before = (tmp_path / "metrics.jsonl").read_text()
    with pytest.raises(ValueError, match="already holds a run"):
        train.fit(loss_fn, model.init(key), tx, batch_fn, 3, run_dir=str(tmp_path), progress=False)
    assert (tmp_path / "metrics.jsonl").read_text() == before  # nothing appended, nothing overwritten


def test_resume_tolerates_a_torn_last_metrics_line(key, tmp_path):
    model, loss_fn, batch_fn = _setup(key)
    tx = train.optimizer("adam", 1e-3)
    train.fit(loss_fn, model.init(key), tx, batch_fn, 4, run_dir=str(tmp_path), progress=False, log_every=1,
              checkpoint_every=2)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "kind": "tr')  # a run killed mid-write
    res = train.fit(loss_fn, model.init(key), tx, batch_fn, 6, run_dir=str(tmp_path), resume=True, progress=False,
                    log_every=1)
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6] and res.status == "done"


def test_a_flipped_byte_in_a_checkpoint_is_an_error(tmp_path):
    path = str(tmp_path / "c.msgpack")
    train.save_checkpoint(path, {"w": jnp.arange(64.0)}, {"step": 3})
    blob = bytearray(open(path, "rb").read())
    blob[len(blob) // 2] ^= 0x01
    open(path, "wb").write(bytes(blob))
    with pytest.raises(ValueError, match="corrupt"):
        train.load_checkpoint(path, {"w": jnp.zeros(64)})


def test_a_monitored_key_that_never_appears_is_an_error(key):
    model, loss_fn, batch_fn = _setup(key)
    with pytest.raises(ValueError, match="monitor: the evaluation returned \\['acc'\\], not 'val_loss'"):
        train.fit(loss_fn, model.init(key), train.optimizer("adam", 1e-3), batch_fn, 10, eval_every=5,
                  eval_fn=lambda p: {"acc": 1.0}, patience=2, progress=False)


def test_one_seed_on_a_seed_axis_and_consistent_counters(key):
    model, loss_fn, batch_fn = _setup(key)
    one = jax.vmap(model.init)(jax.random.split(key, 1))  # a seed axis of size 1: the ordinary request
    res = train.fit(loss_fn, one, train.optimizer("adam", 1e-3), batch_fn, 4, seeds=1, progress=False, log_every=2)
    assert np.shape(res.history[-1]["loss"]) == (1,)
    with pytest.raises(ValueError, match="leading seed axis of size 2"):
        train.fit(loss_fn, one, train.optimizer("adam", 1e-3), batch_fn, 4, seeds=2, progress=False)

    def poisoned(p, batch):  # seed 0's loss is NaN at every step: its update is skipped, its count is not
        loss, aux = loss_fn(p, batch)
        return loss * jnp.where(p["head"]["b"][0] > 100, jnp.nan, 1.0), aux

    two = jax.vmap(model.init)(jax.random.split(key, 2))
    two["head"]["b"] = two["head"]["b"].at[0, 0].set(1000.0)
    step = train.make_step(poisoned, train.optimizer("adam", 1e-3), seeds=2)
    state = jax.vmap(lambda p: train.init_state(p, train.optimizer("adam", 1e-3)))(two)
    for i in range(3):
        state, m = step(state, batch_fn(i))
    np.testing.assert_array_equal(state.step, [3, 3])
    assert not bool(m["finite"][0]) and bool(m["finite"][1])


@pytest.mark.parametrize("bad", [dict(log_every=0), dict(eval_every=-1), dict(steps=-1), dict(patience=0)])
def test_fit_argument_errors(bad, key):
    model, loss_fn, batch_fn = _setup(key)
    steps = bad.pop("steps", 3)
    with pytest.raises(ValueError, match=next(iter(bad), "steps")):
        train.fit(loss_fn, model.init(key), train.optimizer("adam", 1e-3), batch_fn, steps, progress=False, **bad)
