"""The seeds' configurations, built from layers and cells. Every model takes batches.

* :func:`many_to_one`: a sequence in, one prediction out (classification, sentiment).
* :func:`many_to_many`: one prediction per step (tagging, language models).
* :func:`encoder_decoder`: an encoder layer reads the source; a decoder cell with its own weights
  writes the target (translation); teacher forcing for training, greedy or sampled decoding.
* :func:`one_to_many`: one input vector, a generated sequence (image captioning, music, text).

Inputs have zero or more leading batch dimensions: token ids ``(*batch, T)`` when ``vocab_size`` is
set (learned embedding, or one-hot when ``embed_size`` is None), float features ``(*batch, T, I)``
otherwise, with ``lengths`` of shape ``batch``. Outputs keep the batch dimensions.

Every ``apply`` takes ``key=None``: a ``jax.random.key`` draws the dropout and zoneout masks of its
layer (training; :mod:`rnn_jax.regularization`), None draws none (evaluation); ``generate`` never drops.

Every model with a ``generate`` has the same signature: ``generate(params, source, source_lengths=None,
*, max_len, key=None, temperature=1.0) -> (tokens (*batch, max_len) int32, lengths (*batch,))``:
greedy with ``key=None`` or ``temperature=0``, else sampled; ``lengths`` counts the tokens up to and
including the first ``eos`` (``max_len`` when none was written); after it, ``eos`` repeats.
``temperature`` is a finite number >= 0 of any type (Python, numpy, JAX); a concrete one is checked
before tracing, a traced one inside :func:`rnn_jax.checked`, and otherwise an invalid traced value
(negative, NaN, inf) writes ``-1``, never a valid token.

Empty axes work everywhere: a batch of 0 gives empty outputs, and an empty sequence (T = 0) reads
like a sequence of length 0 (every readout of it is zeros).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from rnn_jax import _checks, _ops
from rnn_jax._ops import affine
from rnn_jax.cells import Cell
from rnn_jax.layers import Layer, rnn, run_layer
from rnn_jax.regularization import check_key, init_key

__all__ = ["Model", "dense_init", "dense", "many_to_one", "many_to_many", "encoder_decoder", "one_to_many", "READOUTS"]


class Model(NamedTuple):
    """``init(key, dtype=float32) -> params``; ``apply(params, ...)``; ``generate(params, source,
    source_lengths=None, *, max_len, key=None, temperature=1.0)`` or None.

    Attributes:
      init: ``(key, dtype=float32) -> params``.
      apply: ``(params, ...)``, its arguments per configuration (:func:`many_to_one`, :func:`many_to_many`,
        :func:`encoder_decoder`, :func:`one_to_many`).
      generate: ``(params, source, source_lengths=None, *, max_len, key=None, temperature=1.0) -> (tokens,
        lengths)`` for the configurations that emit tokens, else None.

    Examples:
      >>> model = rnn_jax.many_to_one(rnn_jax.rnn(rnn_jax.gru(16)), 3, input_size=2)
      >>> p = model.init(jax.random.key(0))
      >>> model.apply(p, jnp.ones((4, 10, 2)), jnp.array([10, 7, 3, 1])).shape
      (4, 3)
      >>> model.generate is None
      True
    """

    init: Callable[..., Any]
    apply: Callable[..., Any]
    generate: Optional[Callable[..., Any]] = None


def dense_init(key, fan_in: int, fan_out: int, dtype=jnp.float32) -> dict:
    """``{"W": (fan_in, fan_out) Glorot uniform, "b": (fan_out,) zeros}``.

    Args:
      key: a ``jax.random.key``.
      fan_in: the input width.
      fan_out: the output width.
      dtype: the parameters' dtype.

    Returns:
      ``{"W": (fan_in, fan_out), "b": (fan_out,)}``.

    Examples:
      >>> p = rnn_jax.models.dense_init(jax.random.key(0), 3, 2)
      >>> p["W"].shape, p["b"].tolist()
      ((3, 2), [0.0, 0.0])
    """
    return {"W": jax.nn.initializers.glorot_uniform()(key, (fan_in, fan_out), dtype), "b": jnp.zeros((fan_out,), dtype)}


def dense(params, x):
    """``x @ W + b`` for ``x (..., fan_in)``.

    Args:
      params: ``{"W": (fan_in, fan_out), "b": (fan_out,)}``.
      x: ``(..., fan_in)``.

    Returns:
      ``(..., fan_out)``.

    Examples:
      >>> p = {"W": jnp.ones((3, 2)), "b": jnp.array([0.0, 1.0])}
      >>> rnn_jax.models.dense(p, jnp.ones((5, 3)))[0]
      Array([3., 4.], dtype=float32)
    """
    return affine(x, params["W"], params["b"])


def _positive(name, value, allow_none=False):
    if value is None and allow_none:
        return
    return _checks.check_int(value, name)


def _check_model_params(init, params):
    leaves = jax.tree_util.tree_leaves(params)
    dtype = leaves[0].dtype if leaves else jnp.float32
    _checks.check_params(jax.eval_shape(lambda k: init(k, dtype), jax.random.key(0)), params)
    return dtype


def check_token_values(tokens, vocab_size: int, argname: str, lengths=None) -> None:
    """Token ids must lie in ``[0, vocab_size)`` (a gather would silently clamp the others), except past
    each sequence's length, where padding may hold any id. ``lengths``: ``(B,)`` for the flattened
    batch, or None. Checked on concrete values (before tracing); under ``jit`` inside
    :func:`rnn_jax.checked`."""
    if isinstance(tokens, jax.core.Tracer) or isinstance(lengths, jax.core.Tracer):
        ok = (tokens >= 0) & (tokens < vocab_size)
        if lengths is not None:
            ok = ok | ~_ops.valid_steps(lengths.reshape(tokens.shape[:-1]), tokens.shape[-1])
        _checks.value_check(ok, f"{argname}: expected token ids in [0, {vocab_size})", tokens)
        return
    arr = np.asarray(tokens)
    invalid = (arr < 0) | (arr >= vocab_size)
    if lengths is not None:
        invalid &= _ops.valid_steps(np.asarray(lengths).reshape(arr.shape[:-1]), arr.shape[-1], np)
    bad = np.nonzero(invalid)
    if bad[0].size:
        idx = tuple(int(b[0]) for b in bad)
        raise ValueError(f"{argname}: expected token ids in [0, {vocab_size}), got {int(arr[idx])} at index {idx}")


class _Inputs:
    """The input side of a model: token ids through an embedding (learned or one-hot) or features."""

    def __init__(self, vocab_size, embed_size, input_size, argname="xs"):
        _positive("vocab_size", vocab_size, allow_none=True)
        _positive("embed_size", embed_size, allow_none=True)
        _positive("input_size", input_size, allow_none=True)
        if vocab_size is None and input_size is None:
            raise ValueError("input_size: required when the inputs are not tokens (vocab_size=None)")
        self.vocab, self.embed, self.argname = vocab_size, embed_size, argname
        self.size = input_size if vocab_size is None else (embed_size or vocab_size)  # the RNN's input size

    def init(self, key, dtype):
        if self.vocab is None or self.embed is None:
            return {}
        return {"E": jax.random.normal(key, (self.vocab, self.embed), dtype) * self.embed**-0.5}

    def encode(self, p, xs, dtype):
        """``(..., T)`` ids or ``(..., T, I)`` features -> ``(..., T, size)`` floats."""
        if self.vocab is None:
            return xs
        if self.embed is None:
            return jax.nn.one_hot(xs, self.vocab, dtype=dtype)
        return p["E"][xs]

    def check(self, xs, lengths, dtype):
        """Edge checks; returns ``(xs_tm (T, B, ...) raw, lengths (B,) | None, batch, T)``."""
        tokens = self.vocab is not None
        batch, T = _checks.check_batch(xs, None if tokens else self.size, self.argname, tokens=tokens)
        lengths = _checks.check_batch_lengths(
            lengths, batch, T, "lengths" if self.argname == "xs" else f"{self.argname}_lengths"
        )
        if tokens:
            check_token_values(xs, self.vocab, self.argname, lengths)
        else:
            _checks.check_same_dtype(xs, {"": jnp.zeros((), dtype)}, self.argname)
        return _ops.to_time_major(xs, batch), lengths, batch, T

    def __call__(self, p, xs, lengths, dtype):
        """Checked, embedded, time-major, zeros past each length: ``(h (T, B, size), lengths, batch)``."""
        xs_tm, lengths, batch, T = self.check(xs, lengths, dtype)
        h = self.encode(p, xs_tm, dtype)
        return _ops.zero_padding(h, _ops.time_mask(lengths, T)), lengths, batch


# Readouts of a layer's time-major outputs ys (T, B, H) with lengths (B,) | None -> (B, F).


def _last(ys, lengths):
    if lengths is None:
        return ys[-1]
    idx = jnp.maximum(lengths - 1, 0)
    picked = jnp.take_along_axis(ys, idx[None, :, None], axis=0)[0]  # (B, H)
    return jnp.where((lengths > 0)[:, None], picked, jnp.zeros_like(picked))


def _masked_mean(ys, lengths):
    if lengths is None:
        return ys.mean(0)
    m = _ops.time_mask(lengths, ys.shape[0]).astype(ys.dtype)  # (T, B, 1)
    return (ys * m).sum(0) / jnp.maximum(m.sum(0), 1)


def _masked_max(ys, lengths):
    if lengths is None:
        return ys.max(0)
    valid = _ops.time_mask(lengths, ys.shape[0])
    top = jnp.where(valid, ys, -jnp.inf).max(0)
    return jnp.where((lengths > 0)[:, None], top, jnp.zeros_like(top))


READOUTS: dict[str, tuple[Callable, int]] = {
    # name: (fn(ys (T, B, H), lengths) -> (B, F), F as a multiple of the layer's output size)
    "last": (_last, 1),  # the last valid output: the final state of a forward RNN
    "mean": (_masked_mean, 1),  # mean over valid steps
    "max": (_masked_max, 1),  # max over valid steps
    # last and first valid outputs: holds the final states of both directions of a bidirectional layer
    "ends": (lambda ys, L: jnp.concatenate([_last(ys, L), ys[0]], axis=-1), 2),
}


def _readout(readout, layer: Layer):
    """``(read, mult)`` for a readout name (None: ``"ends"`` for a layer that reads backwards, else
    ``"last"``); ``read`` of an empty sequence (T = 0) is zeros, the readout of a sequence whose every
    length is 0. ``"last"`` of a layer that reads backwards is refused: its backward direction has read
    one input at the last valid step."""
    if readout is None:
        readout = "ends" if layer.reads_backward else "last"
    if readout == "last" and layer.reads_backward:
        raise ValueError(
            f"readout='last': the outputs of {layer.name} at each sequence's last valid step come "
            f"from a backward direction that has read only that step; use readout='ends' (the last "
            f"and first valid outputs: both directions' final states), 'mean' or 'max'"
        )
    if readout not in READOUTS:
        raise ValueError(f"readout: expected one of {sorted(READOUTS)}, got {readout!r}")
    fn, mult = READOUTS[readout]

    def read(ys, lengths):
        if ys.shape[0] == 0:
            return jnp.zeros((ys.shape[1], mult * ys.shape[2]), ys.dtype)  # (B, F)
        return fn(ys, lengths)

    return read, mult


def _check_layer(layer):
    if not isinstance(layer, Layer):
        raise ValueError(f"layer: expected an rnn_jax Layer (e.g. rnn_jax.rnn(cell)), got {type(layer).__name__}")


def many_to_one(
    layer: Layer,
    output_size: int,
    *,
    readout: Optional[str] = None,
    vocab_size: Optional[int] = None,
    embed_size: Optional[int] = None,
    input_size: Optional[int] = None,
) -> Model:
    """Sequence in, one output out: ``apply(params, xs, lengths=None, *, key=None) -> (*batch, O)`` logits
    or values.

    ``readout`` picks the summary of the layer's outputs that the linear head reads:
    ``"last"`` (final state of a forward RNN), ``"mean"``, ``"max"``, or ``"ends"``
    (last and first valid outputs: both directions' final states of a bidirectional layer). The
    default, None, is ``"ends"`` for a layer that reads backwards (reversed, bidirectional, or a stack
    topped by one: ``layer.reads_backward``) and ``"last"`` otherwise; ``"last"`` of such a layer is
    refused, since its backward direction has read one input at the last valid step.

    Args:
      layer: the recurrent layer (:func:`rnn_jax.rnn`, a stack, a bidirectional layer, ...).
      output_size: ``O``, the size of the linear head.
      readout: ``"last"``, ``"mean"``, ``"max"``, ``"ends"`` or None (see above).
      vocab_size: None (float features ``(*batch, T, I)``) or the number of token ids (inputs
        ``(*batch, T)`` int).
      embed_size: with ``vocab_size``, the size of a learned embedding, or None for one-hot inputs.
      input_size: without ``vocab_size``, the feature size ``I``.

    Returns:
      A :class:`Model`: ``init(key, dtype=float32) -> params`` and ``apply(params, xs, lengths=None, *,
      key=None) -> (*batch, O)``.

    Examples:
      >>> model = rnn_jax.many_to_one(rnn_jax.rnn(rnn_jax.gru(16)), 3, input_size=2)
      >>> p = model.init(jax.random.key(0))
      >>> model.apply(p, jnp.ones((5, 7, 2)), jnp.array([7, 7, 3, 1, 0])).shape
      (5, 3)
    """
    _check_layer(layer)
    _positive("output_size", output_size)
    read, mult = _readout(readout, layer)
    inputs = _Inputs(vocab_size, embed_size, input_size)

    def init(key, dtype=jnp.float32):
        init_key(key)
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "embed": inputs.init(k1, dtype),
            "rnn": layer.init(k2, inputs.size, dtype),
            "head": dense_init(k3, mult * layer.output_size, output_size, dtype),
        }

    def apply(params, xs, lengths=None, *, key=None):
        key = check_key(key)
        dtype = _check_model_params(init, params)
        h, lengths, batch = inputs(params["embed"], xs, lengths, dtype)  # (T, B, I)
        ys, _ = run_layer(layer, params["rnn"], h, lengths, None, bool(batch), key)  # (T, B, H)
        out = dense(params["head"], read(ys, lengths))  # (B, O)
        return out.reshape(batch + out.shape[1:])

    return Model(init, apply)


def _pick(key, logits, temperature):
    """Greedy when ``key`` is None or ``temperature == 0``, else a sample from softmax(logits / temperature).
    ``temperature`` is a Python float (checked) or a traced scalar: then 0 picks greedily too, and an
    invalid value (negative, NaN, inf) writes ``-1``, no valid token (:func:`rnn_jax.checked` raises)."""
    greedy = jnp.argmax(logits, -1).astype(jnp.int32)
    if key is None or (isinstance(temperature, float) and temperature == 0):
        return greedy
    # The largest logit is subtracted before dividing: (logits - max) / t is at most 0, so no temperature
    # overflows it (logits / 1e-38 did: every token became 0); as t -> 0 the sample tends to the greedy one.
    shifted = logits - lax.stop_gradient(jnp.max(logits, -1, keepdims=True))
    if isinstance(temperature, float):
        return jax.random.categorical(key, shifted / temperature).astype(jnp.int32)
    t = temperature.astype(logits.dtype)
    ok = jnp.isfinite(t) & (t >= 0)
    sampled = jax.random.categorical(key, shifted / jnp.where(ok & (t > 0), t, 1)).astype(jnp.int32)
    return jnp.where(ok, jnp.where(t == 0, greedy, sampled), -1)


def _check_generate(max_len, temperature, key):
    """Checks shared by every ``generate``; returns the temperature (a Python float or a traced scalar)."""
    if max_len is None:
        raise ValueError(
            "max_len: generate writes max_len tokens per sequence and needs it, e.g. "
            "model.generate(params, prompt, max_len=50); got none"
        )
    _positive("max_len", max_len)
    temperature = _checks.check_temperature(temperature)
    if key is not None and not (hasattr(key, "dtype") and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)):
        raise ValueError(f"key: expected a jax.random.key or None (greedy), got {type(key).__name__}")
    return temperature


def _sample_loop(step, state, first_logits, max_len, key, temperature, eos):
    """Feed each pick back: ``step(state, tokens (B,)) -> (state, logits (B, V))``. Returns
    ``(tokens (max_len, B), lengths (B,))``; after ``eos`` (when given) only ``eos`` is written."""
    B = first_logits.shape[0]
    keys = jax.random.split(key, max_len) if key is not None else jnp.zeros((max_len,))

    def body(carry, k):
        state, logits, done = carry
        tok = _pick(k if key is not None else None, logits, temperature)  # (B,)
        if eos is not None:
            tok = jnp.where(done, eos, tok)
        new_done = done | (tok == eos) if eos is not None else done
        state, logits = step(state, tok)
        return (state, logits, new_done), (tok, done)

    carry = _ops.varying_like((state, first_logits, jnp.zeros((B,), bool)), (state, first_logits))
    _, (toks, was_done) = lax.scan(body, carry, keys)
    return toks, jnp.sum(~was_done, axis=0).astype(jnp.int32)


def many_to_many(
    layer: Layer,
    output_size: int,
    *,
    vocab_size: Optional[int] = None,
    embed_size: Optional[int] = None,
    input_size: Optional[int] = None,
    eos: Optional[int] = None,
) -> Model:
    """One output per step: ``apply(params, xs, lengths=None, initial_state=None, *, key=None) ->
    ((*batch, T, O), final_state)``.

    For a language model (``vocab_size == output_size``, a layer that can run online),
    ``generate(params, prompt (*batch, P), prompt_lengths=None, *, max_len, key=None, temperature=1.0)``
    reads each prompt (its valid prefix), then writes ``max_len`` tokens, feeding each back as input;
    ``eos`` (optional) ends a sequence.

    Args:
      layer: the recurrent layer.
      output_size: ``O``, the size of the per-step linear head.
      vocab_size: None (float features ``(*batch, T, I)``) or the number of token ids (inputs
        ``(*batch, T)`` int).
      embed_size: with ``vocab_size``, the size of a learned embedding, or None for one-hot inputs.
      input_size: without ``vocab_size``, the feature size ``I``.
      eos: for ``generate``, the token id that ends a sequence (None: none).

    Returns:
      A :class:`Model` with ``init``, ``apply`` and (for a language model) ``generate``.

    Examples:
      >>> lm = rnn_jax.many_to_many(rnn_jax.rnn(rnn_jax.gru(16)), 10, vocab_size=10, embed_size=8)
      >>> p = lm.init(jax.random.key(0))
      >>> logits, h = lm.apply(p, jnp.zeros((2, 6), jnp.int32))
      >>> logits.shape
      (2, 6, 10)
      >>> tokens, lengths = lm.generate(p, jnp.array([[1, 2, 3]]), max_len=5, key=jax.random.key(1))
      >>> tokens.shape
      (1, 5)
    """
    _check_layer(layer)
    _positive("output_size", output_size)
    inputs = _Inputs(vocab_size, embed_size, input_size)
    if eos is not None and (vocab_size is None or not 0 <= eos < vocab_size):
        raise ValueError(f"eos: expected a token id in [0, vocab_size={vocab_size}), got {eos!r}")

    def init(key, dtype=jnp.float32):
        init_key(key)
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "embed": inputs.init(k1, dtype),
            "rnn": layer.init(k2, inputs.size, dtype),
            "head": dense_init(k3, layer.output_size, output_size, dtype),
        }

    def check_state(state, batch, dtype):
        if state is None:
            return None
        _checks.check_batch_state(state, layer.initial_state(dtype), batch, dtype)
        return _ops.flatten_batch(state, batch)

    def apply(params, xs, lengths=None, initial_state=None, *, key=None):
        key = check_key(key)
        dtype = _check_model_params(init, params)
        h, lengths, batch = inputs(params["embed"], xs, lengths, dtype)  # (T, B, I)
        ys, final = run_layer(
            layer, params["rnn"], h, lengths, check_state(initial_state, batch, dtype), bool(batch), key
        )
        logits = dense(params["head"], ys)  # (T, B, O)
        return _ops.from_time_major(logits, batch), _ops.unflatten_batch(final, batch)

    generate = None
    if vocab_size is not None and vocab_size == output_size and layer.step is not None:

        def generate(
            params, prompt, prompt_lengths=None, *, max_len: Optional[int] = None, key=None, temperature: float = 1.0
        ):
            temperature = _check_generate(max_len, temperature, key)
            dtype = _check_model_params(init, params)
            _checks.check_batch(prompt, None, "prompt", tokens=True)
            if prompt.shape[-1] < 1:
                raise ValueError(f"prompt: expected at least one token, got shape {_checks.shape_str(prompt.shape)}")
            inputs_p = _Inputs(vocab_size, embed_size, None, "prompt")
            h, lengths, batch = inputs_p(params["embed"], prompt, prompt_lengths, dtype)
            if lengths is not None:
                if _checks.is_traced(lengths):
                    _checks.value_check(
                        lengths >= 1, "prompt_lengths: expected every prompt to hold at least one token"
                    )
                elif lengths.size and int(np.min(np.asarray(lengths))) < 1:  # concrete: numpy, also under jit
                    raise ValueError("prompt_lengths: expected every prompt to hold at least one token, got a 0")
            ys, state = layer.run(params["rnn"], h, lengths, None, bool(batch))
            first = dense(params["head"], _last(ys, lengths))  # (B, V)

            def step(state, tok):
                state, y = layer.step(params["rnn"], state, inputs.encode(params["embed"], tok, dtype))
                return state, dense(params["head"], y)

            toks, n = _sample_loop(step, state, first, max_len, key, temperature, eos)
            return _ops.from_time_major(toks, batch), n.reshape(batch)

    return Model(init, apply, generate)


# ---------------------------------------------------------------------------------------------
# Decoders: a cell that writes a token sequence given a context vector (shared by the two below).


class _Decoder:
    """Decoder input at step t: ``[embed(y_{t-1}), context]`` (Cho et al. 2014). The initial state is a
    tanh bridge from the context, one dense map per state leaf."""

    def __init__(self, cell: Cell, context_size: int, vocab_size: int, embed_size: int, bos: int, eos: int):
        if not isinstance(cell, Cell):
            raise ValueError(f"decoder: expected an rnn_jax Cell, got {type(cell).__name__}")
        _positive("tgt_vocab", vocab_size)
        _positive("embed_size", embed_size)
        for name, tok in (("bos", bos), ("eos", eos)):
            want = f"a token id in [0, {vocab_size})"
            if _checks.check_int(tok, name, 0, want) >= vocab_size:
                raise ValueError(f"{name}: expected {want}, got {tok!r}")
        self.cell, self.layer = cell, rnn(cell)
        self.context_size, self.vocab, self.embed, self.bos, self.eos = context_size, vocab_size, embed_size, bos, eos
        self.leaves, self.treedef = jax.tree_util.tree_flatten(cell.initial_state(jnp.float32))
        self.step = jax.vmap(cell.step, in_axes=(None, 0, 0))

    def init(self, key, dtype):
        ke, kc, kb, kh = jax.random.split(key, 4)
        bridge = tuple(
            dense_init(k, self.context_size, leaf.shape[0], dtype)
            for k, leaf in zip(jax.random.split(kb, len(self.leaves)), self.leaves)
        )
        return {
            "E": jax.random.normal(ke, (self.vocab, self.embed), dtype) * self.embed**-0.5,
            "cell": self.layer.init(kc, self.embed + self.context_size, dtype),
            "bridge": bridge,
            "head": dense_init(kh, self.cell.output_size, self.vocab, dtype),
        }

    def state0(self, p, context):
        """``context (B, C)`` -> the decoder's initial state, leaves ``(B, ...)``."""
        dtypes = [leaf.dtype for leaf in jax.tree_util.tree_leaves(self.cell.initial_state(context.dtype))]
        # a complex state (the LRU's) starts at the bridge's value on the real axis
        return jax.tree_util.tree_unflatten(
            self.treedef, [jnp.tanh(dense(b, context)).astype(dt) for b, dt in zip(p["bridge"], dtypes)]
        )

    def teacher(self, p, context, tgt_in, tgt_lengths, batch):
        """Teacher forcing: ``tgt_in`` ``(*batch, T)`` = [bos, y_0, ..., y_{T-2}] -> logits ``(*batch, T, V)``."""
        _, T = _checks.check_batch(tgt_in, None, "tgt_in", tokens=True)
        if tuple(tgt_in.shape[:-1]) != tuple(batch):
            raise ValueError(
                f"tgt_in: expected batch dimensions {_checks.shape_str(batch)} like the source, got "
                f"shape {_checks.shape_str(tgt_in.shape)}"
            )
        lengths = _checks.check_batch_lengths(tgt_lengths, batch, T, "tgt_lengths")
        check_token_values(tgt_in, self.vocab, "tgt_in", lengths)
        tok = _ops.to_time_major(tgt_in, batch)  # (T, B)
        # every step reads [embed(y_{t-1}), context]: the context's part of the input product is taken
        # once per sequence (static inputs, Cell.fused), not at every step
        ys, _ = self.layer.run(p["cell"], p["E"][tok], lengths, self.state0(p, context), bool(batch), static=context)
        return _ops.from_time_major(dense(p["head"], ys), batch)

    def decode(self, p, context, max_len, key, temperature, batch):
        def step(state, tok):
            state, y = self.step(p["cell"], state, jnp.concatenate([p["E"][tok], context], -1))
            return state, dense(p["head"], y)

        state, first = step(self.state0(p, context), jnp.full((context.shape[0],), self.bos, jnp.int32))
        toks, n = _sample_loop(step, state, first, max_len, key, temperature, self.eos)
        return _ops.from_time_major(toks, batch), n.reshape(batch)


def encoder_decoder(
    encoder: Layer,
    decoder: Cell,
    *,
    tgt_vocab: int,
    bos: int,
    eos: int,
    embed_size: int = 32,
    src_vocab: Optional[int] = None,
    src_embed_size: Optional[int] = 32,
    input_size: Optional[int] = None,
    readout: Optional[str] = None,
) -> Model:
    """Sequence-to-sequence with separate encoder and decoder weights (Cho et al. 2014; Sutskever et al. 2014).

    The encoder reads the source; ``readout`` of its outputs (default: ``"ends"`` for an encoder that reads
    backwards, else ``"last"``, as in :func:`many_to_one`) is the context ``c``; the decoder's initial
    state is ``tanh(c W + b)`` and it reads ``[embed(y_{t-1}), c]`` at every step.

    * ``apply(params, src, src_lengths, tgt_in, tgt_lengths=None, *, key=None) -> logits (*batch, T_out,
      V)``: teacher forcing (``key``: the encoder's dropout); ``src`` is ``(*batch, S)`` ids (``src_vocab`` set)
      or ``(*batch, S, I)`` features.
    * ``generate(params, src, src_lengths=None, *, max_len, key=None, temperature=1.0) -> (tokens, lengths)``:
      greedy with ``key=None``, else sampled; a sequence stops at ``eos``.

    Args:
      encoder: the layer that reads the source.
      decoder: the decoder's cell (its own weights; it reads ``[embed(y_{t-1}), c]``).
      tgt_vocab: the target vocabulary's size.
      bos: the id the decoder reads first.
      eos: the id that ends a target sequence.
      embed_size: the target embedding's size.
      src_vocab: the source vocabulary's size (token sources), or None (feature sources).
      src_embed_size: the source embedding's size (None: one-hot).
      input_size: the feature size of feature sources.
      readout: how the encoder's outputs become the context (as in :func:`many_to_one`).

    Returns:
      A :class:`Model` with ``init``, ``apply`` (teacher forcing) and ``generate``.

    Examples:
      >>> s2s = rnn_jax.encoder_decoder(rnn_jax.rnn(rnn_jax.gru(8)), rnn_jax.gru(8), tgt_vocab=6, bos=0, eos=1,
      ...                               src_vocab=5)
      >>> p = s2s.init(jax.random.key(0))
      >>> s2s.apply(p, jnp.ones((2, 4), int), jnp.array([4, 2]), jnp.zeros((2, 3), int)).shape
      (2, 3, 6)
      >>> tokens, lengths = s2s.generate(p, jnp.ones((2, 4), int), jnp.array([4, 2]), max_len=5)
      >>> tokens.shape, lengths.shape
      ((2, 5), (2,))
    """
    _check_layer(encoder)
    read, mult = _readout(readout, encoder)
    inputs = _Inputs(src_vocab, src_embed_size if src_vocab is not None else None, input_size, "src")
    dec = _Decoder(decoder, mult * encoder.output_size, tgt_vocab, embed_size, bos, eos)

    def init(key, dtype=jnp.float32):
        init_key(key)
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "embed": inputs.init(k1, dtype),
            "rnn": encoder.init(k2, inputs.size, dtype),
            "decoder": dec.init(k3, dtype),
        }

    def context(params, src, src_lengths, key=None):
        dtype = _check_model_params(init, params)
        h, lengths, batch = inputs(params["embed"], src, src_lengths, dtype)
        ys, _ = run_layer(encoder, params["rnn"], h, lengths, None, bool(batch), key)
        return read(ys, lengths), batch  # (B, C)

    def apply(params, src, src_lengths, tgt_in, tgt_lengths=None, *, key=None):
        c, batch = context(params, src, src_lengths, check_key(key))
        return dec.teacher(params["decoder"], c, tgt_in, tgt_lengths, batch)

    def generate(params, src, src_lengths=None, *, max_len: Optional[int] = None, key=None, temperature: float = 1.0):
        temperature = _check_generate(max_len, temperature, key)
        c, batch = context(params, src, src_lengths)
        return dec.decode(params["decoder"], c, max_len, key, temperature, batch)

    return Model(init, apply, generate)


