"""Weight conversion between rnn_jax and PyTorch / Flax.

* :func:`from_torch` / :func:`to_torch`: ``nn.RNN`` (tanh, relu), ``nn.LSTM``, ``nn.GRU`` with any
  ``num_layers``, ``bidirectional`` and ``batch_first`` (rnn_jax layers work on one ``(T, I)``
  sequence; ``batch_first`` only decides how the caller lays out its batch).
* :func:`from_flax` / :func:`to_flax`: Flax linen ``SimpleCell``, ``LSTMCell``, ``GRUCell``.

PyTorch is imported only when these functions are called.
"""

from rnn_jax.interop.flax import from_flax, lstm_carry_from_flax, to_flax
from rnn_jax.interop.torch import from_torch, from_torch_state_dict, to_torch, torch_layer

__all__ = [
    "from_torch",
    "from_torch_state_dict",
    "to_torch",
    "torch_layer",
    "from_flax",
    "to_flax",
    "lstm_carry_from_flax",
]
