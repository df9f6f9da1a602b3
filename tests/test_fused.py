"""The fused recurrences (hand-written backward pass) equal the generic unroller, values and gradients."""
import chex
import jax
import jax.extend.core
import jax.numpy as jnp
import numpy as np
import pytest

import rnn_jax as rj
from rnn_jax import fused
from rnn_jax.unroll import scan as generic_scan
from conftest import CELLS, perturb
from reference import loop_unroll

FUSABLE = [n for n in CELLS if n != "jordan"]
B, T, I, H = 3, 7, 4, 5
TOL = 1e-10


def _rel(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _assert_trees_close(got, want, tol=TOL):
    """Same structure and shapes, and every leaf within ``tol`` of the other relative to its largest value."""
    chex.assert_trees_all_equal_shapes(got, want)
    for g, w in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        assert _rel(g, w) < tol, _rel(g, w)


def _pair(make, key, initial, dtype=jnp.float64, batch=B):
    """(fused loss, reference loss, params, xs, s0): each loss ``(params, xs, s0, lengths)`` weighs every
    output and final-state leaf. Lengths are an argument, so one compiled program serves every pattern."""
    ref_layer, fused_layer = make(False), make(True)
    k1, k2, k3, k4 = jax.random.split(key, 4)
    params = perturb(fused_layer.init(k1, I, dtype), k2)
    xs = jax.random.normal(k3, (batch, T, I), dtype)
    s0 = None
    if initial:
        s0 = jax.tree.map(lambda a: jax.random.normal(k4, (batch,) + a.shape, dtype), fused_layer.initial_state(dtype))
    w = jax.random.normal(k4, (T, fused_layer.output_size), dtype)

    def loss_of(layer):
        def loss(p, x, s, lengths):
            ys, fin = layer.apply(p, x, lengths, s)
            fin_term = sum(jnp.sum(jnp.sin(l)) for l in jax.tree_util.tree_leaves(fin))
            return jnp.sum(jnp.tanh(ys) * jnp.broadcast_to(w, ys.shape)) + fin_term, (ys, fin)
        return loss

    return loss_of(fused_layer), loss_of(ref_layer), params, xs, s0


def _check(make, key, lengths=None, initial=False, batch=B, patterns=None, variants=None):
    """The fused layer's values and gradients equal the generic scan's, with ``lengths`` (None or an
    array), or with each of ``patterns`` (arrays of one shape) through the same two compiled programs.
    ``variants``: ``make(fused, variant)`` builds one fused layer per variant (hoisting choices), all
    compared with the one reference compiled once."""
    argnums = (0, 1, 2) if initial else (0, 1)
    vg = lambda loss: jax.jit(jax.value_and_grad(loss, argnums=argnums, has_aux=True))  # noqa: E731
    want = None
    for v in ([None] if variants is None else variants):
        f_loss, r_loss, params, xs, s0 = _pair(make if variants is None else (lambda f: make(f, v)), key, initial,
                                               batch=batch)
        if want is None:
            ref_vg = vg(r_loss)
            want = [ref_vg(params, xs, s0, n) for n in ([lengths] if patterns is None else patterns)]
        fused_vg = vg(f_loss)
        for n, ((rv, raux), rg) in zip([lengths] if patterns is None else patterns, want):
            (fv, faux), fg = fused_vg(params, xs, s0, n)
            _assert_trees_close(faux, raux)
            assert abs(float(fv - rv)) <= TOL * abs(float(rv))
            _assert_trees_close(fg, rg)


# Elman with activations given as callables other than the named ones, through their own VJP. (A
# named activation IS its callable, test_named_activations_are_their_callables: elman(H, jnp.tanh)
# runs exactly the code of elman(H, "tanh"), and is not tested twice.)
CALLABLE_CELLS = {
    "elman_softsign": lambda H: rj.elman(H, jax.nn.soft_sign),
    "elman_softmax": lambda H: rj.elman(H, jax.nn.softmax),  # not elementwise: still exact
    "indrnn": lambda H: rj.indrnn(H),                                        # the diagonal recurrence
    "indrnn_bounded_tanh": lambda H: rj.indrnn(H, "tanh", recurrent_max=0.9),  # the bound's clip, autodiff
    "indrnn_softsign": lambda H: rj.indrnn(H, jax.nn.soft_sign),             # through its activation's VJP
}
ALL_FUSABLE = {**{n: CELLS[n] for n in FUSABLE}, **CALLABLE_CELLS}
# The kernels' distinct code paths: Elman with a known derivative and through its activation's VJP,
# LSTM and GRU. Every option is tested on these; the other cells (the same loops with another
# activation, or the orthogonal cell's autodiff rule) on one setting each.
KERNEL_PATHS = ["elman_tanh", "elman_softsign", "lstm", "gru"]
OTHER_FUSABLE = [n for n in ALL_FUSABLE if n not in KERNEL_PATHS]


def _options(names, *option_lists, other=None):
    """Every combination of the options for the kernel paths; ``other`` (one combination) for the rest."""
    import itertools

    combos = list(itertools.product(*option_lists))
    return ([(n,) + c for n in KERNEL_PATHS for c in combos]
            + [(n,) + (other or combos[-1]) for n in names if n not in KERNEL_PATHS])


def test_named_activations_are_their_callables():
    for name, fn in [("tanh", jnp.tanh), ("relu", jax.nn.relu), ("sigmoid", jax.nn.sigmoid)]:
        assert rj.resolve_activation(name) is fn


@pytest.mark.parametrize("name,lengths", _options(ALL_FUSABLE, [None, (7, 3, 0)]))
def test_fused_equals_unroller(name, lengths, key):
    _check(lambda f, hoist: rj.rnn(ALL_FUSABLE[name](H), fused=f, hoist_input=hoist), key,
           None if lengths is None else jnp.array(lengths), variants=[True, False] if name in KERNEL_PATHS else [False])


@pytest.mark.parametrize("name", ALL_FUSABLE)
def test_fused_reverse_initial_state_unroll(name, key):
    _check(lambda f: rj.rnn(ALL_FUSABLE[name](H), reverse=True, unroll=3, fused=f), key,
           jnp.array([7, 5, 2]), initial=True)


@pytest.mark.parametrize("skip", [None, "highway"])
def test_fused_bidirectional_stack(skip, key):
    def make(f):
        bi = rj.bidirectional(rj.rnn(rj.lstm(H), fused=f), rj.rnn(rj.gru(H), fused=f), merge="sum")
        return rj.stack(bi, rj.rnn(rj.elman(H), fused=f), skip=skip)
    _check(make, key, jnp.array([6, 7, 1]))


# Packed steps: batches of at least fused.PACK_MIN_BATCH rows with lengths compute each step on the
# rows valid then or later only. Lengths in no order, with zeros, equal and full ones.
PACKED_LENGTHS = {
    "mixed": [3, 7, 0, 7, 1, 5, 2, 6, 7, 4, 0, 2, 3, 7, 5, 1, 6, 2, 4, 7],
    "equal": [7] * 20,
    "short": [2, 1, 0, 2, 1, 1, 0, 2, 2, 1, 0, 1, 2, 0, 1, 2, 1, 0, 2, 1],
}


# Every code path of the kernels' packed loops, both directions, at every length pattern (one compiled
# program per case serves all patterns: lengths are its argument).
PACKED_CASES = _options(ALL_FUSABLE, [False, True], other=(False,))


@pytest.mark.parametrize("name,reverse", PACKED_CASES,
                         ids=[f"{n}-{'reverse' if r else 'forward'}" for n, r in PACKED_CASES])
def test_packed_batch_equals_unroller(name, reverse, key):
    patterns = [jnp.array(v) for v in PACKED_LENGTHS.values()]
    assert all(len(v) >= fused.PACK_MIN_BATCH for v in PACKED_LENGTHS.values())
    _check(lambda f: rj.rnn(ALL_FUSABLE[name](H), reverse=reverse, fused=f), key, initial=reverse,
           batch=len(PACKED_LENGTHS["mixed"]), patterns=patterns)


def test_packed_bidirectional_stack(key):
    def make(f):
        bi = rj.bidirectional(rj.rnn(rj.lstm(H), fused=f), rj.rnn(rj.gru(H), fused=f), merge="sum")
        return rj.stack(bi, rj.rnn(rj.elman(H), fused=f, hoist_input=False), skip="highway")
    _check(make, key, jnp.array(PACKED_LENGTHS["mixed"]), batch=20)


def _kernel_loss(name, mask, pack=fused.PACK_MIN_BATCH):
    """A loss of one kernel's outputs and final state, on a random ``mask`` (any pattern, not a prefix);
    ``pack=None`` runs every row at every step."""
    rng = np.random.default_rng(0)
    n = mask.shape[1]
    G = {"elman": 1, "lstm": 4, "gru": 3}[name]
    W_i, W_h = (jnp.asarray(rng.standard_normal(s) * 0.4) for s in [(I, G * H), (H, G * H)])
    b = jnp.asarray(rng.standard_normal(G * H) * 0.3)
    xs, h0 = jnp.asarray(rng.standard_normal((T, n, I))), jnp.asarray(rng.standard_normal((n, H)))
    run = {  # the driver with each built-in kernel spec
        "elman": lambda W_i, W_h, b, xs, h0: fused.run(fused.elman_kernel(jnp.tanh), fused.ElmanWeights(W_i, W_h), b,
                                                       xs, h0, mask, pack=pack),
        "lstm": lambda W_i, W_h, b, xs, h0: fused.run(fused.LSTM, fused.LSTMWeights(W_i, W_h), b, xs,
                                                      (h0, jnp.cos(h0)), mask, pack=pack),
        "gru": lambda W_i, W_h, b, xs, h0: fused.run(fused.GRU, fused.GRUWeights(W_i, W_h, 0.5 * b), b, xs, h0, mask,
                                                     pack=pack)}[name]

    def loss(*args):
        ys, fin = run(*args)
        return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(l ** 2) for l in jax.tree_util.tree_leaves(fin))

    return loss, (W_i, W_h, b, xs, h0)


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
def test_packed_kernel_is_exact_for_any_mask(name):
    """The rows a step computes follow the last valid row, whatever the mask's pattern: a mask with
    holes gives what the unpacked kernel gives."""
    mask = jnp.asarray(np.random.default_rng(1).random((T, 24, 1)) < 0.4)
    loss, args = _kernel_loss(name, mask)
    packed = jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4))(*args)
    loss, args = _kernel_loss(name, mask, pack=None)
    plain = jax.value_and_grad(loss, argnums=(0, 1, 2, 3, 4))(*args)
    _assert_trees_close(packed, plain)


