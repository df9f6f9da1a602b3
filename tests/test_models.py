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
    ends = rj.models.READOUTS["ends"][0](ys[:, None], jnp.array([5]))[0]  # readouts see (T, B, H)
    np.testing.assert_allclose(ends[:H], ff.h, rtol=1e-13)          # forward final state, at L-1
    np.testing.assert_allclose(ends[3 * H:], fb.h, rtol=1e-13)      # backward final state, at 0


def test_many_to_many_token_inputs_and_generation(key):
    model = rj.many_to_many(rj.stack(rj.rnn(rj.lstm(H)), rj.rnn(rj.gru(H)), skip="residual"), V, vocab_size=V,
                            embed_size=4)
    params = perturb(model.init(key, jnp.float64), key, 1.0)
    prompt = jnp.array([1, 2, 3])
    logits, _ = model.apply(params, prompt)
    assert logits.shape == (3, V)
    greedy, n = model.generate(params, prompt, max_len=6, key=key, temperature=0.0)
    assert int(n) == 6
    np.testing.assert_array_equal(model.generate(params, prompt, max_len=6)[0], greedy)  # key=None is greedy too
    seq = prompt
    for tok in greedy:  # each greedy token is the arg-max of the offline model on everything before it
        nxt = jnp.argmax(model.apply(params, seq)[0][-1])
        assert int(nxt) == int(tok)
        seq = jnp.concatenate([seq, tok[None]])
    sampled, _ = model.generate(params, prompt, max_len=50, key=key, temperature=1.0)
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
    assert toks.shape == (8,) and n.shape == ()
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
    toks, n = model.generate(params, v, max_len=6)
    logits = model.apply(params, v, jnp.concatenate([jnp.array([0]), toks[:-1]]))
    np.testing.assert_array_equal(jnp.argmax(logits, -1)[:n], toks[:n])
    s1, _ = model.generate(params, v, max_len=30, key=jax.random.key(1), temperature=2.0)
    s2, _ = model.generate(params, v, max_len=30, key=jax.random.key(2), temperature=2.0)
    assert not np.array_equal(s1, s2)
    with pytest.raises(ValueError, match=r"v: expected shape \(\*batch, 3\)"):
        model.generate(params, jnp.ones((4,)), max_len=3)


# ---------------------------------------------------------------------------------------------
# Batch-first: a batched call equals a Python loop over single examples, for every model.

def _tree_close(a, b, tol=1e-10):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(x, y, rtol=tol, atol=tol)


LAYERS = {
    "gru": lambda: rj.rnn(rj.gru(H)),
    "reversed-lstm": lambda: rj.rnn(rj.lstm(H), reverse=True),
    "jordan": lambda: rj.rnn(rj.jordan(H, 4)),
    "bi-stack": lambda: rj.stack(rj.bidirectional(rj.rnn(rj.lstm(H)), rj.rnn(rj.elman(H))),
                                 rj.bidirectional(rj.rnn(rj.gru(H)), rj.rnn(rj.gru(H))), skip="highway"),
}


@pytest.mark.parametrize("arch,readout", [("gru", "last"), ("gru", "mean"), ("gru", "max"), ("gru", "ends"),
                                          ("reversed-lstm", "ends"), ("jordan", "mean"), ("bi-stack", "ends")])
def test_many_to_one_batch_equals_loop(arch, readout, key):
    model = rj.many_to_one(LAYERS[arch](), 4, readout=readout, vocab_size=V, embed_size=3)
    params = perturb(model.init(key, jnp.float64), key)
    xs = jax.random.randint(key, (2, 2, T), 0, V)
    lengths = jnp.array([[T, 0], [1, 5]])
    got = model.apply(params, xs, lengths)
    assert got.shape == (2, 2, 4)
    one = jax.jit(model.apply)  # one sequence: the generic scan; compiled once for the loop
    for i in range(2):
        for j in range(2):
            _tree_close(got[i, j], one(params, xs[i, j], lengths[i, j]))
    # vmap over single-sequence calls equals the batched call; per-example gradients equal a loop
    np.testing.assert_allclose(jax.vmap(lambda x, L: model.apply(params, x, L))(xs[0], lengths[0]), got[0],
                               rtol=1e-10, atol=1e-12)
    loss = lambda p, x, L: jnp.sum(jnp.tanh(model.apply(p, x, L)))  # noqa: E731
    per_ex = jax.vmap(jax.grad(loss), in_axes=(None, 0, 0))(params, xs[1], lengths[1])
    grad_one = jax.jit(jax.grad(loss))
    for j in range(2):
        _tree_close(jax.tree.map(lambda a: a[j], per_ex), grad_one(params, xs[1, j], lengths[1, j]))


