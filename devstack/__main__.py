"""``python -m devstack``: start everything, print how to use it, stop cleanly on Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys

from devstack.components import ROOT, RUN_DIR, Component, say
from devstack.devkey import dev_api_key, write_env_file
from devstack.gateway import GatewayProcess
from devstack.infra import S3, Postgres, base_env
from devstack.processes import ServiceProcess, discover_services
from devstack.ray_head import RayHead

ENV_FILE = RUN_DIR / "mtw.env"


def components() -> list[Component]:
    """Start order. Add new infrastructure (e.g. a Ray head) before the services."""
    infra: list[Component] = [Postgres(), S3(), RayHead()]
    return infra + [ServiceProcess(info) for info in discover_services()] + [GatewayProcess()]


def instructions(created: bool, key: str = "", dashboard: str = "") -> str:
    rel = ENV_FILE.relative_to(ROOT) if ENV_FILE.is_relative_to(ROOT) else ENV_FILE
    data = ROOT.parent / "shared" / "data" / "brown_genres.csv"
    sample = data if data.exists() else "path/to/your.csv"
    return "\n".join(
        [
            "",
            "MTW is up. "
            + ("A new development API key was written to " if created else "Reusing the key in ")
            + str(rel),
            *([f"Dashboard: {dashboard}  (project dev, API key {key})",
               f"REST API docs: {dashboard}/docs"] if dashboard else []),
            "In another shell:",
            f"    cd {ROOT}",
            f"    export $(cat {rel})",
            "    .venv/bin/mtw datasets create demo",
            f"    .venv/bin/mtw datasets upload demo {sample}",
            "Ctrl-C here stops everything.",
            "",
        ]
    )


async def main() -> int:
    env = base_env()
    started: list[Component] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    dev_key: dict[str, object] = {}

    async def start_all() -> None:
        parts = components()
        for part in parts:
            if isinstance(part, ServiceProcess):
                part.reserve_port(env)
        for component in parts:
            say(f"starting {component.name}")
            started.append(component)
            await component.start(env)
            if component.name == "s3":
                # The key goes in before services start so a first request works at once.
                dev_key["key"], dev_key["created"] = await dev_api_key(
                    env["DATABASE_URL"], ENV_FILE
                )
        write_env_file(ENV_FILE, str(dev_key["key"]), env)
        print(instructions(bool(dev_key["created"]), str(dev_key["key"]), env.get("MTW_GATEWAY_URL", "")),
              flush=True)

    code = 0
    starting = asyncio.create_task(start_all())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if starting.done() and starting.exception() is None:
            await watch(started, stop)
        elif starting.done():
            say(f"start-up failed: {starting.exception()}")
            code = 1
        else:
            starting.cancel()
            with contextlib.suppress(BaseException):
                await starting
    finally:
        stopping.cancel()
        say("stopping")
        for component in reversed(started):
            with contextlib.suppress(Exception):
                await component.stop()
        say("stopped")
    return code


async def watch(started: list[Component], stop: asyncio.Event) -> None:
    """Until Ctrl-C, or until a service dies (then everything stops: a half system misleads)."""
    while not stop.is_set():
        for component in started:
            child = getattr(component, "child", None)
            if child is not None and child.exited() is not None:
                say(f"{component.name} exited with code {child.exited()}; stopping everything")
                return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
