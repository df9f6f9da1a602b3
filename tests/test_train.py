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
                    run_dir=str(tmp_path), progress=False, eval_stacked=True)
    assert res.status == "done" and res.best["acc"] == [0.9, 0.0]


def test_eval_fn_is_mapped_over_seeds_by_the_library(key):
    model, loss_fn, batch_fn = _setup(key)
    stacked = jax.vmap(model.init)(jax.random.split(key, 3))
    x, y = batch_fn(0)
    shapes = []

    def eval_one(p):  # one seed's params: no seed axis
        shapes.append(p["head"]["W"].shape)
        return {"val_loss": float(jnp.mean((model.apply(p, x)[0] - y) ** 2))}

    def eval_stacked(p):
        return {"val_loss": jax.vmap(lambda q: jnp.mean((model.apply(q, x)[0] - y) ** 2))(p).tolist()}

    tx = train.optimizer("adam", 1e-2)
    a = train.fit(loss_fn, stacked, tx, batch_fn, 10, seeds=3, eval_every=5, eval_fn=eval_one, progress=False)
    b = train.fit(loss_fn, stacked, tx, batch_fn, 10, seeds=3, eval_every=5, eval_fn=eval_stacked, eval_stacked=True,
                  progress=False)
    assert set(shapes) == {(8, 1)} and len(shapes) == 6  # 3 seeds x 2 evaluations
    evals = [[r["val_loss"] for r in res.history if r["kind"] == "eval"] for res in (a, b)]
    assert len(evals[0][0]) == 3
    np.testing.assert_allclose(evals[0], evals[1], rtol=1e-5)


def _streams(key, n_streams=4, length=61, V=5):
    """Token streams for truncated BPTT: windows of 5 over 4 streams, 12 windows per pass."""
    toks = jax.random.randint(key, (n_streams, length), 0, V)
    L = 5
    per_pass = (length - 1) // L

    def batch_fn(step):
        w = step % per_pass
        return toks[:, w * L:(w + 1) * L], toks[:, w * L + 1:(w + 1) * L + 1]

    return batch_fn, (lambda step: step % per_pass == 0), per_pass


def test_stateful_fit_carries_resets_draws_keys_and_resumes_exactly(key, tmp_path):
    V = 5
    model = rj.many_to_many(rj.stack(rj.rnn(rj.gru(8), recurrent_dropout=0.1), dropout=0.2), V, vocab_size=V,
                            embed_size=4)
    batch_fn, reset, per_pass = _streams(key)
    zero = jnp.zeros((4, 8), jnp.float32)

    def loss_fn(p, batch, key, carry):
        x, y = batch
        logits, final = model.apply(p, x, None, (carry,), key=key)
        return rj.losses.softmax_cross_entropy(logits, y, reduction="mean"), ({}, final[0])

    params = model.init(jax.random.key(1), jnp.float32)
    tx = train.optimizer("adam", 1e-2, clip_norm=1.0)
    k_drop = jax.random.key(2)
    steps = 2 * per_pass + 6
    full = train.fit(loss_fn, params, tx, batch_fn, steps, key=k_drop, carry=zero, reset=reset, progress=False,
                     run_dir=str(tmp_path / "full"), checkpoint_every=10)
    # the same recipe written out: reset at each pass, carry without gradient, key fold_in(k, step)
    p, opt, carry = params, tx.init(params), zero
    for s in range(steps):
        carry = zero if reset(s) else carry
        (loss, (_, carry)), g = jax.value_and_grad(loss_fn, has_aux=True)(p, batch_fn(s), jax.random.fold_in(k_drop, s),
                                                                          carry)
        u, opt = tx.update(g, opt, p)
        p = optax.apply_updates(p, u)
    for a, b in zip(jax.tree_util.tree_leaves(full.state.params), jax.tree_util.tree_leaves(p)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(full.carry, carry, rtol=2e-5, atol=2e-6)
    # dies after 17 updates, resumed: the same params and carry as the uninterrupted run, bit for bit
    train.fit(loss_fn, params, tx, batch_fn, 17, key=k_drop, carry=zero, reset=reset, progress=False,
              run_dir=str(tmp_path / "part"), checkpoint_every=10)
    resumed = train.fit(loss_fn, params, tx, batch_fn, steps, key=k_drop, carry=zero, reset=reset, progress=False,
                        run_dir=str(tmp_path / "part"), resume=True, checkpoint_every=10)
    for a, b in zip(jax.tree_util.tree_leaves((full.state, full.carry)),
                    jax.tree_util.tree_leaves((resumed.state, resumed.carry))):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"\(loss, \(aux dict, new carry\)\)"):
        train.fit(lambda p, b, carry: (jnp.sum(p["head"]["b"]), {}), params, tx, batch_fn, 1, carry=zero,
                  progress=False)
    with pytest.raises(ValueError, match="reset: expected a function"):
        train.fit(loss_fn, params, tx, batch_fn, 1, reset=reset, progress=False)


