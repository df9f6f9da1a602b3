"""rnn_jax: recurrent neural networks as pure JAX functions.

Cells (one step, one example) -> layers (batches ``(*batch, T, I)``: one scan over time, or the cell's
fused recurrence) -> models (the seeds' configurations) -> losses (masked, over a batch) -> optax.
"""

from rnn_jax import (
    callbacks,
    fused,
    gradcheck,
    host_memory,
    initializers,
    interop,
    losses,
    parallel,
    regularization,
    runs,
)
from rnn_jax._checks import checked
from rnn_jax.cells import (
    Cell,
    JordanState,
    LSTMState,
    check_cell,
    elman,
    gru,
    indrnn,
    input_size_of,
    jordan,
    layer_norm_gru,
    layer_norm_lstm,
    lru,
    lstm,
    min_gru,
    min_lstm,
    modrelu,
    orthogonal_rnn,
    prepared,
    resolve_activation,
)
from rnn_jax.host_memory import reuse_host_memory
from rnn_jax.layers import Layer, bidirectional, rnn, stack, stream_init, stream_step
from rnn_jax.models import Model, encoder_decoder, many_to_many, many_to_one, one_to_many
from rnn_jax.regularization import dropout
from rnn_jax.runs import Fused, Linear, Newton, Scan
from rnn_jax.unroll import sequence_mask, unroll, unroll_reduce

__version__ = "0.1.0"

__all__ = [
    "Cell",
    "LSTMState",
    "JordanState",
    "elman",
    "jordan",
    "lstm",
    "gru",
    "orthogonal_rnn",
    "modrelu",
    "min_gru",
    "min_lstm",
    "indrnn",
    "lru",
    "layer_norm_lstm",
    "layer_norm_gru",
    "prepared",
    "resolve_activation",
    "check_cell",
    "input_size_of",
    "Layer",
    "rnn",
    "Scan",
    "Fused",
    "Linear",
    "Newton",
    "runs",
    "bidirectional",
    "stack",
    "stream_init",
    "stream_step",
    "Model",
    "many_to_one",
    "many_to_many",
    "encoder_decoder",
    "one_to_many",
    "unroll",
    "unroll_reduce",
    "sequence_mask",
    "gradcheck",
    "initializers",
    "interop",
    "losses",
    "callbacks",
    "fused",
    "parallel",
    "checked",
    "host_memory",
    "reuse_host_memory",
    "regularization",
    "dropout",
]