@pytest.mark.parametrize("arch", ["gru", "jordan", "bi-stack"])
def test_many_to_many_batch_equals_loop_with_initial_state(arch, key):
    layer = LAYERS[arch]()
    model = rj.many_to_many(layer, 4, input_size=I)
    params = perturb(model.init(key, jnp.float64), key)
    xs = jax.random.normal(key, (3, T, I), jnp.float64)
    lengths = jnp.array([T, 2, 0])
    s0 = jax.tree.map(lambda a: jax.random.normal(key, (3,) + a.shape, jnp.float64), layer.initial_state(jnp.float64))
    (ys, fin) = model.apply(params, xs, lengths, s0)
    one = jax.jit(model.apply)
    for b in range(3):
        y1, f1 = one(params, xs[b], lengths[b], jax.tree.map(lambda a: a[b], s0))
        _tree_close(ys[b], y1)
        _tree_close(jax.tree.map(lambda a: a[b], fin), f1)
    # past the length the layer outputs zeros, so the logits are the head's bias
    np.testing.assert_allclose(ys[1, 2:], jnp.broadcast_to(params["head"]["b"], ys[1, 2:].shape), rtol=1e-12)


def test_language_model_generate_batch_equals_loop(key):
    model = rj.many_to_many(rj.stack(rj.rnn(rj.lstm(H)), rj.rnn(rj.gru(H))), V, vocab_size=V, embed_size=4, eos=1)
    params = perturb(model.init(key, jnp.float64), key, 1.0)
    prompts = jax.random.randint(key, (3, 4), 0, V)
    plen = jnp.array([4, 1, 2])
    toks, n = model.generate(params, prompts, plen, max_len=7)
    assert toks.shape == (3, 7) and n.shape == (3,)
    for b in range(3):
        t1, n1 = model.generate(params, prompts[b, :int(plen[b])], max_len=7)
        np.testing.assert_array_equal(toks[b], t1)
        assert int(n[b]) == int(n1)
    no_eos = rj.many_to_many(rj.stack(rj.rnn(rj.lstm(H)), rj.rnn(rj.gru(H))), V, vocab_size=V, embed_size=4)
    sampled, n = no_eos.generate(params, jnp.zeros((2, 1), jnp.int32), max_len=40, key=key, temperature=1.0)
    assert not np.array_equal(sampled[0], sampled[1])  # each row draws its own samples (same prompt)
    np.testing.assert_array_equal(n, [40, 40])


def test_encoder_decoder_batch_equals_loop(key):
    model, params = _seq2seq(key)
    src = jax.random.randint(key, (3, 6), 2, 9)
    src_len = jnp.array([6, 2, 4])
    tgt_in = jax.random.randint(jax.random.fold_in(key, 1), (3, 5), 0, V)
    tgt_len = jnp.array([5, 3, 1])
    logits = model.apply(params, src, src_len, tgt_in, tgt_len)
    toks, n = model.generate(params, src, src_len, max_len=6)
    apply_one = jax.jit(model.apply)
    generate_one = jax.jit(lambda p, s, L: model.generate(p, s, L, max_len=6))
    for b in range(3):
        _tree_close(logits[b], apply_one(params, src[b], src_len[b], tgt_in[b], tgt_len[b]))
        t1, n1 = generate_one(params, src[b], src_len[b])
        np.testing.assert_array_equal(toks[b], t1)
        assert int(n[b]) == int(n1)
    assert float(jnp.abs(logits[2, 1:]).max()) > 0  # logits past tgt_len are computed, the loss masks them


def test_one_to_many_batch_equals_loop(key):
    model = rj.one_to_many(rj.lstm(H), I, vocab_size=V, bos=0, eos=1, embed_size=4)
    params = perturb(model.init(key, jnp.float64), key, 1.0)
    v = jax.random.normal(key, (2, 2, I), jnp.float64)
    toks, n = model.generate(params, v, max_len=5)
    assert toks.shape == (2, 2, 5) and n.shape == (2, 2)
    for i in range(2):
        for j in range(2):
            t1, n1 = model.generate(params, v[i, j], max_len=5)
            np.testing.assert_array_equal(toks[i, j], t1)
    tgt = jax.random.randint(key, (2, 2, 4), 0, V)
    _tree_close(model.apply(params, v, tgt)[1, 0], model.apply(params, v[1, 0], tgt[1, 0]))