def one_to_many(decoder: Cell, input_size: int, *, vocab_size: int, bos: int, eos: int, embed_size: int = 32) -> Model:
    """One input vector ``v (*batch, I)`` in, a token sequence out (generation).

    * ``apply(params, v, tgt_in, tgt_lengths=None) -> logits (*batch, T, V)``: teacher forcing.
    * ``generate(params, v, None, *, max_len, key=None, temperature=1.0) -> (tokens, lengths)``:
      temperature sampling (greedy with ``key=None``), stopping at ``eos``; the source has no lengths.

    Args:
      decoder: the decoder's :class:`rnn_jax.Cell`; its input is ``[embed(y_{t-1}), v]``.
      input_size: ``I``, the width of ``v``.
      vocab_size: ``V``, the output vocabulary (``bos`` and ``eos`` included).
      bos: the id fed before the first token.
      eos: the id that ends a sequence.
      embed_size: the width of the token embedding.

    Returns:
      A :class:`Model` with ``generate``.

    Examples:
      >>> model = rnn_jax.models.one_to_many(rnn_jax.gru(16), 4, vocab_size=6, bos=0, eos=1)
      >>> p = model.init(jax.random.key(0))
      >>> v = jnp.ones((3, 4))
      >>> model.apply(p, v, jnp.zeros((3, 7), int)).shape                   # teacher forcing
      (3, 7, 6)
      >>> tokens, lengths = model.generate(p, v, max_len=10)                # greedy
      >>> tokens.shape, lengths.shape
      ((3, 10), (3,))
    """
    _positive("input_size", input_size)
    dec = _Decoder(decoder, input_size, vocab_size, embed_size, bos, eos)

    def init(key, dtype=jnp.float32):
        init_key(key)
        return {"decoder": dec.init(key, dtype)}

    def check_v(params, v):
        dtype = _check_model_params(init, params)
        shape = getattr(v, "shape", None)
        if shape is None or len(shape) < 1 or shape[-1] != input_size:
            raise ValueError(
                f"v: expected shape (*batch, {input_size}), got "
                f"{_checks.shape_str(shape) if shape is not None else type(v).__name__}"
            )
        _checks.check_same_dtype(v, params, "v")
        batch = tuple(shape[:-1])
        return v.reshape((-1, input_size)).astype(dtype), batch

    def apply(params, v, tgt_in, tgt_lengths=None):
        c, batch = check_v(params, v)
        return dec.teacher(params["decoder"], c, tgt_in, tgt_lengths, batch)

    def generate(params, v, source_lengths=None, *, max_len: Optional[int] = None, key=None, temperature: float = 1.0):
        if source_lengths is not None:
            raise ValueError("source_lengths: one_to_many reads one vector per example; expected None")
        temperature = _check_generate(max_len, temperature, key)
        c, batch = check_v(params, v)
        return dec.decode(params["decoder"], c, max_len, key, temperature, batch)

    return Model(init, apply, generate)
