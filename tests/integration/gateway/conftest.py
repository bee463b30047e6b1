"""The gateway in front of a real dataset service and a real training service (in-memory
scheduler: jobs queue and run until cancelled), all on loopback ports in this process,
with an HTTP client for it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest_asyncio

from gateway import server as gateway_server
from gateway.settings import GatewaySettings
from services.common.telemetry import setup_telemetry
from services.training_svc.scheduler import InMemoryScheduler
from tests.integration.training.service_harness import (
    Stack,
    brown_csv,
    start_stack,
    stop_stack,
    text_csv,
)

CHUNK = 64 * 1024  # small upload messages, so a modest file spans many


@dataclass
class Gateway:
    stack: Stack
    running: gateway_server.RunningGateway
    settings: GatewaySettings

    @property
    def url(self) -> str:
        return self.running.url

    def client(self, project: str | None = "alpha", **kwargs) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {self.stack.keys[project]}"} if project else {}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=60, **kwargs)


@pytest_asyncio.fixture(scope="package")
async def gateway(service_settings) -> AsyncIterator[Gateway]:
    # Instrument gRPC before the services' servers exist, so their spans join the trace.
    setup_telemetry("gateway-tests", configure_logs=False)
    stack = await start_stack(service_settings, InMemoryScheduler())
    stack.versions["classification"] = await stack.upload(brown_csv(), "brown.csv")
    stack.versions["causal_lm"] = await stack.upload(text_csv(), "prose.csv")
    settings = GatewaySettings(http_port=0, upload_chunk_bytes=CHUNK, sse_keepalive_seconds=1)
    running = await gateway_server.start(settings, {
        "dataset": f"127.0.0.1:{stack.dataset.port}",
        "training": f"127.0.0.1:{stack.training.port}",
    })
    yield Gateway(stack, running, settings)
    await running.stop()
    await stop_stack(stack)


@pytest_asyncio.fixture(scope="package")
async def alpha(gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway.client("alpha") as client:
        yield client