@pytest.mark.parametrize("rule", ["vjp", "jvp"])
def test_packed_kernel_second_derivatives(rule):
    """Reverse-over-reverse (both rules) and forward-over-reverse (the JVP rule) of a packed batch equal
    the unpacked kernel's."""
    T_, n = 7, 20
    rng = np.random.default_rng(2)
    mask = jnp.asarray(np.arange(T_)[:, None] < rng.integers(0, T_ + 1, n)[None, :])[..., None]
    W_i, W_h = (jnp.asarray(rng.standard_normal(s) * 0.4) for s in [(I, 3 * H), (H, 3 * H)])
    b, xs = jnp.asarray(rng.standard_normal(3 * H) * 0.3), jnp.asarray(rng.standard_normal((T_, n, I)))

    def derivatives(pack=fused.PACK_MIN_BATCH):
        def f(W):
            ys, _ = fused.run(fused.GRU, fused.GRUWeights(W_i, W, -b), b, xs, jnp.zeros((n, H)), mask, rule=rule,
                              pack=pack)
            return jnp.sum(jnp.sin(ys))

        out = {"grad_of_grad": jax.grad(lambda W: jnp.sum(jax.grad(f)(W) ** 2))(W_h)}
        if rule == "jvp":
            out["hvp"] = jax.jvp(jax.grad(f), (W_h,), (jnp.cos(W_h),))[1]
        return out

    _assert_trees_close(derivatives(), derivatives(pack=None))


