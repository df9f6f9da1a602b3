"""Plain-Python reference unrolls: a for loop over timesteps, slicing instead of masking."""
import jax
import jax.numpy as jnp
import numpy as np


def loop_unroll(cell, params, xs, length=None, reverse=False, carry=None):
    """Feed steps one by one with ``cell.step`` (ONE sequence ``xs (T, I)``); the valid prefix only; zeros
    past ``length``."""
    T = xs.shape[0]
    L = T if length is None else int(length)
    carry = cell.initial_state(xs.dtype) if carry is None else carry
    ys = [None] * T
    order = range(L - 1, -1, -1) if reverse else range(L)
    step = jax.jit(cell.step)  # one program for every step, not one dispatch per operation
    for t in order:
        carry, ys[t] = step(params, carry, xs[t])
    zero = jnp.zeros((cell.output_size,), xs.dtype)
    if T == 0:
        return jnp.zeros((0, cell.output_size), xs.dtype), carry
    return jnp.stack([zero if y is None else y for y in ys]), carry


def numpy_elman(params, xs, g):
    h = np.zeros(params["W_h"].shape[0])
    out = []
    for x in np.asarray(xs):
        h = g(x @ np.asarray(params["W_i"]) + np.asarray(params["b_i"]) + h @ np.asarray(params["W_h"]))
        out.append(h)
    return np.stack(out)


def numpy_jordan(params, xs):
    p = jax.tree.map(np.asarray, params)
    y = np.zeros(p["W_o"].shape[1])
    out = []
    for x in np.asarray(xs):
        h = np.tanh(x @ p["W_i"] + p["b_i"] + y @ p["W_y"])
        y = np.tanh(h @ p["W_o"] + p["b_o"])
        out.append(y)
    return np.stack(out)