def test_stateful_fit_with_seeds_gives_each_seed_its_carry_and_key(key):
    model = rj.many_to_many(rj.stack(rj.rnn(rj.gru(8)), dropout=0.3), 5, vocab_size=5, embed_size=4)
    batch_fn, reset, _ = _streams(key)

    def loss_fn(p, batch, key, carry):
        logits, final = model.apply(p, batch[0], None, (carry,), key=key)
        return rj.losses.softmax_cross_entropy(logits, batch[1], reduction="mean"), ({}, final[0])

    one = model.init(jax.random.key(1), jnp.float32)
    stacked = jax.tree.map(lambda a: jnp.stack([a, a]), one)  # two seeds, same start: only the keys differ
    res = train.fit(loss_fn, stacked, train.optimizer("adam", 1e-2), batch_fn, 8, seeds=2, key=jax.random.key(3),
                    carry=jnp.zeros((4, 8), jnp.float32), reset=reset, progress=False)
    assert res.carry.shape == (2, 4, 8)
    assert not np.allclose(res.state.params["head"]["W"][0], res.state.params["head"]["W"][1])


def test_a_wall_clock_budget_stops_and_resumes(key, tmp_path):
    model, loss_fn, batch_fn = _setup(key)
    params = model.init(key)
    tx = train.optimizer("adam", 1e-2)
    res = train.fit(loss_fn, params, tx, batch_fn, 20, max_seconds=0, run_dir=str(tmp_path), progress=False)
    assert res.status == "budget" and int(res.state.step) == 0 and "budget" in res.message
    more = train.fit(loss_fn, params, tx, batch_fn, 20, run_dir=str(tmp_path), resume=True, progress=False)
    assert more.status == "done" and int(more.state.step) == 20
    with pytest.raises(ValueError, match="max_seconds"):
        train.fit(loss_fn, params, tx, batch_fn, 2, max_seconds=-1, progress=False)


def test_steps_per_s_leaves_out_the_first_update(key):
    model, loss_fn, batch_fn = _setup(key)
    res = train.fit(loss_fn, model.init(key), train.optimizer("adam", 1e-2), batch_fn, 10, log_every=5,
                    tokens_per_batch=96, progress=False)
    first, second = res.history
    assert first["first_step_s"] > 0 and "first_step_s" not in second  # compilation, timed once
    assert first["steps_per_s"] > 0 and first["tokens_per_s"] == pytest.approx(96 * first["steps_per_s"])
    one = train.fit(loss_fn, model.init(key), train.optimizer("adam", 1e-2), batch_fn, 3, log_every=1, progress=False)
    assert "steps_per_s" not in one.history[0] and "first_step_s" in one.history[0]
    assert all("steps_per_s" in r for r in one.history[1:])


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
    with pytest.raises(ValueError, match="clip_norm: expected a finite positive number, got -1"):
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


def test_sweep_takes_a_number_of_seeds_as_fit_does(key):
    model, loss_fn, batch_fn = _setup(key)
    rows = train.sweep(loss_fn, model.init, optax.adam, [{"learning_rate": 1e-2}], 2, batch_fn, 3, log_every=3)
    assert [r["seed"] for r in rows] == [0, 1]
    with pytest.raises(ValueError, match="seeds: expected the number of seeds"):
        train.sweep(loss_fn, model.init, optax.adam, [{"learning_rate": 1e-2}], [0, 1], batch_fn, 3)


def test_callbacks_of_ones_own_see_every_update_and_can_stop_the_run(key, tmp_path):
    model, loss_fn, batch_fn = _setup(key)
    seen = []

    class Watch(rj.callbacks.Callback):
        def on_start(self, loop):
            seen.append(("start", loop.start))

        def on_step(self, loop, step, metrics):
            seen.append(step)
            if step == 7:
                loop.save(step)
                return rj.callbacks.Stop("custom", "stopped at 7")

        def on_end(self, loop, status, message):
            seen.append((status, int(loop.state.step), len(loop.history)))

    res = train.fit(loss_fn, model.init(key), train.optimizer("adam", 1e-2), batch_fn, 20, log_every=5,
                    run_dir=str(tmp_path), progress=False, callbacks=[Watch()])
    assert seen == [("start", 0), 1, 2, 3, 4, 5, 6, 7, ("custom", 7, 1)]
    assert (res.status, res.message, int(res.state.step)) == ("custom", "stopped at 7", 7)
    assert train.checkpoint_info(str(tmp_path / "checkpoint.msgpack"))["step"] == 7
    with pytest.raises(ValueError, match=r"callbacks\[0\]: expected an rnn_jax.callbacks.Callback, got builtin_function_or_method; write class"):
        train.fit(loss_fn, model.init(key), train.optimizer("adam", 1e-2), batch_fn, 2, callbacks=[print])