def _loops(f, *args):
    """The number of while loops in ``f``'s jaxpr (scans and fori_loops alike)."""
    def count(jaxpr):
        n = 0
        for eqn in jaxpr.eqns:
            n += eqn.primitive.name in ("while", "scan")
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                n += count(sub)
        return n
    return count(jax.make_jaxpr(f)(*args).jaxpr)


def test_packing_is_what_a_batch_with_lengths_runs(key):
    """A batch with lengths is packed (one loop per level, forward and backward); one without
    lengths, or smaller than PACK_MIN_BATCH, is one scan each way."""
    layer = rj.rnn(rj.gru(H))
    params = layer.init(key, I, jnp.float32)

    def grad_loops(n, with_lengths):
        xs, lengths = jnp.ones((n, T, I), jnp.float32), (jnp.full((n,), T) if with_lengths else None)
        return _loops(jax.grad(lambda p: jnp.sum(layer.apply(p, xs, lengths)[0])), params)

    assert fused._levels(64) == (8, 16, 24, 32, 40, 48, 56, 64)
    assert fused._levels(100) == (16, 32, 48, 64, 80, 96, 100)
    assert fused._levels(fused.PACK_MIN_BATCH - 1) is None
    levels = len(fused._levels(64))
    assert grad_loops(64, False) == grad_loops(8, True) == 2
    if jax.device_count() == 1:
        assert grad_loops(64, True) >= 2 * levels
    else:  # a batch that jax.jit may split over the devices is not packed (rows would cross devices)
        assert grad_loops(64, True) == 2


