"""Child processes: the services (discovered from services/*_svc/__main__.py) and helpers."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.components import ROOT, port_or_free, say

# Well-known ports (the SDK's defaults); a new service gets the next free one.
DEFAULT_PORTS = {"dataset": 50051, "training": 50052, "evaluation": 50053, "registry": 50054, "insights": 50055}
# Package short names that differ from the SDK's service names.
ALIASES = {"eval": "evaluation"}


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Linux only: if devstack is killed hard, the child gets SIGTERM instead of living on.
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class ChildProcess:
    """One child in its own session (Ctrl-C reaches devstack only, which stops it in order)."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], log_file: Path | None = None
    ) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_file = log_file  # None: share devstack's terminal
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        out = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            out = open(self.log_file, "ab")  # noqa: ASYNC230, SIM115 - tiny; the child keeps it
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            env=self.env,
            cwd=ROOT,
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        if out is not None:
            out.close()  # the child has its own copy

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.returncode

    async def wait_for_port(self, port: int, timeout: float = 30) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self.exited() is not None:
                raise RuntimeError(f"{self.name} exited with code {self.exited()}")
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(
                    f"{self.name} did not listen on port {port} within {timeout:.0f}s"
                )
            await asyncio.sleep(0.2)

    async def stop(self, grace: float = 15) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), grace)
        except TimeoutError:
            say(f"{self.name} did not stop within {grace:.0f}s; killing it")
            self.proc.kill()
            await self.proc.wait()


@dataclass
class ServiceInfo:
    package: str  # services.dataset_svc
    name: str  # dataset (the SDK's name)
    port_env: str  # DATASET_SVC_PORT


def discover_services() -> list[ServiceInfo]:
    """Every ``services/<x>_svc`` package with a ``__main__.py``, well-known ones first."""
    found = []
    for main in sorted((ROOT / "services").glob("*_svc/__main__.py")):
        pkg = main.parent.name
        short = pkg.removesuffix("_svc")
        found.append(
            ServiceInfo(f"services.{pkg}", ALIASES.get(short, short), f"{pkg.upper()}_PORT")
        )
    order = list(DEFAULT_PORTS)
    return sorted(
        found, key=lambda s: (order.index(s.name) if s.name in order else len(order), s.name)
    )


class ServiceProcess:
    """``python -m services.<x>_svc`` with GRPC_PORT set; started means health says SERVING."""

    def __init__(self, info: ServiceInfo, port: int | None = None) -> None:
        self.info = info
        self.name = info.name
        self._port = port
        self.port = 0
        self.child: ChildProcess | None = None

    def reserve_port(self, env: dict[str, str]) -> None:
        """Pick this service's port and publish its endpoint before any service starts,
        so services that call each other (in either direction) all know where."""
        if self._port:
            self.port = self._port
        elif env.get(self.info.port_env):
            self.port = int(env[self.info.port_env])
        else:
            preferred = DEFAULT_PORTS.get(self.name) or 50055
            self.port = port_or_free(preferred)
            if self.port != preferred:
                say(f"{self.name}: port {preferred} is busy, using {self.port}")
        env[f"MTW_{self.name.upper()}_ENDPOINT"] = f"127.0.0.1:{self.port}"

    async def start(self, env: dict[str, str]) -> None:
        if not self.port:
            self.reserve_port(env)
        child_env = dict(env, GRPC_PORT=str(self.port), GRPC_HOST=env.get("GRPC_HOST", "127.0.0.1"))
        self.child = ChildProcess(self.name, [sys.executable, "-m", self.info.package], child_env)
        await self.child.start()
        await self.wait_serving()
        say(f"{self.name}: SERVING on 127.0.0.1:{self.port}")

    async def wait_serving(self, timeout: float = 90) -> None:
        assert self.child is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with grpc.aio.insecure_channel(f"127.0.0.1:{self.port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                if self.child.exited() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with code {self.child.exited()} while starting"
                    )
                with contextlib.suppress(grpc.aio.AioRpcError):
                    resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        return
                if loop.time() > deadline:
                    raise TimeoutError(f"{self.name} was not SERVING within {timeout:.0f}s")
                await asyncio.sleep(0.3)

    async def stop(self) -> None:
        if self.child is not None:
            await self.child.stop()


def running_children(components) -> list[ChildProcess]:
    out = []
    for c in components:
        child = getattr(c, "child", None) or getattr(c, "_child", None)
        if isinstance(child, ChildProcess):
            out.append(child)
    return out


__all__ = ["ChildProcess", "ServiceProcess", "discover_services"]
