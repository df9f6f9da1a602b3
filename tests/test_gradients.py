"""Autodiff gradients == central finite differences (float64) for every cell, option and architecture."""
import jax
import jax.numpy as jnp
import pytest

import rnn_jax as rj
from conftest import CELLS, perturb

I, H, T = 3, 4, 6
TOL = 1e-6


def _check(layer_or_loss, key, length=None, params=None):
    k1, k2, k3 = jax.random.split(key, 3)
    layer = layer_or_loss
    params = perturb(layer.init(k1, I, jnp.float64), k2) if params is None else params
    xs = jax.random.normal(k3, (T, I), jnp.float64)
    target = jnp.cos(jnp.arange(T * layer.output_size, dtype=jnp.float64)).reshape(T, layer.output_size)

    def loss(p):
        ys, final = layer.apply(p, xs, length)
        return jnp.sum((ys - target) ** 2) + sum(jnp.sum(jnp.sin(l)) for l in jax.tree_util.tree_leaves(final))

    report = rj.gradcheck.check(loss, params, tol=TOL)
    assert report.ok, str(report)
    return report


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("length,reverse", [(None, False), (4, False), (4, True)])
def test_cell_gradients(name, length, reverse, key):
    _check(rj.rnn(CELLS[name](H), reverse=reverse), key, length)


@pytest.mark.parametrize("merge", ["concat", "sum", "mean", "mul"])
def test_bidirectional_gradients(merge, key):
    _check(rj.bidirectional(rj.rnn(rj.lstm(H)), rj.rnn(rj.gru(H)), merge), key, length=5)


@pytest.mark.parametrize("skip", [None, "residual", "highway"])
def test_stack_gradients(skip, key):
    _check(rj.stack(rj.rnn(rj.elman(H)), rj.rnn(rj.gru(H)), rj.rnn(rj.lstm(H)), skip=skip), key, length=5)


def test_deep_bidirectional_gradients(key):
    bi = lambda c: rj.bidirectional(rj.rnn(c), rj.rnn(c))  # noqa: E731
    _check(rj.stack(bi(rj.gru(H)), bi(rj.gru(H)), skip="highway"), key, length=4)


def test_remat_and_hoist_gradients(key):
    _check(rj.rnn(rj.lstm(H), remat=2, hoist_input=True), key, length=5)


def test_encoder_decoder_gradients(key):
    model = rj.encoder_decoder(rj.bidirectional(rj.rnn(rj.gru(H)), rj.rnn(rj.gru(H))), rj.lstm(H),
                               src_vocab=7, tgt_vocab=6, bos=0, eos=1, embed_size=3, src_embed_size=3,
                               readout="ends")
    params = perturb(model.init(key, jnp.float64), key)
    src = jnp.array([2, 3, 4, 5, 6, 0])
    tgt_in, tgt = jnp.array([0, 3, 4, 2]), jnp.array([3, 4, 2, 1])

    def loss(p):
        logits = model.apply(p, src, 5, tgt_in, 4)
        return rj.losses.softmax_cross_entropy(logits, tgt, 4)

    report = rj.gradcheck.check(loss, params, tol=TOL)
    assert report.ok, str(report)


@pytest.mark.parametrize("readout", ["last", "mean", "max", "ends"])
def test_many_to_one_gradients(readout, key):
    model = rj.many_to_one(rj.rnn(rj.gru(H)), 3, readout=readout, input_size=I)
    params = perturb(model.init(key, jnp.float64), key)
    xs = jax.random.normal(key, (T, I), jnp.float64)

    def loss(p):
        return rj.losses.softmax_cross_entropy(model.apply(p, xs, 5), jnp.array(2))

    report = rj.gradcheck.check(loss, params, tol=TOL)
    assert report.ok, str(report)


def test_gradcheck_catches_a_wrong_gradient(key):
    params = {"w": jnp.array([1.0, 2.0, 3.0])}
    loss = lambda p: jnp.sum(p["w"] ** 3)  # noqa: E731
    good = rj.gradcheck.check(loss, params)
    bad = rj.gradcheck.check(loss, params, grad=lambda p: {"w": 3 * p["w"] ** 2 * 1.001})
    assert good.ok and good.worst < 1e-8
    assert not bad.ok and bad.worst > 5e-4


def test_gradcheck_command_line(capsys):
    from rnn_jax.gradcheck import main
    assert main(["--cell", "elman", "--activation", "relu", "--arch", "bidirectional", "--length", "4"]) == 0
    out = capsys.readouterr().out
    assert "worst" in out and "OK" in out


@pytest.mark.parametrize("cell", ["min_gru", "indrnn", "lru"])
def test_gradcheck_command_line_takes_the_modern_cells(cell, capsys):
    from rnn_jax.gradcheck import main
    assert main(["--cell", cell, "--arch", "stack", "--steps", "4", "--length", "3"]) == 0
    assert "OK" in capsys.readouterr().out