def test_packed_batch_under_vmap_with_mapped_lengths(key):
    """jax.vmap over batched calls whose lengths differ per mapped batch: each equals its own call."""
    layer = rj.rnn(rj.gru(H))
    params = perturb(layer.init(key, I, jnp.float64), key)
    xs = jax.random.normal(key, (2, 20, T, I), jnp.float64)
    lengths = jnp.array([PACKED_LENGTHS["mixed"], PACKED_LENGTHS["short"]])
    loss = lambda p, x, L: jnp.sum(jnp.tanh(layer.apply(p, x, L)[0]))  # noqa: E731
    got = jax.vmap(jax.value_and_grad(loss), in_axes=(None, 0, 0))(params, xs, lengths)
    for m in range(2):
        _assert_trees_close(jax.tree.map(lambda a: a[m], got), jax.value_and_grad(loss)(params, xs[m], lengths[m]))


def _calls_kernel(layer, cell, batch=(2,)):
    """The rules with which ``layer.apply`` on a ``batch`` reaches the cell's fused kernel (recorded by
    wrapping it); empty when it takes the generic scan."""
    calls = []
    spy = cell._replace(fused=lambda *a, **k: calls.append(k["rule"]) or cell.fused(*a, **k))
    lay = layer(spy)
    params = lay.init(jax.random.key(0), 3)
    lay.apply(params, jnp.ones(batch + (4, 3), jnp.float32))
    return calls


def test_every_fusable_cell_carries_its_kernel():
    for make in list(ALL_FUSABLE.values()):
        assert make(4).fused is not None
    assert rj.jordan(4, 2).fused is None


def test_every_call_takes_the_kernel_with_the_rule_for_its_shape():
    assert _calls_kernel(rj.rnn, rj.gru(4)) == ["vjp"]
    assert _calls_kernel(rj.rnn, rj.elman(4, jnp.sin)) == ["vjp"]        # any callable activation
    assert _calls_kernel(rj.rnn, rj.gru(4), batch=()) == ["jvp"]         # one sequence: the JVP rule
    assert _calls_kernel(rj.rnn, rj.lstm(4), batch=(2, 3)) == ["vjp"]
    assert _calls_kernel(lambda c: rj.rnn(c, fused=False), rj.gru(4)) == []
    assert _calls_kernel(lambda c: rj.rnn(c, remat=8), rj.lstm(4)) == []  # remat keeps the generic path
    assert _calls_kernel(lambda c: rj.stack(rj.bidirectional(rj.rnn(c), rj.rnn(c))), rj.lstm(4)) == ["vjp"] * 2
    with pytest.raises(ValueError, match="rule: expected 'vjp' or 'jvp', got 'auto'"):
        fused.run(fused.GRU, fused.GRUWeights(jnp.ones((2, 6)), jnp.ones((2, 6)), jnp.ones(6)), jnp.ones(6),
                  jnp.ones((3, 1, 2)), jnp.ones((1, 2)), rule="auto")


def _single_sequence_pair(name, key, lengths, initial, hoist):
    """A loss over single-sequence calls of the fused layer (JVP rule) and the same loss of the
    generic scan, both summed over the batch, and their arguments."""
    layers = {f: rj.rnn(ALL_FUSABLE[name](H), fused=f, hoist_input=hoist) for f in (True, False)}
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    params = perturb(layers[True].init(k1, I, jnp.float64), k2)
    xs = jax.random.normal(k3, (B, T, I), jnp.float64)
    lengths = jnp.full((B,), T) if lengths is None else jnp.array(lengths)
    s0 = jax.tree.map(lambda a: jax.random.normal(k4, (B,) + a.shape, jnp.float64) if initial else
                      jnp.zeros((B,) + a.shape, jnp.float64), layers[True].initial_state(jnp.float64))
    w = jax.random.normal(k5, (T, H), jnp.float64)

    def loss_one(layer):
        def loss(p, x, n, s):  # ONE sequence: x (T, I), n (), s one state
            ys, fin = layer.apply(p, x, n, s)
            return jnp.sum(jnp.tanh(ys) * w) + sum(jnp.sum(jnp.sin(l)) for l in jax.tree_util.tree_leaves(fin))
        return loss

    return loss_one(layers[True]), loss_one(layers[False]), (params, xs, lengths, s0)


