"""Weight initialisers, chosen by keyword.

Every initialiser has the signature of ``jax.nn.initializers``: ``init(key, shape, dtype) -> array``.
Weights are stored input-major, ``(fan_in, fan_out)``, so a layer computes ``x @ W``.

Names accepted by :func:`get`:

=================  =========================================================================
``glorot_uniform``  U(-a, a), a = sqrt(6 / (fan_in + fan_out))            (Glorot & Bengio 2010)
``glorot_normal``   N(0, 2 / (fan_in + fan_out)), truncated               (alias ``xavier_*``)
``he_uniform``      U(-a, a), a = sqrt(6 / fan_in)                        (He et al. 2015)
``he_normal``       N(0, 2 / fan_in), truncated
``lecun_uniform``   U(-a, a), a = sqrt(3 / fan_in)                        (LeCun et al. 1998)
``lecun_normal``    N(0, 1 / fan_in), truncated
``orthogonal``      a random orthogonal matrix                            (Saxe et al. 2014)
``identity``        the identity matrix (times ``scale``), for IRNN        (Le et al. 2015)
``pytorch``         U(-1/sqrt(H), 1/sqrt(H)), PyTorch's default for nn.RNN/LSTM/GRU
``zeros``, ``ones`` constants
=================  =========================================================================

Gated cells initialise every gate's block on its own (an ``(I, H)`` block per gate), so that
``orthogonal`` and ``identity`` mean what they say for each gate's recurrent matrix.
"""

from __future__ import annotations

from typing import Callable, Union

import jax
import jax.numpy as jnp

Initializer = Callable[..., jax.Array]
InitSpec = Union[str, Initializer]

__all__ = [
    "Initializer",
    "get",
    "identity",
    "orthogonal",
    "uniform",
    "uniform_range",
    "constant",
    "pytorch_uniform",
    "glorot_uniform",
    "glorot_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
    "zeros",
    "ones",
]

glorot_uniform = jax.nn.initializers.glorot_uniform()
glorot_normal = jax.nn.initializers.glorot_normal()
he_uniform = jax.nn.initializers.he_uniform()
he_normal = jax.nn.initializers.he_normal()
lecun_uniform = jax.nn.initializers.lecun_uniform()
lecun_normal = jax.nn.initializers.lecun_normal()
zeros = jax.nn.initializers.zeros
ones = jax.nn.initializers.ones


def orthogonal(scale: float = 1.0) -> Initializer:
    """A random orthogonal matrix times ``scale`` (QR of a Gaussian matrix).

    For dtypes narrower than float32 (bfloat16, float16) the QR runs in float32 and the result is cast.

    Args:
      scale: a factor on the matrix (its singular values all equal ``scale``).

    Returns:
      An initialiser ``(key, shape, dtype) -> array``.

    Examples:
      >>> W = rnn_jax.initializers.orthogonal()(jax.random.key(0), (4, 4), jnp.float32)
      >>> bool(jnp.allclose(W @ W.T, jnp.eye(4), atol=1e-5))
      True
    """
    base = jax.nn.initializers.orthogonal(scale)

    def init(key, shape, dtype=jnp.float32):
        if jnp.dtype(dtype).itemsize < 4:
            return base(key, shape, jnp.float32).astype(dtype)
        return base(key, shape, dtype)

    return init


def identity(scale: float = 1.0) -> Initializer:
    """``scale * I`` for a square matrix: the IRNN recurrent initialisation (Le, Jaitly & Hinton 2015).

    Args:
      scale: the diagonal's value.

    Returns:
      An initialiser ``(key, shape, dtype) -> array``; a non-square shape raises ``ValueError``.

    Examples:
      >>> rnn_jax.initializers.identity(0.5)(jax.random.key(0), (2, 2), jnp.float32)
      Array([[0.5, 0. ],
             [0. , 0.5]], dtype=float32)
    """

    def init(key, shape, dtype=jnp.float32):
        del key
        if len(shape) != 2 or shape[0] != shape[1]:
            raise ValueError(f"identity initialiser: expected a square matrix shape (H, H), got {tuple(shape)}")
        return scale * jnp.eye(shape[0], dtype=dtype)

    return init


