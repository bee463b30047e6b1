"""A loopback-only local Ray head for tests and benchmarks: ``start_ray_head()``.

The head is a ``ray start --head --block`` subprocess in its own process group, on
loopback only, with the dashboard (its state API lets Ray Train clean up after a lost
run), stopped by its PID (never ``ray stop``: that would kill every Ray on the machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from services.common.ray_cluster import NODE_ENV, RAY_ENV


def _free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all sockets held open until every port is known)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"Ray head did not listen on 127.0.0.1:{port} within {timeout}s")


def start_ray_head(num_cpus: int = 2) -> tuple[str, Callable[[], None]]:
    """Start a loopback-only Ray head; returns (address, stop). Also used by bench/train.py."""
    os.environ.update(RAY_ENV)
    port, client_port, agent_port, dashboard_port = _free_ports(4)
    temp_dir = tempfile.mkdtemp(prefix="ray-", dir="/tmp")
    ray_bin = Path(sys.executable).with_name("ray")
    env = {
        **os.environ,
        **NODE_ENV,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    log = open(Path(temp_dir) / "ray-start.log", "wb")  # noqa: SIM115 - closed by stop()
    proc = subprocess.Popen(
        [
            str(ray_bin),
            "start",
            "--head",
            "--block",
            f"--num-cpus={num_cpus}",
            # The dashboard serves the state API, which Ray Train's placement-group
            # cleaner needs to free a cancelled run's CPUs.
            "--include-dashboard=true",
            "--dashboard-host=127.0.0.1",
            f"--dashboard-port={dashboard_port}",
            "--node-ip-address=127.0.0.1",
            f"--port={port}",
            f"--ray-client-server-port={client_port}",
            f"--dashboard-agent-listen-port={agent_port}",
            f"--temp-dir={temp_dir}",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=str(Path(__file__).resolve().parents[3]),
    )

    def stop() -> None:
        _stop_group(proc)
        log.close()

    try:
        _wait_for_port(port, proc)
    except BaseException:
        stop()
        raise
    return f"127.0.0.1:{port}", stop


def _stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the head's process group (raylet, GCS, workers), SIGKILL what lingers."""
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; give its children a moment, then make sure.
        time.sleep(0.5)
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


# Run in a child process: the test process may or may not be attached to the cluster.
_IDLE_CHECK = r"""
import json, sys, time
import ray
from ray._raylet import PlacementGroupID
from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

address, timeout = sys.argv[1], float(sys.argv[2])
ray.init(address=address, include_dashboard=False, log_to_driver=False)
deadline = time.monotonic() + timeout
while ray.available_resources().get("CPU", 0) < ray.cluster_resources().get("CPU", 0):
    if time.monotonic() > deadline:
        break
    time.sleep(0.5)
else:
    print(json.dumps([]))
    sys.exit(0)
leaks = []
for pg_id, pg in placement_group_table().items():
    if pg["state"] != "REMOVED":
        leaks.append(f"placement group {pg_id} ({pg['state']}, {pg['name'] or 'unnamed'})")
        remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(pg_id))))
from ray.util.state import list_actors
for actor in list_actors(filters=[("state", "=", "ALIVE")], limit=1000):
    leaks.append(f"actor {actor.class_name} {actor.name or actor.actor_id}")
    if actor.name:
        ray.kill(ray.get_actor(actor.name, namespace=actor.ray_namespace), no_restart=True)
print(json.dumps(leaks))
"""


def release_leftovers(address: str, timeout: float = 90) -> list[str]:
    """Waits up to ``timeout`` s for every CPU of the cluster to be free again. If some
    stay held, removes every placement group and kills every named actor, and returns
    what was left behind (empty when the cluster went idle by itself)."""
    import json

    out = subprocess.run(
        [sys.executable, "-c", _IDLE_CHECK, address, str(timeout)],
        env={**os.environ, **RAY_ENV}, capture_output=True, text=True, timeout=timeout + 120, check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])