@pytest.mark.parametrize("name,lengths", _options(ALL_FUSABLE, [None, (7, 3, 0)]))
def test_single_sequence_kernel_under_vmap(name, lengths, key):
    """jax.vmap over single-sequence calls (the JVP rule): values, summed and per-example gradients
    and forward-mode derivatives equal the generic scan's, with the input products hoisted or not (the
    kernel paths; the reference programs compiled once for both)."""
    batch_axes = (None, 0, 0, 0)
    tangent = None
    for i, hoist in enumerate([True, False] if name in KERNEL_PATHS else [False]):
        fused_one, ref_one, (params, xs, n, s0) = _single_sequence_pair(name, key, lengths, lengths is not None, hoist)

        def total(loss):
            return lambda p, x, s: jnp.sum(jax.vmap(loss, batch_axes)(p, x, n, s))

        # each side compiled once (one program per transformation, not one per primitive)
        vg = lambda loss: jax.jit(jax.value_and_grad(total(loss), (0, 1, 2)))  # noqa: E731
        jvp = lambda loss: jax.jit(lambda *p: jax.jvp(total(loss), p, tangent))  # noqa: E731
        if i == 0:  # the generic scan's values: the same whatever the fused layer's hoisting
            tangent = jax.tree.map(lambda a: jnp.cos(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape),
                                   (params, xs, s0))
            grad_ref = jax.jit(jax.grad(ref_one))
            ref = {"vg": vg(ref_one)(params, xs, s0), "jvp": jvp(ref_one)(params, xs, s0),
                   "per_example": jax.tree.map(lambda *a: jnp.stack(a), *[
                       grad_ref(params, xs[b], n[b], jax.tree.map(lambda a: a[b], s0)) for b in range(B)])}
        _assert_trees_close(vg(fused_one)(params, xs, s0), ref["vg"])
        _assert_trees_close(jax.jit(jax.vmap(jax.grad(fused_one), batch_axes))(params, xs, n, s0), ref["per_example"])
        _assert_trees_close(jvp(fused_one)(params, xs, s0), ref["jvp"])


@pytest.mark.parametrize("name", ["lstm", "gru", "elman_softsign"])
def test_single_sequence_kernel_second_derivatives(name, key):
    """The JVP rule is differentiable again: Hessian-vector products equal the generic scan's."""
    fused_one, ref_one, (params, xs, n, s0) = _single_sequence_pair(name, key, [7, 3, 0], True, "auto")
    v = jax.tree.map(lambda a: jnp.sin(jnp.arange(a.size, dtype=a.dtype)).reshape(a.shape), params)

    def hvp(loss):
        return jax.jvp(jax.grad(lambda p: loss(p, xs[1], n[1], jax.tree.map(lambda a: a[1], s0))), (params,), (v,))[1]

    _assert_trees_close(hvp(fused_one), hvp(ref_one))


def _intermediate_shapes(fn, *args):
    """The shapes of every value in ``fn``'s jaxpr, nested jaxprs included."""
    shapes = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            shapes.update(tuple(v.aval.shape) for v in eqn.outvars if hasattr(v.aval, "shape"))
            for sub in jax.extend.core.jaxprs_in_params(eqn.params):
                walk(sub)

    walk(jax.make_jaxpr(fn)(*args).jaxpr)
    return shapes


@pytest.mark.parametrize("name,gates", [("elman_tanh", 1), ("lstm", 4), ("gru", 3)])
def test_vmapped_single_sequence_calls_form_no_per_example_weight_gradients(name, gates, key):
    """What makes the JVP rule fast under jax.vmap: the gradient of a loss summed over vmapped
    single-sequence calls holds no (B, H, G*H) array of per-example recurrent-weight gradients,
    which the VJP rule, vmapped, does form."""
    cell = CELLS[name](H)
    layer = rj.rnn(cell)
    params = layer.init(key, I)
    xs = jnp.ones((B + 1, T, I), jnp.float32)
    state = jax.tree.map(lambda a: a[None], cell.initial_state(jnp.float32))  # one sequence: (1, ...)

    def loss_with(rule):
        def one(p, x):
            ys, _ = cell.fused(p, x[:, None, :], state, None, rule=rule)
            return jnp.sum(ys ** 2)
        return lambda p: jnp.sum(jax.vmap(one, (None, 0))(p, xs))

    per_example = (B + 1, H, gates * H)
    assert per_example in _intermediate_shapes(jax.grad(loss_with("vjp")), params)
    assert per_example not in _intermediate_shapes(jax.grad(loss_with("jvp")), params)
    _assert_trees_close(jax.grad(loss_with("jvp"))(params), jax.grad(loss_with("vjp"))(params), 1e-5)


def test_converted_cells_get_their_kernel(key):
    import flax.linen as nn

    for module in (nn.SimpleCell(5), nn.GRUCell(5), nn.LSTMCell(5)):
        variables = module.init(key, module.initialize_carry(key, (3,)), jnp.ones((3,)))
        cell, _ = rj.interop.from_flax(module, variables)
        assert cell.fused is not None, type(module).__name__


