"""Many devices, many hosts: ``jax.distributed`` set-up, host rows <-> global arrays (``stop`` makes the processes
agree on when to stop)."""
from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxse.config import ConfigError

AXIS = "data"


def maybe_initialize_distributed(dist: dict) -> None:
    """``jax.distributed.initialize`` when asked for (explicit coordinator) or auto-detectable (TPU pod, SLURM).

    Must run before any other JAX call. On CPU, cross-process collectives use gloo.
    """
    addr, n, pid = dist.get("coordinator_address"), dist.get("num_processes"), dist.get("process_id")
    explicit = addr is not None
    auto = not explicit and ("SLURM_JOB_ID" in os.environ and int(os.environ.get("SLURM_NTASKS", "1")) > 1
                             or "TPU_WORKER_HOSTNAMES" in os.environ or "MEGASCALE_COORDINATOR_ADDRESS" in os.environ)
    if not (explicit or auto):
        return
    if explicit and (n is None or pid is None):
        raise ConfigError("distributed.coordinator_address needs distributed.num_processes and "
                                 "distributed.process_id")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if explicit:
        jax.distributed.initialize(coordinator_address=addr, num_processes=n, process_id=pid)
    else:
        jax.distributed.initialize()


def global_batch(local: dict, mesh: Mesh) -> dict:
    sharding = NamedSharding(mesh, P(AXIS))
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}


def to_host(x) -> np.ndarray:
    from jax.experimental import multihost_utils

    if jax.process_count() == 1:
        return np.asarray(x)
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def replicate(tree, sharding: NamedSharding):
    """Host values in ``tree`` (numpy) -> global arrays replicated on every device of every process."""
    def one(a):
        if isinstance(a, jax.Array):
            return a
        a = np.asarray(a)
        return jax.make_array_from_callback(a.shape, sharding, lambda idx: a[idx])

    return jax.tree.map(one, tree)