def uniform(bound: float) -> Initializer:
    """U(-bound, bound).

    Args:
      bound: the half-width.

    Returns:
      An initialiser ``(key, shape, dtype) -> array``.

    Examples:
      >>> w = rnn_jax.initializers.uniform(0.1)(jax.random.key(0), (1000,), jnp.float32)
      >>> bool(jnp.all(jnp.abs(w) <= 0.1))
      True
    """

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def uniform_range(low: float, high: float) -> Initializer:
    """U(low, high).

    Args:
      low: the lower end.
      high: the upper end.

    Returns:
      An initialiser ``(key, shape, dtype) -> array``.

    Examples:
      >>> w = rnn_jax.initializers.uniform_range(1.0, 2.0)(jax.random.key(0), (1000,), jnp.float32)
      >>> bool(jnp.all((w >= 1) & (w <= 2)))
      True
    """

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, low, high)

    return init


def constant(value: float) -> Initializer:
    """Every entry equal to ``value``.

    Args:
      value: the entries' value.

    Returns:
      An initialiser ``(key, shape, dtype) -> array``.

    Examples:
      >>> rnn_jax.initializers.constant(3.0)(jax.random.key(0), (2,), jnp.float32)
      Array([3., 3.], dtype=float32)
    """
    return jax.nn.initializers.constant(value)


def pytorch_uniform(hidden_size: int) -> Initializer:
    """PyTorch's default for recurrent modules: U(-k, k) with k = 1 / sqrt(hidden_size).

    Args:
      hidden_size: ``H``.

    Returns:
      An initialiser ``(key, shape, dtype) -> array``.

    Examples:
      >>> w = rnn_jax.initializers.pytorch_uniform(100)(jax.random.key(0), (50, 400), jnp.float32)
      >>> bool(jnp.abs(w).max() <= 0.1)
      True
    """
    return uniform(1.0 / hidden_size**0.5)


_BY_NAME = {
    "glorot_uniform": glorot_uniform,
    "xavier_uniform": glorot_uniform,
    "glorot_normal": glorot_normal,
    "xavier_normal": glorot_normal,
    "he_uniform": he_uniform,
    "kaiming_uniform": he_uniform,
    "he_normal": he_normal,
    "kaiming_normal": he_normal,
    "lecun_uniform": lecun_uniform,
    "lecun_normal": lecun_normal,
    "orthogonal": orthogonal(),
    "identity": identity(),
    "zeros": zeros,
    "ones": ones,
}
NAMES = tuple(sorted(_BY_NAME)) + ("pytorch",)


def get(spec: InitSpec, hidden_size: int | None = None, *, argname: str = "init") -> Initializer:
    """Resolve an initialiser given by name or as a callable.

    ``"pytorch"`` needs ``hidden_size`` (its bound is 1/sqrt(H)).

    Args:
      spec: a name from the table above or a callable ``(key, shape, dtype) -> array``.
      hidden_size: ``H``, needed by ``"pytorch"``.
      argname: the argument's name for the error message.

    Returns:
      An initialiser ``(key, shape, dtype) -> array``.

    Examples:
      >>> rnn_jax.initializers.get("he_normal")(jax.random.key(0), (3, 2), jnp.float32).shape
      (3, 2)
      >>> rnn_jax.initializers.get("kaiming", argname="kernel_init")
      Traceback (most recent call last):
      ...
      ValueError: kernel_init: unknown initialiser 'kaiming'...
    """
    if callable(spec):
        return spec
    if spec == "pytorch":
        if hidden_size is None:
            raise ValueError(f"{argname}: 'pytorch' initialisation needs the hidden size")
        return pytorch_uniform(hidden_size)
    try:
        return _BY_NAME[spec]
    except (KeyError, TypeError):
        raise ValueError(f"{argname}: unknown initialiser {spec!r}; expected a callable or one of {NAMES}") from None


def blocks(init: Initializer, key: jax.Array, shape: tuple[int, int], n_blocks: int, dtype) -> jax.Array:
    """Initialise ``n_blocks`` matrices of ``shape`` separately and join them along the last axis."""
    keys = jax.random.split(key, n_blocks)
    return jnp.concatenate([init(k, shape, dtype) for k in keys], axis=-1)
