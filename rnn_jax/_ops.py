"""Small numerical helpers shared by cells, layers and models."""
import jax
import jax.numpy as jnp


def affine(x: jax.Array, W: jax.Array, b: jax.Array) -> jax.Array:
    """``x @ W + b`` for ``x`` of shape ``(..., fan_in)``; the bias is broadcast explicitly so the
    code runs under ``jax_numpy_rank_promotion="raise"``."""
    z = x @ W
    return z + jnp.broadcast_to(b, z.shape)


def shift_down(S: jax.Array, first: jax.Array) -> jax.Array:
    """The previous row of every row of a time-major ``S``: ``first`` then ``S[:-1]`` (``s_{t-1}``)."""
    return jnp.concatenate([first[None], S[:-1]], 0)
