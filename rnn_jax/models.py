"""The seeds' configurations, built from layers and cells.

* :func:`many_to_one`: a sequence in, one prediction out (classification, sentiment).
* :func:`many_to_many`: one prediction per step (tagging, language models).
* :func:`encoder_decoder`: an encoder layer reads the source; a decoder cell with its own weights
  writes the target (translation); teacher forcing for training, greedy or sampled decoding.
* :func:`one_to_many`: one input vector, a generated sequence (image captioning, music, text).

Each returns a :class:`Model` whose functions work on ONE example. Token inputs are given as
integer sequences ``(T,)`` when ``vocab_size`` is set (learned embedding, or one-hot when
``embed_size`` is None); otherwise inputs are float ``(T, I)``.
"""
from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from jax import lax

from rnn_jax import _checks
from rnn_jax._ops import affine
from rnn_jax.cells import Cell
from rnn_jax.layers import Layer
from rnn_jax.unroll import unroll

__all__ = ["Model", "dense_init", "dense", "many_to_one", "many_to_many", "encoder_decoder",
           "one_to_many", "READOUTS"]


class Model(NamedTuple):
    """``init(key, dtype=float32) -> params``; ``apply(params, ...)``; ``generate(params, ..., key)`` or None."""

    init: Callable[..., Any]
    apply: Callable[..., Any]
    generate: Optional[Callable[..., Any]] = None


def dense_init(key, fan_in: int, fan_out: int, dtype=jnp.float32) -> dict:
    """``{"W": (fan_in, fan_out) Glorot uniform, "b": (fan_out,) zeros}``."""
    return {"W": jax.nn.initializers.glorot_uniform()(key, (fan_in, fan_out), dtype),
            "b": jnp.zeros((fan_out,), dtype)}


def dense(params, x):
    """``x @ W + b`` for ``x (..., fan_in)``."""
    return affine(x, params["W"], params["b"])


def _embedder(vocab_size, embed_size, input_size):
    """Returns (size of the RNN input, init(key, dtype) -> params, encode(params, x) -> (T, E))."""
    if vocab_size is None:
        if input_size is None:
            raise ValueError("input_size: required when the inputs are not tokens (vocab_size=None)")
        return input_size, (lambda key, dtype: {}), (lambda p, xs, dtype: xs)
    if embed_size is None:  # one-hot
        return vocab_size, (lambda key, dtype: {}), (lambda p, tok, dtype: jax.nn.one_hot(tok, vocab_size, dtype=dtype))

    def init(key, dtype):
        return {"E": jax.random.normal(key, (vocab_size, embed_size), dtype) * embed_size ** -0.5}

    return embed_size, init, (lambda p, tok, dtype: p["E"][tok])


def _check_tokens(tokens, vocab_size, argname):
    shape = getattr(tokens, "shape", None)
    if shape is None or len(shape) != 1:
        raise ValueError(f"{argname}: expected integer tokens of shape (T,), got "
                         f"{_checks.shape_str(shape) if shape is not None else type(tokens).__name__}")
    if not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(f"{argname}: expected an integer dtype, got {tokens.dtype}")


def _last(ys, length):
    if length is None:
        return ys[-1]
    return jnp.where(length > 0, ys[jnp.maximum(length - 1, 0)], jnp.zeros_like(ys[0]))


def _masked_mean(ys, length):
    m = (jnp.arange(ys.shape[0]) < (ys.shape[0] if length is None else length)).astype(ys.dtype)
    return (ys * m[:, None]).sum(0) / jnp.maximum(m.sum(), 1)


def _masked_max(ys, length):
    if length is None:
        return ys.max(0)
    valid = (jnp.arange(ys.shape[0]) < length)[:, None]
    return jnp.where(length > 0, jnp.where(valid, ys, -jnp.inf).max(0), 0.0)


READOUTS: dict[str, tuple[Callable, int]] = {
    # name: (fn(ys, length) -> (F,), F as a multiple of the layer's output size)
    "last": (_last, 1),          # the last valid output: the final state of a forward RNN
    "mean": (_masked_mean, 1),   # mean over valid steps
    "max": (_masked_max, 1),     # max over valid steps
    # last and first valid outputs: holds the final states of both directions of a bidirectional layer
    "ends": (lambda ys, L: jnp.concatenate([_last(ys, L), ys[0]]), 2),
}


def _with_input_checks(layer, vocab_size, embed_size, input_size):
    rnn_in, emb_init, encode = _embedder(vocab_size, embed_size, input_size)

    def encode_checked(params, xs, length):
        if vocab_size is not None:
            _check_tokens(xs, vocab_size, "xs")
            T = xs.shape[0]
        else:
            _checks.check_sequence(xs, rnn_in)
            T = xs.shape[0]
        _checks.check_length(length, T)
        dtype = jax.tree_util.tree_leaves(params["rnn"])[0].dtype
        return encode(params["embed"], xs, dtype)

    return rnn_in, emb_init, encode_checked


