"""The HTTP gateway (REST API + dashboard), started after the services it calls."""

from __future__ import annotations

import sys

from devstack.components import RUN_DIR, port_or_free, say
from devstack.processes import ChildProcess

DEFAULT_GATEWAY_PORT = 8080


class GatewayProcess:
    """``python -m gateway`` on GATEWAY_PORT, else 8080 when free, else any free port;
    publishes ``MTW_GATEWAY_URL``. Its access log goes to ``.run/gateway.log``."""

    name = "gateway"

    def __init__(self) -> None:
        self.child: ChildProcess | None = None
        self.url = ""

    async def start(self, env: dict[str, str]) -> None:
        port = int(env["GATEWAY_PORT"]) if env.get("GATEWAY_PORT") else port_or_free(DEFAULT_GATEWAY_PORT)
        child_env = dict(env, HTTP_PORT=str(port), HTTP_HOST=env.get("HTTP_HOST", "127.0.0.1"))
        self.child = ChildProcess("gateway", [sys.executable, "-m", "gateway"], child_env,
                                  log_file=RUN_DIR / "gateway.log")
        await self.child.start()
        await self.child.wait_for_port(port)
        self.url = f"http://127.0.0.1:{port}"
        env["MTW_GATEWAY_URL"] = self.url
        say(f"gateway: dashboard and REST API on {self.url} (log in {RUN_DIR / 'gateway.log'})")

    async def stop(self) -> None:
        if self.child is not None:
            await self.child.stop()
