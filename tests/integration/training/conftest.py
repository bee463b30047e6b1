"""Training integration fixtures: a real local Ray head (``ray_cluster``) shared by the
whole session, the test process attached to it (``ray_client``), and S3 access.

The head is a ``ray start --head --block`` subprocess in its own process group, on
loopback only, stopped by its PID at the end (never ``ray stop``: that would kill
every Ray on the machine).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """A local Ray head with 2 CPUs: yields its address ``"127.0.0.1:PORT"``.

    Sets RAY_AUTH_MODE/RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER in os.environ too, so a later
    ``ray.init(address=…)`` in this process (or a service under test) can attach.
    """
    address, stop = start_ray_head(2)
    try:
        yield address
    finally:
        stop()


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


@pytest.fixture(scope="session")
def ray_client(ray_cluster: str) -> Iterator[str]:
    """This test process attached to ``ray_cluster`` (ray.init), detached at the end."""
    import ray

    if ray.is_initialized():  # a scheduler under test attached and stayed; start clean
        ray.shutdown()
    ray.init(address=ray_cluster, include_dashboard=False, log_to_driver=False)
    try:
        yield ray_cluster
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def s3_access(s3_endpoint: str, object_store):
    """The trainer's S3Access to the test bucket."""
    from services.training_svc.trainer import S3Access
    from tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY

    return S3Access(
        endpoint=s3_endpoint,
        access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY,
        bucket=object_store.bucket,
    )