def test_fused_errors():
    with pytest.raises(ValueError, match="fused=True: cell 'jordan'"):
        rj.rnn(rj.jordan(4, 2), fused=True)
    with pytest.raises(ValueError, match="fused=True with remat"):
        rj.rnn(rj.lstm(4), fused=True, remat=4)
    with pytest.raises(ValueError, match="hoist_input: expected True, False or 'auto'"):
        rj.rnn(rj.lstm(4), hoist_input="yes")
    with pytest.raises(ValueError, match="fused: expected None, True or False"):
        rj.rnn(rj.lstm(4), fused="yes")
    layer = rj.rnn(rj.gru(4))
    params = layer.init(jax.random.key(0), 3)
    with pytest.raises(ValueError, match="W_h"):
        layer.apply({**params, "W_h": params["W_h"][:2]}, jnp.zeros((2, 5, 3)))


@pytest.mark.parametrize("per_sequence", [False, True], ids=["batched", "vmapped"])
def test_fused_jit_does_not_retrace(per_sequence, key):
    layer = rj.rnn(rj.lstm(H))
    params = layer.init(key, I, jnp.float32)
    traces = []

    @jax.jit
    def loss(p, x):
        traces.append(1)
        ys = jax.vmap(lambda a: layer.apply(p, a)[0])(x) if per_sequence else layer.apply(p, x)[0]
        return jnp.mean(ys ** 2)

    g = jax.grad(loss)
    x = jnp.ones((B, T, I), jnp.float32)
    g(params, x)
    g(params, x + 1.0)
    assert len(traces) == 1


def test_fused_float32_matches(key):
    layer, ref = rj.rnn(rj.lstm(H), fused=True), rj.rnn(rj.lstm(H), fused=False)
    params = layer.init(key, I, jnp.float32)
    xs = jax.random.normal(key, (B, T, I), jnp.float32)
    got, want = layer.apply(params, xs)[0], ref.apply(params, xs)[0]
    assert got.dtype == jnp.float32
    assert _rel(got, want) < 1e-5


def test_flip_valid_reverses_each_valid_prefix():
    from rnn_jax import _ops

    xs = jnp.arange(2 * 5 * 3.0).reshape(5, 2, 3)  # (T, B, I)
    lengths = jnp.array([5, 2])
    got = _ops.flip_valid(xs, lengths)
    np.testing.assert_array_equal(got[:, 0], xs[::-1, 0])
    np.testing.assert_array_equal(got[:, 1], jnp.concatenate([xs[1::-1, 1], xs[2:, 1]]))
    np.testing.assert_array_equal(_ops.flip_valid(got, lengths), xs)  # an involution


@pytest.mark.parametrize("name", ALL_FUSABLE)
def test_fused_inference_path_equals_unroller(name, key):
    """Without differentiation the custom_vjp runs its primal (no residuals kept): same values, with every
    hoisting choice (the kernel paths)."""
    ref = rj.rnn(ALL_FUSABLE[name](H), fused=False)
    params = perturb(ref.init(key, I, jnp.float64), key)
    xs = jax.random.normal(key, (B, T, I), jnp.float64)
    lengths = jnp.array([7, 2, 5])
    want = ref.apply(params, xs, lengths)
    for hoist in [True, False, "auto"] if name in KERNEL_PATHS else ["auto"]:
        layer = rj.rnn(ALL_FUSABLE[name](H), hoist_input=hoist, fused=True)
        _assert_trees_close(jax.jit(lambda p, x: layer.apply(p, x, lengths))(params, xs), want)


def test_hoist_rule():
    assert fused._hoist(False, (True, True)) == (False, False)  # the user's choice wins
    assert fused._hoist(True, (False, False)) == (True, True)
    if jax.default_backend() == "cpu":
        assert fused._hoist("auto", (False, True)) == (False, True)
    with pytest.raises(ValueError, match="hoist"):
        fused._hoist("yes", (True, True))


def test_forward_mode_on_a_batch_raises_and_vmap_over_sequences_gives_it(key):
    """Batched calls carry a custom VJP, which JAX refuses to differentiate forwards (a clear error,
    never a wrong number); jax.vmap over single-sequence calls (the JVP rule) or fused=False gives it."""
    layer = rj.rnn(rj.gru(H))
    params = layer.init(key, I, jnp.float64)
    xs = jax.random.normal(key, (B, T, I), jnp.float64)
    with pytest.raises(TypeError, match="forward-mode autodiff"):
        jax.jvp(lambda x: layer.apply(params, x)[0], (xs,), (xs,))
    per_sequence = jax.jvp(lambda x: jax.vmap(lambda a: layer.apply(params, a)[0])(x), (xs,), (xs,))
    generic = jax.jvp(lambda x: rj.rnn(rj.gru(H), fused=False).apply(params, x)[0], (xs,), (xs,))
    _assert_trees_close(per_sequence, generic)


