import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from conftest import perturb

I, H, T, V = 3, 6, 7, 5


@pytest.mark.parametrize("readout", ["last", "mean", "max", "ends"])
def test_many_to_one_readouts(readout, key):
    layer = rj.rnn(rj.gru(H))
    model = rj.many_to_one(layer, 4, readout=readout, input_size=I)
    params = perturb(model.init(key, jnp.float64), key)
    xs = jax.random.normal(key, (T, I), jnp.float64)
    L = 5
    ys, _ = layer.apply(params["rnn"], xs[:L])
    summary = {"last": ys[-1], "mean": ys.mean(0), "max": ys.max(0), "ends": jnp.concatenate([ys[-1], ys[0]])}[readout]
    expect = summary @ params["head"]["W"] + params["head"]["b"]
    np.testing.assert_allclose(model.apply(params, xs, L), expect, rtol=1e-12)


def test_many_to_one_ends_holds_both_final_states(key):
    fwd, bwd = rj.rnn(rj.lstm(H)), rj.rnn(rj.lstm(H))
    layer = rj.bidirectional(fwd, bwd)
    params = layer.init(key, I, jnp.float64)
    xs = jax.random.normal(key, (T, I), jnp.float64)
    ys, (ff, fb) = layer.apply(params, xs, 5)
    ends = rj.models.READOUTS["ends"][0](ys, 5)
    np.testing.assert_allclose(ends[:H], ff.h, rtol=1e-13)          # forward final state, at L-1
    np.testing.assert_allclose(ends[3 * H:], fb.h, rtol=1e-13)      # backward final state, at 0


def test_many_to_many_token_inputs_and_generation(key):
    model = rj.many_to_many(rj.stack(rj.rnn(rj.lstm(H)), rj.rnn(rj.gru(H)), skip="residual"), V, vocab_size=V,
                            embed_size=4)
    params = perturb(model.init(key, jnp.float64), key, 1.0)
    prompt = jnp.array([1, 2, 3])
    logits, _ = model.apply(params, prompt)
    assert logits.shape == (3, V)
    greedy = model.generate(params, key, prompt, 6, temperature=0.0)
    np.testing.assert_array_equal(model.generate(params, None, prompt, 6), greedy)  # key=None is greedy too
    seq = prompt
    for tok in greedy:  # each greedy token is the arg-max of the offline model on everything before it
        nxt = jnp.argmax(model.apply(params, seq)[0][-1])
        assert int(nxt) == int(tok)
        seq = jnp.concatenate([seq, tok[None]])
    sampled = model.generate(params, key, prompt, 50, temperature=1.0)
    assert sampled.shape == (50,) and sampled.min() >= 0 and sampled.max() < V
    assert len(set(np.asarray(sampled).tolist())) > 1


def test_one_hot_inputs(key):
    model = rj.many_to_many(rj.rnn(rj.elman(H)), V, vocab_size=V)
    params = model.init(key)
    assert params["rnn"]["W_i"].shape == (V, H)


def _seq2seq(key):
    model = rj.encoder_decoder(rj.bidirectional(rj.rnn(rj.gru(H)), rj.rnn(rj.gru(H))), rj.lstm(H), src_vocab=9,
                               tgt_vocab=V, bos=0, eos=1, embed_size=4, readout="ends")
    return model, perturb(model.init(key, jnp.float64), key, 1.0)


def test_encoder_decoder_greedy_equals_teacher_forcing_on_its_own_output(key):
    model, params = _seq2seq(key)
    src = jnp.array([2, 5, 7, 3, 0, 0])
    toks, n = model.generate(params, src, 4, max_len=8)
    tgt_in = jnp.concatenate([jnp.array([0]), toks[:-1]])
    logits = model.apply(params, src, 4, tgt_in, n)
    np.testing.assert_array_equal(jnp.argmax(logits, -1)[:n], toks[:n])
    first_eos = np.flatnonzero(np.asarray(toks) == 1)
    if first_eos.size:  # everything after the first end token is the end token; length includes it
        assert int(n) == first_eos[0] + 1 and (np.asarray(toks)[first_eos[0]:] == 1).all()
    else:
        assert int(n) == 8


def test_encoder_decoder_source_length_and_padding(key):
    model, params = _seq2seq(key)
    tgt_in = jnp.array([0, 2, 3])
    a = model.apply(params, jnp.array([2, 5, 7, 3, 0, 0]), 4, tgt_in)
    b = model.apply(params, jnp.array([2, 5, 7, 3, 8, 8]), 4, tgt_in)
    c = model.apply(params, jnp.array([2, 5, 7, 3, 8, 8]), 6, tgt_in)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_decoding_stops_at_eos(key):
    model, params = _seq2seq(key)
    params["decoder"]["head"]["b"] = params["decoder"]["head"]["b"].at[1].set(100.0)  # always say eos
    toks, n = model.generate(params, jnp.array([2, 3]), 2, max_len=5)
    np.testing.assert_array_equal(toks, [1, 1, 1, 1, 1])
    assert int(n) == 1


def test_one_to_many(key):
    model = rj.one_to_many(rj.gru(H), I, vocab_size=V, bos=0, eos=1, embed_size=4)
    params = perturb(model.init(key, jnp.float64), key, 1.0)
    v = jax.random.normal(key, (I,), jnp.float64)
    toks, n = model.generate(params, v, 6)
    logits = model.apply(params, v, jnp.concatenate([jnp.array([0]), toks[:-1]]))
    np.testing.assert_array_equal(jnp.argmax(logits, -1)[:n], toks[:n])
    s1, _ = model.generate(params, v, 30, key=jax.random.key(1), temperature=2.0)
    s2, _ = model.generate(params, v, 30, key=jax.random.key(2), temperature=2.0)
    assert not np.array_equal(s1, s2)
    with pytest.raises(ValueError, match=r"v: expected shape \(3,\)"):
        model.generate(params, jnp.ones((4,)), 3)