def test_generate_signature_is_shared(key):
    import inspect

    lm = rj.many_to_many(rj.rnn(rj.gru(H)), V, vocab_size=V)
    seq = rj.encoder_decoder(rj.rnn(rj.gru(H)), rj.gru(H), tgt_vocab=V, bos=0, eos=1, src_vocab=V)
    o2m = rj.one_to_many(rj.gru(H), I, vocab_size=V, bos=0, eos=1)
    sigs = [list(inspect.signature(m.generate).parameters) for m in (lm, seq, o2m)]
    assert all(len(s) == 6 and s[0] == "params" and s[3:] == ["max_len", "key", "temperature"] for s in sigs), sigs


def test_jitted_model_does_not_retrace(key):
    model = rj.many_to_one(rj.rnn(rj.gru(H)), 3, input_size=I)
    params = model.init(key)
    traces = []

    @jax.jit
    def loss(p, x, L):
        traces.append(1)
        return jnp.sum(model.apply(p, x, L))

    g = jax.grad(loss)
    g(params, jnp.ones((4, T, I), jnp.float32), jnp.array([1, 2, 3, 4]))
    g(params, jnp.ones((4, T, I), jnp.float32) * 2, jnp.array([4, 3, 2, 1]))
    assert len(traces) == 1


@pytest.mark.parametrize("dec", ["elman", "lstm", "gru", "jordan"])
def test_decoder_reads_embedding_and_context_at_every_step(dec, key):
    """Teacher forcing equals a loop of the decoder cell's own step on ``[embed(y_{t-1}), context]``: the
    batched decoder takes the context's input product once per sequence (static inputs)."""
    cell = {"elman": rj.elman(H), "lstm": rj.lstm(H), "gru": rj.gru(H), "jordan": rj.jordan(H, H)}[dec]
    enc = rj.rnn(rj.gru(H))
    model = rj.encoder_decoder(enc, cell, src_vocab=9, tgt_vocab=V, bos=0, eos=1, embed_size=4, src_embed_size=3)
    params = perturb(model.init(key, jnp.float64), key, 1.0)
    src, src_len = jax.random.randint(key, (3, 6), 2, 9), jnp.array([6, 2, 4])
    tgt_in, tgt_len = jax.random.randint(jax.random.fold_in(key, 1), (3, 5), 0, V), jnp.array([5, 3, 1])
    logits = model.apply(params, src, src_len, tgt_in, tgt_len)
    p = params["decoder"]
    for b in range(3):
        ys, _ = enc.apply(params["rnn"], params["embed"]["E"][src[b]], src_len[b])
        ctx = ys[src_len[b] - 1]
        state = jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(cell.initial_state()),
                                             [jnp.tanh(ctx @ d["W"] + d["b"]) for d in p["bridge"]])
        for t in range(int(tgt_len[b])):
            state, y = cell.step(p["cell"], state, jnp.concatenate([p["E"][tgt_in[b, t]], ctx]))
            np.testing.assert_allclose(logits[b, t], y @ p["head"]["W"] + p["head"]["b"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("arch", ["reversed-lstm", "bi-stack"])
def test_layers_that_read_backwards_default_to_both_ends_and_refuse_last(arch, key):
    """The output at the last valid step of a backward direction has seen one input: a model's default
    readout of such a layer is "ends" (both directions' final states), and "last" is refused."""
    layer = LAYERS[arch]()
    assert layer.reads_backward and not LAYERS["gru"]().reads_backward
    default = rj.many_to_one(layer, 4, vocab_size=V, embed_size=3)
    ends = rj.many_to_one(layer, 4, vocab_size=V, embed_size=3, readout="ends")
    params = default.init(key)
    xs, lengths = jax.random.randint(key, (2, T), 0, V), jnp.array([T, 3])
    np.testing.assert_array_equal(default.apply(params, xs, lengths), ends.apply(params, xs, lengths))
    with pytest.raises(ValueError, match="readout='last': the outputs of .* come from a backward direction"):
        rj.many_to_one(layer, 4, vocab_size=V, readout="last")
    with pytest.raises(ValueError, match="readout='last'"):
        rj.encoder_decoder(layer, rj.gru(H), tgt_vocab=V, bos=0, eos=1, src_vocab=V, readout="last")