# Static inputs (Cell.fused's ``static``): a per-sequence input read at every step after x_t, whose
# product is taken once per sequence as a bias of each row. Equal to the steps reading [x_t, static].
STATIC_CELLS = ["elman_tanh", "elman_softsign", "lstm", "gru", "orthogonal"]


@pytest.mark.parametrize("name", STATIC_CELLS)
@pytest.mark.parametrize("lengths", [None, "mixed"])
@pytest.mark.parametrize("rule", ["vjp", "jvp"])
def test_static_inputs_equal_reading_them_at_every_step(name, lengths, rule, key):
    cell, C, n = ALL_FUSABLE[name](H), 3, 20
    k1, k2, k3, k4 = jax.random.split(key, 4)
    params = perturb(cell.init(k1, I + C, jnp.float64), k2)
    xs, static = jax.random.normal(k3, (T, n, I), jnp.float64), jax.random.normal(k4, (n, C), jnp.float64)
    state = jax.tree.map(lambda a: jnp.cos(jnp.arange(n * a.size, dtype=a.dtype)).reshape((n,) + a.shape),
                         cell.initial_state(jnp.float64))
    mask = None if lengths is None else rj._ops.time_mask(jnp.array(PACKED_LENGTHS[lengths]), T)
    w = jax.random.normal(k4, (T, 1, H), jnp.float64)

    L = None if lengths is None else jnp.array(PACKED_LENGTHS[lengths])

    def loss(p, x, s, st, static_too):
        # the reference: the generic scan of the cell's step over [x_t, static], autodiff through it
        ys, fin = (cell.fused(p, x, st, mask, rule=rule, static=s) if static_too else
                   generic_scan(cell, p, rj._ops.with_static(x, s), L, st))
        return jnp.sum(jnp.tanh(ys) * w) + sum(jnp.sum(jnp.sin(a)) for a in jax.tree_util.tree_leaves(fin))

    vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3)), static_argnums=4)
    got, want = vg(params, xs, static, state, True), vg(params, xs, static, state, False)
    _assert_trees_close(got, want)


@pytest.mark.parametrize("name", ["gru", "jordan"])
def test_rnn_layer_static_inputs(name, key):
    """The layer's ``run`` takes ``static`` for every cell: fused, or appended to the inputs of the generic
    scan (Jordan), in either direction."""
    cell, C = CELLS[name](H), 2
    for reverse in (False, True):
        layer = rj.rnn(cell, reverse=reverse)
        params = perturb(layer.init(key, I + C, jnp.float64), key)
        xs, static = jax.random.normal(key, (T, B, I), jnp.float64), jax.random.normal(key, (B, C), jnp.float64)
        lengths = [7, 3, 0]
        ys, fin = layer.run(params, xs, jnp.array(lengths), None, True, static=static)
        for b in range(B):  # the reference: a Python loop of the cell's step over [x_t, static]
            want_ys, want_fin = loop_unroll(cell, params, rj._ops.with_static(xs[:, b:b + 1], static[b:b + 1])[:, 0],
                                            lengths[b], reverse)
            _assert_trees_close((ys[:, b], jax.tree.map(lambda a: a[b], fin)), (want_ys, want_fin))


def test_static_inputs_bad_shapes():
    cell = rj.gru(H)
    params = cell.init(jax.random.key(0), I + 2)
    xs, h0 = jnp.zeros((T, B, I)), jnp.zeros((B, H))
    with pytest.raises(ValueError, match=r"static: expected shape \(B, C\)"):
        cell.fused(params, xs, h0, None, static=jnp.zeros((B, I + 2)))
    with pytest.raises(ValueError, match=r"b: expected shape \(G\*H,\) or \(B=3, G\*H\)"):
        fused.run(fused.GRU, fused.GRUWeights(params["W_i"], params["W_h"], params["b_h"]), jnp.zeros((B + 1, 3 * H)),
                  jnp.zeros((T, B, I + 2)), h0)


# The generic scan packs too when asked (rnn(cell, pack="always")): any cell's step, a backward pass of the
# step's own VJP. Same values and gradients as the scan, for cells whose output is not their state (Jordan,
# LRU), a complex state (LRU), a prepared recurrent matrix (orthogonal) and a kernel cell run without it.
GENERIC = {"jordan": lambda: rj.jordan(H, 3), "lru": lambda: rj.lru(H, 3), "orthogonal": lambda: rj.orthogonal_rnn(H),
           "gru": lambda: rj.gru(H), "lstm": lambda: rj.lstm(H)}