def many_to_one(layer: Layer, output_size: int, *, readout: str = "last", vocab_size: Optional[int] = None,
                embed_size: Optional[int] = None, input_size: Optional[int] = None) -> Model:
    """Sequence in, one output out: ``apply(params, xs, length=None) -> (O,)`` logits or values.

    ``readout`` picks the summary of the layer's outputs that the linear head reads:
    ``"last"`` (final state of a forward RNN), ``"mean"``, ``"max"``, or ``"ends"``
    (last and first valid outputs: both directions' final states of a bidirectional layer).
    """
    if readout not in READOUTS:
        raise ValueError(f"readout: expected one of {sorted(READOUTS)}, got {readout!r}")
    read, mult = READOUTS[readout]
    rnn_in, emb_init, encode = _with_input_checks(layer, vocab_size, embed_size, input_size)

    def init(key, dtype=jnp.float32):
        k1, k2, k3 = jax.random.split(key, 3)
        return {"embed": emb_init(k1, dtype), "rnn": layer.init(k2, rnn_in, dtype),
                "head": dense_init(k3, mult * layer.output_size, output_size, dtype)}

    def apply(params, xs, length=None):
        h = encode(params, xs, length)               # (T, I)
        ys, _ = layer.apply(params["rnn"], h, length)  # (T, H)
        return dense(params["head"], read(ys, length))  # (O,)

    return Model(init, apply)


def many_to_many(layer: Layer, output_size: int, *, vocab_size: Optional[int] = None,
                 embed_size: Optional[int] = None, input_size: Optional[int] = None) -> Model:
    """One output per step: ``apply(params, xs, length=None, initial_state=None) -> ((T, O), final_state)``.

    ``generate(params, key, prompt (P,), steps, temperature=1.0)`` samples a continuation token by
    token (for language models: ``vocab_size == output_size``), feeding each sample back as input.
    """
    rnn_in, emb_init, encode = _with_input_checks(layer, vocab_size, embed_size, input_size)

    def init(key, dtype=jnp.float32):
        k1, k2, k3 = jax.random.split(key, 3)
        return {"embed": emb_init(k1, dtype), "rnn": layer.init(k2, rnn_in, dtype),
                "head": dense_init(k3, layer.output_size, output_size, dtype)}

    def apply(params, xs, length=None, initial_state=None):
        h = encode(params, xs, length)                                # (T, I)
        ys, final = layer.apply(params["rnn"], h, length, initial_state)  # (T, H)
        return dense(params["head"], ys), final                       # (T, O)

    generate = None
    if vocab_size is not None and vocab_size == output_size and layer.step is not None:
        def generate(params, key, prompt, steps: int, temperature: float = 1.0):
            """Read ``prompt (P,)``, then sample ``steps`` tokens (greedy with ``key=None`` or temperature
            0); returns ``(steps,)`` int tokens."""
            _check_tokens(prompt, vocab_size, "prompt")
            logits, state = apply(params, prompt)
            dtype = logits.dtype

            keys = jax.random.split(key, steps) if key is not None else jnp.zeros((steps,))

            def body(carry, k):
                state, logit = carry
                tok = _pick(k if key is not None else None, logit, temperature)
                x = encode(params, tok[None], None)[0]
                state, y = layer.step(params["rnn"], state, x)
                return (state, dense(params["head"], y)), tok

            _, toks = lax.scan(body, (state, logits[-1].astype(dtype)), keys)
            return toks

    return Model(init, apply, generate)


def _pick(key, logits, temperature):
    """Greedy when ``temperature == 0`` (or key None), else a sample from softmax(logits / temperature)."""
    if key is None or (isinstance(temperature, (int, float)) and temperature == 0):
        return jnp.argmax(logits).astype(jnp.int32)
    return jax.random.categorical(key, logits / temperature).astype(jnp.int32)


# ---------------------------------------------------------------------------------------------
# Decoders: a cell that writes a token sequence given a context vector (shared by the two below).

