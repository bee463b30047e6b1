"""A local Ray head for the training service: RAY_ADDRESS when set, else `ray start --head`.

The head listens on loopback only (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0) without an auth
token (RAY_AUTH_MODE=disabled), in its own process group, and is stopped by that group's
id — never `ray stop`, which would kill every Ray on the machine. It stays warm between
jobs, so a job's workers start in seconds. The dashboard (loopback only) is on because
Ray Train's placement-group cleaner uses its state API to free a cancelled run's CPUs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from devstack.components import RUN_DIR, port_or_free, say
from devstack.processes import ChildProcess
from services.common.ray_cluster import NODE_ENV


class RayHead:
    name = "ray"
    preferred_port = 6379

    def __init__(self) -> None:
        self.child: ChildProcess | None = None

    async def start(self, env: dict[str, str]) -> None:
        env.update({k: env.get(k, v) for k, v in NODE_ENV.items()})
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        if env.get("RAY_ADDRESS"):
            say(f"Ray: using RAY_ADDRESS {env['RAY_ADDRESS']}")
            return
        port = port_or_free(self.preferred_port)
        temp_dir = Path("/tmp") / f"ray-mtw-{os.getpid()}"  # Ray's socket paths must stay short
        ray_bin = str(Path(sys.executable).with_name("ray"))
        cpus = env.get("RAY_NUM_CPUS") or str(max(2, (os.cpu_count() or 2) - 1))
        self.child = ChildProcess(
            "ray",
            [ray_bin, "start", "--head", "--block", f"--num-cpus={cpus}", "--include-dashboard=true",
             "--dashboard-host=127.0.0.1", f"--dashboard-port={port_or_free(8265)}", "--node-ip-address=127.0.0.1", f"--port={port}", f"--ray-client-server-port={port_or_free(10001)}",
             f"--dashboard-agent-listen-port={port_or_free(52365)}", f"--temp-dir={temp_dir}",
             "--disable-usage-stats"],
            env,
            log_file=RUN_DIR / "ray.log",
        )
        await self.child.start()
        await self.child.wait_for_port(port, timeout=90)
        env["RAY_ADDRESS"] = f"127.0.0.1:{port}"
        say(f"Ray: local head on 127.0.0.1:{port} with {cpus} CPUs (logs in {temp_dir})")

    async def stop(self) -> None:
        proc = self.child.proc if self.child is not None else None
        if proc is None or proc.returncode is not None:
            return
        # The head's raylet, GCS and workers share its process group: stop them all, by id.
        for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
                break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