@pytest.mark.parametrize("name", sorted(GENERIC))
@pytest.mark.parametrize("reverse", [False, True])
def test_generic_scan_packs_when_asked_and_equals_the_scan(name, reverse):
    n = 20  # >= 16 rows with lengths: packed
    lengths = jnp.asarray(np.random.default_rng(3).integers(0, T + 1, n))
    packed = rj.rnn(GENERIC[name](), fused=False, pack="always", reverse=reverse)
    plain = rj.rnn(GENERIC[name](), fused=False, pack=False, reverse=reverse)
    params = plain.init(jax.random.key(1), I, jnp.float64)
    xs = jax.random.normal(jax.random.key(2), (n, T, I), jnp.float64)
    state0 = jax.tree.map(lambda a: jnp.broadcast_to(a, (n,) + a.shape) + 0.1, plain.initial_state(jnp.float64))

    def loss(layer):
        def f(p, x, s):
            ys, fin = layer.apply(p, x, lengths, s)
            return jnp.sum(jnp.sin(jnp.real(ys))) + sum(jnp.sum(jnp.abs(l) ** 2) for l in jax.tree_util.tree_leaves(fin))
        return f

    got = jax.value_and_grad(loss(packed), argnums=(0, 1, 2))(params, xs, state0)
    want = jax.value_and_grad(loss(plain), argnums=(0, 1, 2))(params, xs, state0)
    _assert_trees_close(got, want)
    grads = jax.make_jaxpr(jax.grad(loss(packed)))(params, xs, state0)
    assert "custom_vjp_call" in str(grads) or "custom_vjp" in str(grads)  # the packed path ran
    with pytest.raises(ValueError, match="remat"):
        rj.rnn(GENERIC[name](), fused=False, pack="always", remat=True)


def _in_loops(jaxpr, inside=False):
    """The primitive names found inside the bodies of while loops and scans."""
    names = set()
    for eqn in jaxpr.eqns:
        if inside:
            names.add(eqn.primitive.name)
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            names |= _in_loops(sub, inside or eqn.primitive.name in ("while", "scan"))
    return names


@pytest.mark.parametrize("name", ["elman", "lstm", "gru"])
@pytest.mark.parametrize("batch", [1, 32])
def test_no_transpose_inside_the_loops(name, batch, key):
    """Every loop body of a layer's forward+backward is free of transposes: a transpose of the recurrent
    matrix written in a kernel's per-step backward is copied at every step on the CPU (the GRU layer at
    B=1, T=1000, H=128: 56 ms against 7.9 ms with it formed once before the loop)."""
    layer = rj.rnn(getattr(rj, name)(H))
    params = layer.init(key, I, jnp.float32)
    xs = jnp.ones((batch, 7, I), jnp.float32)
    loss = lambda p, x: jnp.sum(layer.apply(p, x)[0] ** 2)  # noqa: E731
    jaxpr = jax.make_jaxpr(jax.value_and_grad(loss))(params, xs).jaxpr
    assert "dot_general" in _in_loops(jaxpr)  # the recurrent products are in the loops
    assert "transpose" not in _in_loops(jaxpr)


@pytest.mark.parametrize("name", ["elman", "lstm", "gru", "indrnn"])
def test_the_derived_tangent_equals_the_hand_written_one(name, monkeypatch):
    """A kernel spec without ``tangent_inputs``/``tangent`` gets them from ``jax.jvp`` of its step
    (fused.derived_tangent): single-sequence calls under vmap (the JVP rule), their gradients and
    forward-over-reverse products equal the hand-written rule's to 1e-12 in float64."""
    layer = rj.rnn({"elman": rj.elman, "lstm": rj.lstm, "gru": rj.gru, "indrnn": rj.indrnn}[name](H))
    params = perturb(layer.init(jax.random.key(0), I, jnp.float64), jax.random.key(1))
    xs = jax.random.normal(jax.random.key(2), (B + 1, T, I), jnp.float64)
    lengths = jnp.array([T, 5, 1, 0])

    def derivatives():
        def loss(p):
            ys, fin = jax.vmap(lambda x, n: layer.apply(p, x, n))(xs, lengths)
            return jnp.sum(jnp.sin(ys)) + sum(jnp.sum(leaf ** 2) for leaf in jax.tree.leaves(fin))

        return jax.grad(loss)(params), jax.jvp(jax.grad(loss), (params,), (jax.tree.map(jnp.cos, params),))[1]

    hand = derivatives()
    run = fused.run
    monkeypatch.setattr(fused, "run", lambda k, *a, **kw: run(k._replace(tangent_inputs=None, tangent=None), *a, **kw))
    derived = derivatives()
    _assert_trees_close(derived, hand, tol=1e-12)