def _decoder_parts(cell: Cell, context_size: int, vocab_size: int, embed_size: int):
    """Decoder input at step t: [embed(y_{t-1}), context] (Cho et al. 2014). The initial carry is a
    tanh bridge from the context, one dense map per carry leaf."""
    template = cell.initial_carry(jnp.float32)
    leaves, treedef = jax.tree_util.tree_flatten(template)

    def init(key, dtype):
        ke, kc, kb, kh = jax.random.split(key, 4)
        bridge = tuple(dense_init(k, context_size, leaf.shape[0], dtype)
                       for k, leaf in zip(jax.random.split(kb, len(leaves)), leaves))
        return {"E": jax.random.normal(ke, (vocab_size, embed_size), dtype) * embed_size ** -0.5,
                "cell": cell.init(kc, embed_size + context_size, dtype), "bridge": bridge,
                "head": dense_init(kh, cell.output_size, vocab_size, dtype)}

    def carry0(p, context):
        return jax.tree_util.tree_unflatten(treedef, [jnp.tanh(dense(b, context)) for b in p["bridge"]])

    def teacher(p, context, tgt_in, tgt_length):
        """Teacher forcing: ``tgt_in (T,)`` = [bos, y_0, ..., y_{T-2}] -> logits (T, V)."""
        T = tgt_in.shape[0]
        xs = jnp.concatenate([p["E"][tgt_in], jnp.broadcast_to(context, (T, context.shape[0]))], -1)
        ys, _ = unroll(cell, p["cell"], xs, length=tgt_length, initial_carry=carry0(p, context))
        return dense(p["head"], ys)  # (T, V)

    def decode(p, context, key, max_len, bos, eos, temperature):
        """Greedy (``key=None`` or temperature 0) or sampled decoding. Returns tokens ``(max_len,)``
        (``eos`` repeated after the first ``eos``) and the length including the first ``eos``."""
        keys = jax.random.split(key, max_len) if key is not None else jnp.zeros((max_len,))

        def body(carry, k):
            state, prev, done = carry
            x = jnp.concatenate([p["E"][prev], context])
            state, y = cell.step(p["cell"], state, x)
            tok = _pick(k if key is not None else None, dense(p["head"], y), temperature)
            tok = jnp.where(done, eos, tok)
            return (state, tok, done | (tok == eos)), (tok, done)

        init_carry = (carry0(p, context), jnp.asarray(bos, jnp.int32), jnp.asarray(False))
        _, (toks, was_done) = lax.scan(body, init_carry, keys)
        return toks, jnp.sum(~was_done)

    return init, teacher, decode


def encoder_decoder(encoder: Layer, decoder: Cell, *, tgt_vocab: int, bos: int, eos: int,
                    embed_size: int = 32, src_vocab: Optional[int] = None, src_embed_size: Optional[int] = 32,
                    input_size: Optional[int] = None, readout: str = "last") -> Model:
    """Sequence-to-sequence with separate encoder and decoder weights (Cho et al. 2014; Sutskever et al. 2014).

    The encoder reads the source; ``readout`` of its outputs is the context ``c``; the decoder's initial
    carry is ``tanh(c W + b)`` and it reads ``[embed(y_{t-1}), c]`` at every step.

    * ``apply(params, src, src_len, tgt_in, tgt_len) -> logits (T_out, V)``: teacher forcing.
    * ``generate(params, src, src_len, max_len, key=None, temperature=1.0) -> (tokens, length)``:
      greedy with ``key=None``, else sampled; stops at ``eos``.
    """
    if readout not in READOUTS:
        raise ValueError(f"readout: expected one of {sorted(READOUTS)}, got {readout!r}")
    read, mult = READOUTS[readout]
    rnn_in, emb_init, encode = _with_input_checks(encoder, src_vocab, src_embed_size, input_size)
    dec_init, teacher, decode = _decoder_parts(decoder, mult * encoder.output_size, tgt_vocab, embed_size)

    def init(key, dtype=jnp.float32):
        k1, k2, k3 = jax.random.split(key, 3)
        return {"embed": emb_init(k1, dtype), "rnn": encoder.init(k2, rnn_in, dtype), "decoder": dec_init(k3, dtype)}

    def context(params, src, src_len):
        ys, _ = encoder.apply(params["rnn"], encode(params, src, src_len), src_len)
        return read(ys, src_len)

    def apply(params, src, src_len, tgt_in, tgt_len=None):
        _check_tokens(tgt_in, tgt_vocab, "tgt_in")
        return teacher(params["decoder"], context(params, src, src_len), tgt_in, tgt_len)

    def generate(params, src, src_len, max_len: int, key=None, temperature: float = 1.0):
        return decode(params["decoder"], context(params, src, src_len), key, max_len, bos, eos, temperature)

    return Model(init, apply, generate)


def one_to_many(decoder: Cell, input_size: int, *, vocab_size: int, bos: int, eos: int,
                embed_size: int = 32) -> Model:
    """One input vector ``v (I,)`` in, a token sequence out (generation).

    * ``apply(params, v, tgt_in, tgt_len=None) -> logits (T, V)``: teacher forcing.
    * ``generate(params, v, max_len, key=None, temperature=1.0) -> (tokens, length)``: temperature
      sampling (greedy with ``key=None``), stopping at ``eos``.
    """
    dec_init, teacher, decode = _decoder_parts(decoder, input_size, vocab_size, embed_size)

    def check_v(v):
        if getattr(v, "shape", None) != (input_size,):
            raise ValueError(f"v: expected shape ({input_size},), got {getattr(v, 'shape', type(v).__name__)}")

    def init(key, dtype=jnp.float32):
        return {"decoder": dec_init(key, dtype)}

    def apply(params, v, tgt_in, tgt_len=None):
        check_v(v)
        _check_tokens(tgt_in, vocab_size, "tgt_in")
        return teacher(params["decoder"], v, tgt_in, tgt_len)

    def generate(params, v, max_len: int, key=None, temperature: float = 1.0):
        check_v(v)
        return decode(params["decoder"], v, key, max_len, bos, eos, temperature)

    return Model(init, apply, generate)
