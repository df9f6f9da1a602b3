"""Data parallelism and multi-host training on JAX's own machinery (``jax.sharding``, ``jax.distributed``).

* :func:`make_mesh` ``("data=4")`` or ``("data=2,model=2")``: a :class:`jax.sharding.Mesh` over the
  global devices. The batch is split along ``data``; params and optimiser state are replicated, or,
  with a ``model`` axis, their weight matrices split along their last (gate/hidden) axis.
* :func:`initialize`: ``jax.distributed.initialize`` from arguments or the environment variables
  ``RNN_JAX_COORDINATOR`` (host:port), ``RNN_JAX_NUM_PROCESSES``, ``RNN_JAX_PROCESS_ID``; on CPUs it
  selects the gloo collectives so that processes on one or several hosts can train together.
* :func:`process_slice`: the part of a global batch that this process loads (its shard of the data).
* :func:`shard_batch` / :func:`place_state`: global arrays from process-local data.
* :func:`to_host`: a replicated global array back to numpy on any process (for logs and checkpoints).

The same training code runs unchanged on one device: :func:`rnn_jax.train.fit` takes ``mesh=None``.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "make_mesh",
    "parse_mesh",
    "initialize",
    "process_slice",
    "shard_batch",
    "place_state",
    "to_host",
    "state_spec",
]


def parse_mesh(spec: str) -> dict[str, int]:
    """``"data=4"`` or ``"data=2,model=2"`` -> ``{"data": 4, "model": 2}`` (axes in order).

    Args:
      spec: ``"data=N"`` or ``"data=N,model=M"``.

    Returns:
      ``{axis: size}``, in the order given.

    Examples:
      >>> rnn_jax.distributed.parse_mesh("data=2,model=2")
      {'data': 2, 'model': 2}
    """
    axes = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, size = part.partition("=")
        if name not in ("data", "model") or not size.isdigit() or int(size) < 1 or name in axes:
            raise ValueError(f"mesh: expected 'data=N' or 'data=N,model=M' with positive N, M, got {spec!r}")
        axes[name] = int(size)
    if "data" not in axes:
        raise ValueError(f"mesh: expected a 'data' axis, got {spec!r}")
    return axes


def make_mesh(spec) -> Mesh:
    """A mesh over ``jax.devices()``. ``spec``: a string or a dict of axis sizes.

    One process may use ``N`` of more devices (the first ``N``); a multi-process run spans every
    device of every process.

    Args:
      spec: ``"data=N[,model=M]"`` or ``{"data": N, "model": M}``.

    Returns:
      A ``jax.sharding.Mesh`` with axes ``("data",)`` or ``("data", "model")``.

    Examples:
      >>> mesh = rnn_jax.distributed.make_mesh("data=1")
      >>> mesh.axis_names, mesh.size
      (('data',), 1)
    """
    axes = parse_mesh(spec) if isinstance(spec, str) else dict(spec)
    n = int(np.prod(list(axes.values())))
    devices = jax.devices()
    if n > len(devices) or (jax.process_count() > 1 and n != len(devices)):
        need = "at most" if jax.process_count() == 1 else "exactly"
        raise ValueError(
            f"mesh: {axes} needs {n} devices, this run has {len(devices)} "
            f"({jax.process_count()} process(es) x {jax.local_device_count()} local; {need} that many "
            f"can be used); on CPU use XLA_FLAGS=--xla_force_host_platform_device_count=N"
        )
    return Mesh(np.array(devices[:n]).reshape(tuple(axes.values())), tuple(axes))


def initialize(
    coordinator: Optional[str] = None, num_processes: Optional[int] = None, process_id: Optional[int] = None
) -> bool:
    """Join a multi-process run; returns False (and does nothing) for a single process.

    Args:
      coordinator: the coordinator's ``host:port`` (or the environment's ``RNN_JAX_COORDINATOR``).
      num_processes: the number of processes (or ``RNN_JAX_NUM_PROCESSES``, default 1).
      process_id: this process's index (or ``RNN_JAX_PROCESS_ID``, default 0).

    Returns:
      True when this process joined a multi-process run, False for a single process.

    Examples:
      >>> rnn_jax.distributed.initialize(num_processes=1)
      False
    """
    coordinator = coordinator or os.environ.get("RNN_JAX_COORDINATOR")
    num_processes = num_processes or int(os.environ.get("RNN_JAX_NUM_PROCESSES", "1"))
    if process_id is None:
        process_id = int(os.environ.get("RNN_JAX_PROCESS_ID", "0"))
    if num_processes <= 1:
        return False
    if not coordinator:
        raise ValueError(
            "coordinator: a multi-process run needs the coordinator's host:port (argument or RNN_JAX_COORDINATOR)"
        )
    if not 0 <= process_id < num_processes:
        raise ValueError(f"process_id: expected a value in [0, {num_processes}), got {process_id}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # used only by CPU devices
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes, process_id=process_id)
    return True


def process_slice(global_size: int) -> slice:
    """The contiguous part of a global batch of ``global_size`` that this process loads.

    Args:
      global_size: the global batch size, divisible by the number of processes.

    Returns:
      A ``slice`` of the global batch's leading axis.

    Examples:
      >>> rnn_jax.distributed.process_slice(8)                  # one process loads all of it
      slice(0, 8, None)
    """
    n, i = jax.process_count(), jax.process_index()
    if global_size % n:
        raise ValueError(f"batch size {global_size} must be divisible by the number of processes {n}")
    k = global_size // n
    return slice(i * k, (i + 1) * k)


def shard_batch(batch, mesh: Mesh):
    """Process-local batch arrays (leading axis: this process's examples) -> global arrays split along ``data``.

    Args:
      batch: a pytree of arrays whose leading axis is this process's examples (divisible by its devices in
        the mesh).
      mesh: from :func:`make_mesh`.

    Returns:
      The same pytree of global ``jax.Array``s, split along the mesh's ``data`` axis.

    Examples:
      >>> mesh = rnn_jax.distributed.make_mesh("data=1")
      >>> xs = rnn_jax.distributed.shard_batch({"xs": np.zeros((4, 10, 3))}, mesh)["xs"]
      >>> xs.shape, xs.sharding.spec
      ((4, 10, 3), P('data',))
    """
    sharding = NamedSharding(mesh, P("data"))

    def one(a):
        a = np.asarray(a)
        local_devices = len(mesh.local_devices)
        if a.shape[0] % local_devices:
            raise ValueError(
                f"batch: {a.shape[0]} examples on this process do not split over its "
                f"{local_devices} devices of the mesh"
            )
        return jax.make_array_from_process_local_data(sharding, a)

    return jax.tree.map(one, batch)


def state_spec(leaf, mesh: Mesh) -> P:
    """Replicated, except 2-D weights whose last axis splits evenly over a ``model`` mesh axis.

    Args:
      leaf: an array (or anything with ``ndim`` and ``shape``).
      mesh: from :func:`make_mesh`.

    Returns:
      A ``PartitionSpec``: ``P(None, "model")`` or ``P()``.

    Examples:
      >>> mesh = rnn_jax.distributed.make_mesh("data=1,model=1")
      >>> rnn_jax.distributed.state_spec(jnp.zeros((3, 8)), mesh), rnn_jax.distributed.state_spec(jnp.zeros(8), mesh)
      (P(None, 'model'), P())
    """
    if "model" in mesh.axis_names and getattr(leaf, "ndim", 0) == 2 and leaf.shape[-1] % mesh.shape["model"] == 0:
        return P(None, "model")
    return P()


def place_state(state, mesh: Mesh):
    """The same state on every process -> global arrays placed by :func:`state_spec`.

    Args:
      state: a pytree of arrays, equal on every process (e.g. params, a :class:`rnn_jax.train.TrainState`).
      mesh: from :func:`make_mesh`.

    Returns:
      The same pytree of global arrays, placed by :func:`state_spec`.

    Examples:
      >>> mesh = rnn_jax.distributed.make_mesh("data=1")
      >>> p = rnn_jax.distributed.place_state({"W": np.ones((3, 4))}, mesh)
      >>> p["W"].sharding.spec
      P()
    """

    def one(a):
        sharding = NamedSharding(mesh, state_spec(a, mesh))
        a = np.asarray(to_host(a))
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    return jax.tree.map(one, state)


def to_host(x) -> Any:
    """numpy value of a (possibly global, replicated or model-sharded) array, on any process.

    Args:
      x: an array (local or global).

    Returns:
      A ``numpy.ndarray`` of the whole value.

    Examples:
      >>> rnn_jax.distributed.to_host(jnp.arange(3))
      array([0, 1, 2]...)
    """
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        if x.is_fully_replicated:
            return np.asarray(x.addressable_data(0))
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
