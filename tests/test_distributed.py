"""Data parallelism: a sharded run equals a single-device run; two processes train together; a checkpoint
written by two processes restores on one. Each run is a subprocess (device count and jax.distributed are
fixed per process)."""
import os
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from rnn_jax import distributed, train
from conftest import FAST_COMPILE

# subprocesses compile as the tests here do (conftest.py): the lowest backend optimisation level
WORKER = os.path.join(os.path.dirname(__file__), "_dp_worker.py")


def _run(args, devices=1, timeout=240):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices} {FAST_COMPILE}", JAX_ENABLE_X64="0")
    return subprocess.Popen([sys.executable, WORKER, *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _wait(*procs, timeout=240):
    outs = []
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, out
        outs.append(out)
    return outs


def _load(path):
    with np.load(path) as d:
        return {k: d[k] for k in d.files}


def _max_rel(a, b):
    return max(float(np.abs(a[k] - b[k]).max() / max(np.abs(b[k]).max(), 1e-30)) for k in b)


@pytest.fixture(scope="session")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "params.npz"
    _wait(_run(["--mesh", "none", "--out", str(out)]))
    return _load(out)


@pytest.mark.parametrize("mesh", ["data=4", "data=2,model=2"])
def test_sharded_equals_single_device(mesh, single, tmp_path):
    out = tmp_path / "params.npz"
    _wait(_run(["--mesh", mesh, "--out", str(out)], devices=4))
    sharded = _load(out)
    assert set(sharded) == set(single)
    assert _max_rel(sharded, single) < 1e-5


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_together_and_checkpoint_restores_on_one(single, tmp_path):
    port = _free_port()
    outs = [tmp_path / f"p{i}.npz" for i in range(2)]
    ckpt = tmp_path / "ckpt"
    procs = [_run(["--mesh", "data=4", "--out", str(outs[i]), "--ckpt", str(ckpt), "--coordinator",
                   f"127.0.0.1:{port}", "--num_processes", "2", "--process_id", str(i)], devices=2)
             for i in range(2)]
    logs = _wait(*procs)
    assert "process 0/2 devices 4" in logs[0] and "process 1/2 devices 4" in logs[1]
    p0, p1 = _load(outs[0]), _load(outs[1])
    for k in p0:
        np.testing.assert_array_equal(p0[k], p1[k])  # identical parameters on both processes
    assert _max_rel(p0, single) < 1e-5               # and equal to the single-process run
    # the checkpoint, written once (by process 0), restores in this single process
    model = rj.many_to_many(rj.rnn(rj.gru(8)), 1, input_size=3)
    params = model.init(jax.random.key(0))
    template = train.init_state(params, train.optimizer("adam", 1e-2))
    state, extra = train.load_checkpoint(str(ckpt / "checkpoint.msgpack"), template)
    assert extra["step"] == 12 and int(state.step) == 12
    restored = {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_flatten_with_path(state.params)[0]}
    for k in p0:
        np.testing.assert_array_equal(restored[k], p0[k])
    assert sorted(os.listdir(ckpt)) == ["checkpoint.msgpack", "metrics.jsonl"]


def test_mesh_errors():
    with pytest.raises(ValueError, match="mesh: expected 'data=N'"):
        distributed.parse_mesh("batch=2")
    n = len(jax.devices())
    with pytest.raises(ValueError, match=rf"mesh: \{{'data': {n + 1}\}} needs {n + 1} devices, this run has {n}"):
        distributed.make_mesh(f"data={n + 1}")
    with pytest.raises(ValueError, match="coordinator: a multi-process run needs"):
        distributed.initialize(None, 2, 0)


def test_one_device_mesh_runs_the_same_code(key):
    mesh = distributed.make_mesh("data=1")  # one of however many devices JAX sees
    assert mesh.devices.size == 1
    params = {"w": jnp.ones((3,), jnp.float32)}
    loss = lambda p, b: (jnp.mean((b @ p["w"]) ** 2), {})  # noqa: E731
    x = np.ones((4, 3), np.float32)
    a = train.fit(loss, params, train.optimizer("sgd", 0.1), lambda s: x, 3, mesh=mesh, progress=False)
    b = train.fit(loss, params, train.optimizer("sgd", 0.1), lambda s: x, 3, progress=False)
    np.testing.assert_allclose(a.state.params["w"], b.state.params["w"], rtol=1e-6)


def test_sweep_spread_over_devices_equals_runs_one_by_one(tmp_path):
    import json

    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count=4 {FAST_COMPILE}", JAX_ENABLE_X64="0")
    out = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "_sweep_worker.py"), str(tmp_path)],
                         env=env, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["n"] == 4 and res["devices"] == 4
    assert res["worst"] < 1e-5, res
    assert len(set(res["losses"])) == 4  # four different settings/seeds, not one run copied
    assert sorted(os.listdir(tmp_path)) == ["0", "1", "2", "3"]


def _two_devices(cells):
    """tests/_shard_worker.py's results for the cells, in one process: models split over two devices, float64."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count=2 {FAST_COMPILE}", JAX_ENABLE_X64="1")
    out = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "_shard_worker.py"), *cells],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    import json

    return json.loads(out.stdout.strip().splitlines()[-1])


def test_models_split_over_two_devices_equal_the_whole_batch():
    cells = ["elman", "lstm", "gru", "jordan"]
    res = _two_devices(cells)  # one process for the four cells (each started process costs seconds)
    for cell in cells:
        _check_split(res, cell)


def _check_split(res, cell):
    # jax.shard_map with its default checks: the initial states (zeros or given constants), the shared
    # weights and the decoder's carry are marked as varying per device; gradients of shared weights sum
    # over devices
    assert set(res["shard_map"][cell]) == {
        "many_to_one", "many_to_one_grad", "stack_bidirectional", "stack_bidirectional_grad", "given_initial_state",
        "given_initial_state_grad", "encoder_decoder_grad", "greedy_decoding", "packed_many_to_one",
        "packed_many_to_one_grad"}, cell
    for what, d in res["shard_map"][cell].items():
        assert d < 1e-12, (cell, what, d)
    if cell == "jordan":  # no fused kernel: the data-parallel step below is about the kernels' products
        assert cell not in res["data_parallel"]
        return
    # the batch split over two devices (jax.jit): the fused kernels' weight gradients are one local product
    # per device and one all-reduce; no (T, B, .) activation is gathered onto every device (also with packed
    # steps: 20 rows per device with lengths; the rows are not sorted across devices)
    dp = res["data_parallel"][cell]
    assert dp["collectives"] == dp["packed_collectives"] == ["all-reduce"], dp
    assert dp["grad"] < 1e-12 and dp["packed_grad"] < 1e-12
