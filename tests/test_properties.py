"""Property-based tests over the public API (hypothesis): random cells, architectures, shapes, lengths
and dtypes, and bad values. Every input either works and equals the single-sequence loop reference,
or raises ValueError naming the argument."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rnn_jax as rj
from reference import loop_unroll
from rnn_jax import train

CELLS = {
    "elman-tanh": lambda H: rj.elman(H),
    "elman-relu": lambda H: rj.elman(H, "relu"),
    "elman-softsign": lambda H: rj.elman(H, jax.nn.soft_sign),
    "jordan": lambda H: rj.jordan(H, 2),
    "lstm": lambda H: rj.lstm(H),
    "gru": lambda H: rj.gru(H),
}
ARCHS = ("rnn", "reverse", "bidirectional", "stack")
# derandomize: the same examples on every run, so that CI's verdict does not depend on the draw
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


def _layer(arch, make, H):
    if arch == "rnn":
        return rj.rnn(make(H))
    if arch == "reverse":
        return rj.rnn(make(H), reverse=True)
    if arch == "bidirectional":
        return rj.bidirectional(rj.rnn(make(H)), rj.rnn(make(H)), merge="sum")
    return rj.stack(rj.rnn(make(H)), rj.rnn(make(H)))


@st.composite
def cases(draw):
    cell = draw(st.sampled_from(sorted(CELLS)))
    arch = draw(st.sampled_from(ARCHS))
    if cell == "jordan" and arch in ("bidirectional", "stack"):
        arch = "rnn"  # Jordan's output size differs from H; the combinators above need equal sizes
    H, I, T = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(0, 5))
    batch = draw(st.sampled_from([(), (1,), (3,), (2, 2)]))
    with_lengths = draw(st.booleans())
    n = int(np.prod(batch))
    lengths = np.array(draw(st.lists(st.integers(0, T), min_size=n, max_size=n)), np.int32).reshape(batch) \
        if with_lengths else None
    dtype = draw(st.sampled_from([jnp.float32, jnp.float64]))
    seed = draw(st.integers(0, 2 ** 16))
    return cell, arch, H, I, T, batch, lengths, dtype, seed


@SETTINGS
@given(cases())
def test_batched_apply_equals_the_loop_reference(case):
    cell_name, arch, H, I, T, batch, lengths, dtype, seed = case
    layer = _layer(arch, CELLS[cell_name], H)
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = layer.init(k1, I, dtype)
    xs = jax.random.normal(k2, batch + (T, I), dtype)
    ys, final = layer.apply(params, xs, None if lengths is None else jnp.asarray(lengths))
    assert ys.shape == batch + (T, layer.output_size) and ys.dtype == dtype
    tol = 1e-4 if dtype == jnp.float32 else 1e-10
    n = int(np.prod(batch))
    flat_x = xs.reshape((n, T, I))
    flat_L = [T] * n if lengths is None else lengths.reshape(-1).tolist()
    flat_y = ys.reshape((n, T, layer.output_size))
    for b, L in enumerate(flat_L):
        if arch in ("rnn", "reverse"):
            want, _ = loop_unroll(CELLS[cell_name](H), params, flat_x[b], L, arch == "reverse")
        else:  # one sequence through the same layer: the generic scan, not the fused recurrence
            want, _ = layer.apply(params, flat_x[b], L)
        np.testing.assert_allclose(flat_y[b], want, rtol=tol, atol=tol)
        assert not np.any(np.asarray(flat_y[b, L:]))  # zeros past the length
    assert all(leaf.shape[:len(batch)] == batch for leaf in jax.tree_util.tree_leaves(final))


@SETTINGS
@given(cases(), st.sampled_from(["nan", "inf", "garbage"]))
def test_padding_reaches_no_output_and_no_gradient(case, fill):
    cell_name, arch, H, I, T, batch, lengths, dtype, seed = case
    if lengths is None or T == 0:
        lengths = np.zeros(batch, np.int32) if T == 0 else np.full(batch, max(T - 1, 0), np.int32)
    layer = _layer(arch, CELLS[cell_name], H)
    k1, k2 = jax.random.split(jax.random.key(seed))
    params = layer.init(k1, I, dtype)
    xs = jax.random.normal(k2, batch + (T, I), dtype)
    pad = ~np.asarray(rj.sequence_mask(lengths, T))[..., None]
    value = {"nan": np.nan, "inf": np.inf, "garbage": 1e30}[fill]
    dirty = jnp.where(pad, jnp.asarray(value, dtype), xs)
    L = jnp.asarray(lengths)

    def loss(p, x):
        ys, fin = layer.apply(p, x, L)
        return jnp.sum(ys ** 2) + sum(jnp.sum(f) for f in jax.tree_util.tree_leaves(fin))

    value_and_grad = jax.jit(jax.value_and_grad(loss, (0, 1)))  # one program for both inputs
    clean_v, clean_g = value_and_grad(params, jnp.where(pad, 0, xs))
    dirty_v, dirty_g = value_and_grad(params, dirty)
    np.testing.assert_array_equal(dirty_v, clean_v)
    for a, b in zip(jax.tree_util.tree_leaves(dirty_g), jax.tree_util.tree_leaves(clean_g)):
        np.testing.assert_array_equal(a, b)


@st.composite
def bad_calls(draw):
    """A call with exactly one bad argument, and the argument's name."""
    T, I, B = draw(st.integers(1, 4)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    kind = draw(st.sampled_from(["length_high", "length_negative", "length_float", "lengths_shape",
                                 "feature_size", "int_inputs", "rank", "state_shape"]))
    xs = np.zeros((B, T, I), np.float32)
    lengths = np.full((B,), T, np.int32)
    state = None
    if kind == "length_high":
        lengths[draw(st.integers(0, B - 1))] = T + draw(st.integers(1, 3))
    elif kind == "length_negative":
        lengths[0] = -draw(st.integers(1, 3))
    elif kind == "length_float":
        lengths = lengths.astype(np.float32) + 0.5
    elif kind == "lengths_shape":
        lengths = np.full((B + 1,), T, np.int32)
    elif kind == "feature_size":
        xs = np.zeros((B, T, I + draw(st.integers(1, 2))), np.float32)
    elif kind == "int_inputs":
        xs = np.zeros((B, T, I), np.int32)
    elif kind == "rank":
        xs = np.zeros((I,), np.float32)
    else:
        state = np.zeros((B + 1, 4), np.float32)
    argname = {"feature_size": "xs", "int_inputs": "xs", "rank": "xs", "state_shape": "initial_state"}.get(kind,
                                                                                                          "lengths")
    return I, jnp.asarray(xs), jnp.asarray(lengths), state, argname


@SETTINGS
@given(bad_calls(), st.sampled_from(["gru", "jordan", "lstm"]))
def test_bad_input_raises_value_error_naming_the_argument(call, cell_name):
    I, xs, lengths, state, argname = call
    layer = rj.rnn(CELLS[cell_name](4))
    params = layer.init(jax.random.key(0), I)
    if state is not None and cell_name == "lstm":
        state = rj.LSTMState(state, state)
    with pytest.raises(ValueError, match=rf"^{argname}"):
        layer.apply(params, xs, lengths, None if state is None else jnp.asarray(state) if cell_name != "lstm"
                    else jax.tree.map(jnp.asarray, state))


@SETTINGS
@given(st.integers(2, 6), st.lists(st.integers(-3, 9), min_size=1, max_size=6))
def test_token_ids_outside_the_vocabulary_are_refused(V, ids):
    model = rj.many_to_one(rj.rnn(rj.gru(3)), 2, vocab_size=V, embed_size=2)
    params = model.init(jax.random.key(0))
    tokens = jnp.asarray(ids, jnp.int32)[None]
    if all(0 <= i < V for i in ids):
        assert model.apply(params, tokens).shape == (1, 2)
    else:
        with pytest.raises(ValueError, match=rf"^xs: expected token ids in \[0, {V}\)"):
            model.apply(params, tokens)


# ---- values that bypass checks made for Python numbers (scalar types, traced values, empty axes) ----

FORMS = ("python", "numpy", "jax", "traced")


def _as(form, value, np_dtype):
    """``value`` as a Python number/list, a numpy array or scalar, a JAX array, or (traced) a JAX array
    to be passed through jax.jit."""
    if form == "python":
        return value.tolist() if isinstance(value, np.ndarray) else value
    if form == "numpy":
        return np.asarray(value, np_dtype)[()]
    return jnp.asarray(value, np_dtype)


@SETTINGS
@given(st.sampled_from(["last", "mean", "max", "ends"]), st.sampled_from(["rnn", "reverse", "bidirectional"]),
       st.integers(0, 4), st.sampled_from([(), (2,)]), st.sampled_from(FORMS),
       st.lists(st.integers(-3, 8), min_size=2, max_size=2))
def test_lengths_of_every_type_are_checked_or_act_clamped(readout, arch, T, batch, form, raw):
    """Concrete lengths outside [0, T] (Python, numpy, JAX) raise ValueError naming them; traced ones act
    as if clamped to [0, T] in every layer and readout: equal to the call with the clamped lengths."""
    layer = _layer(arch, CELLS["gru"], 3)
    if readout == "last" and layer.reads_backward:  # refused: the backward direction read one input there
        with pytest.raises(ValueError, match="^readout='last'"):
            rj.many_to_one(layer, 2, input_size=2, readout=readout)
        return
    model = rj.many_to_one(layer, 2, input_size=2, readout=readout)
    params = model.init(jax.random.key(T))
    xs = jax.random.normal(jax.random.key(1), batch + (T, 2), jnp.float32)
    lengths = np.array(raw[: int(np.prod(batch))], np.int64).reshape(batch)
    clamped = jnp.asarray(np.clip(lengths, 0, T), jnp.int32)
    want = model.apply(params, xs, clamped)
    if form == "traced":
        got = jax.jit(model.apply)(params, xs, jnp.asarray(lengths, jnp.int32))
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    elif np.all((lengths >= 0) & (lengths <= T)):
        np.testing.assert_allclose(model.apply(params, xs, _as(form, lengths, np.int64)), want, rtol=1e-6, atol=1e-6)
    else:
        with pytest.raises(ValueError, match=r"^lengths: expected values in \[0, T\]"):
            model.apply(params, xs, _as(form, lengths, np.int64))


@SETTINGS
@given(st.sampled_from([0.0, 0.7, 2.0, -1.0, float("nan"), float("inf")]), st.sampled_from(FORMS),
       st.sampled_from([np.float32, np.float64, np.int32]))
def test_temperatures_of_every_type(value, form, np_dtype):
    """A temperature is a finite number >= 0 whatever its type; 0 is greedy; concrete bad values raise,
    traced ones write no valid token (-1)."""
    if np_dtype is np.int32:
        if not np.isfinite(value):
            return
        value = float(int(value))
    m = rj.many_to_many(rj.rnn(rj.gru(3)), 5, vocab_size=5, embed_size=2)
    p = m.init(jax.random.key(0))
    prompt, k = jnp.array([[1, 2], [3, 4]]), jax.random.key(7)
    valid = np.isfinite(value) and value >= 0
    t = _as(form, value, np_dtype)
    if form == "traced":
        toks, _ = jax.jit(lambda t: m.generate(p, prompt, max_len=4, key=k, temperature=t))(t)
    elif not valid:
        with pytest.raises(ValueError, match="^temperature: expected a finite number >= 0"):
            m.generate(p, prompt, max_len=4, key=k, temperature=t)
        return
    else:
        toks, _ = m.generate(p, prompt, max_len=4, key=k, temperature=t)
    if not valid:
        assert (np.asarray(toks) == -1).all()
    elif value == 0:
        np.testing.assert_array_equal(toks, m.generate(p, prompt, max_len=4)[0])
    else:
        np.testing.assert_array_equal(toks, m.generate(p, prompt, max_len=4, key=k, temperature=float(value))[0])


@SETTINGS
@given(st.sampled_from(["many_to_one", "many_to_many", "encoder_decoder"]), st.integers(0, 2), st.integers(0, 2),
       st.sampled_from(["last", "mean", "max", "ends"]))
def test_empty_axes_work_in_every_model(kind, B, T, readout):
    """T = 0 and a batch of 0: the shapes a model promises, and an empty sequence reads like one whose
    length is 0."""
    V = 5
    layer = rj.rnn(rj.gru(3))
    if kind == "many_to_one":
        m = rj.many_to_one(layer, 2, vocab_size=V, readout=readout)
    elif kind == "many_to_many":
        m = rj.many_to_many(layer, V, vocab_size=V, embed_size=2)
    else:
        m = rj.encoder_decoder(layer, rj.gru(3), tgt_vocab=V, bos=0, eos=1, src_vocab=V, readout=readout)
    p = m.init(jax.random.key(0))
    xs = jnp.zeros((B, T), jnp.int32)
    longer = jnp.zeros((B, T + 2), jnp.int32)
    if kind == "many_to_one":
        out = m.apply(p, xs)
        assert out.shape == (B, 2)
        if T == 0:
            np.testing.assert_allclose(out, m.apply(p, longer, jnp.zeros((B,), jnp.int32)), atol=1e-7)
    elif kind == "many_to_many":
        ys, _ = m.apply(p, xs)
        assert ys.shape == (B, T, V)
    else:
        tgt = jnp.zeros((B, T), jnp.int32)
        assert m.apply(p, xs, None, tgt).shape == (B, T, V)
        toks, n = m.generate(p, xs, max_len=3)
        assert toks.shape == (B, 3) and n.shape == (B,)


@SETTINGS
@given(st.sampled_from([jnp.float16, jnp.bfloat16, jnp.float32]), st.integers(1, 3),
       st.sampled_from(["sum", "mean", "sequence_mean"]))
def test_reductions_accumulate_in_float32_or_wider(dtype, B, reduction):
    """Whatever the logits' dtype, sums and counts are taken in float32: the result equals the float32
    computation on the same (rounded) values."""
    T = 40000
    logits = jnp.asarray(np.random.default_rng(B).standard_normal((B, T, 3)), dtype)
    targets = jnp.zeros((B, T), jnp.int32)
    got = rj.losses.softmax_cross_entropy(logits, targets, reduction=reduction)
    want = rj.losses.softmax_cross_entropy(logits.astype(jnp.float32), targets, reduction=reduction)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(float(got), float(want), rtol=2e-2)


INT_ARGS = {  # name -> a call taking the value
    "hidden_size": lambda v: rj.gru(v),
    "unroll": lambda v: rj.rnn(rj.gru(2), unroll=v),
    "remat": lambda v: rj.rnn(rj.gru(2), remat=v),
    "output_size": lambda v: rj.many_to_one(rj.rnn(rj.gru(2)), v, input_size=1),
    "batch_shape": lambda v: rj.stream_init(rj.rnn(rj.gru(2)), (v,)),
    "batch_size": lambda v: train.epoch_batches(10, v, jax.random.key(0)),
    "max_iters": lambda v: rj.parallel.deer(rj.gru(2), rj.gru(2).init(jax.random.key(0), 1),
                                            jnp.ones((3, 1), jnp.float32), max_iters=v),
}


@SETTINGS
@given(st.sampled_from(sorted(INT_ARGS)), st.sampled_from([-1, 0, 2, 3.0, 2.5, True, "2", None]),
       st.sampled_from(["python", "numpy", "jax"]))
def test_counts_of_every_type(name, value, form):
    """A count is an int >= 1 whether a Python, numpy or JAX integer; anything else is refused, naming it."""
    if form != "python" and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (np.asarray(value)[()] if form == "numpy" else jnp.asarray(value))
    good = isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value >= 1 or (
        isinstance(value, jax.Array) and jnp.issubdtype(value.dtype, jnp.integer) and int(value) >= 1)
    if name == "remat" and isinstance(value, bool):
        good = True  # remat is a bool or a chunk size
    if good:
        INT_ARGS[name](value)
    else:
        with pytest.raises(ValueError, match=rf"^{name}: expected"):
            INT_ARGS[name](value)
