"""Start and stop the gateway in the running event loop (``__main__`` and the tests)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass

import uvicorn
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from gateway.app import create_app
from gateway.settings import GatewaySettings
from services.common.telemetry import setup_telemetry


@dataclass
class RunningGateway:
    server: uvicorn.Server
    task: asyncio.Task
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, timeout=10)


def build_app(settings: GatewaySettings, endpoints: Mapping[str, str] | None = None):
    """The app with tracing: each HTTP request starts a span; the gRPC client
    instrumentation (set up first, before any channel exists) carries it on."""
    setup_telemetry(settings.service_name, settings, configure_logs=False)
    app = create_app(settings, endpoints)
    # One span per request (no per-message "http send/receive" spans: they cost more than they tell).
    FastAPIInstrumentor.instrument_app(app, excluded_urls="healthz,static/.*", exclude_spans=["receive", "send"])
    return app


async def start(settings: GatewaySettings, endpoints: Mapping[str, str] | None = None) -> RunningGateway:
    """Serve on settings.http_host:http_port (0 = a free port) until stop()."""
    config = uvicorn.Config(build_app(settings, endpoints), host=settings.http_host,
                            port=settings.http_port, log_config=None, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises why it could not start
            raise RuntimeError("the gateway stopped while starting")
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return RunningGateway(server, task, port)
