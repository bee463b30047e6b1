"""Attaching a service process to the Ray cluster, once, the same way for every service.

Services that run work on Ray (training, evaluation) keep each run in a detached named
actor that records its own progress, so the service only attaches, submits, and asks
whether a run still exists. What they share lives here: the environment a loopback
cluster needs (DESIGN: known facts about Ray 2.60), the environment workers get, and
an attach that is safe when two schedulers live in one process (tests, devstack).
"""

from __future__ import annotations

import os
import threading

# A loopback-only cluster without an auth token.
RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
# For the raylet of a node (`ray start`). No module preloading: a Ray Train run starts
# about eight actor processes on demand (controller, workers, placement-group cleaner,
# synchronisation, datasets, preemption watcher), and preloading torch, transformers
# and peft into each put ~5 s of imports in front of the controller and of every worker
# (submit to first step 19.3 s with it, 11.4 s without; bench/train.py). The training
# workers import what they need themselves, while Ray Train sets them up
# (training_svc/trainer/warm_up.py).
NODE_ENV = {**RAY_ENV}
# Workers never reach the hub and keep tokenizers single-threaded (Ray runs many per node).
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
              "TOKENIZERS_PARALLELISM": "false"}

_lock = threading.Lock()


def runtime_env() -> dict:
    """The ``runtime_env`` for actors and tasks a service starts."""
    return {"env_vars": {**WORKER_ENV, **RAY_ENV}}


def attach(address: str, namespace: str, local_num_cpus: int = 0) -> bool:
    """``ray.init`` unless this process is attached already; True when this call attached
    (then the caller detaches with ``ray.shutdown()`` when it closes).

    ``address``: ``host:port`` or ``ray://…``; empty starts a local cluster in-process
    (with ``local_num_cpus`` CPUs, 0 = all).
    """
    import ray

    os.environ.update(RAY_ENV)
    for key, value in WORKER_ENV.items():
        os.environ.setdefault(key, value)
    with _lock:
        if ray.is_initialized():
            return False
        if address:
            ray.init(address=address, namespace=namespace, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=local_num_cpus or None, namespace=namespace, include_dashboard=False,
                     log_to_driver=False)
        return True


def named_actor(name: str, namespace: str):
    """The live actor of that name, or None."""
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        return None


__all__ = ["NODE_ENV", "RAY_ENV", "WORKER_ENV", "attach", "named_actor", "runtime_env"]
