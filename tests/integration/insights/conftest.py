"""A real insights service on a loopback port over the run's PostgreSQL, with its
metrics in an in-memory OpenTelemetry reader, an admin key and two projects' keys."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest_asyncio
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from mtw.insights.v1 import insights_service_pb2_grpc
from services.common.auth import KeyStore
from services.insights_svc import service
from services.insights_svc.settings import InsightsSettings

PRIMARY_EXPERIMENT = f"preset-{uuid.uuid4().hex[:6]}"


@dataclass
class InsightsUnderTest:
    running: service.RunningInsightsService
    channel: grpc.aio.Channel
    stub: insights_service_pb2_grpc.InsightsServiceStub
    reader: InMemoryMetricReader
    keys: dict[str, str]  # project (or "admin") -> API key
    projects: tuple[str, str]

    def auth(self, who: str) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.keys[who]}"),)


def insights_settings(service_settings, **overrides) -> InsightsSettings:
    values = {"service_name": "insights-svc", "insights_primary_experiment": PRIMARY_EXPERIMENT}
    return service_settings(InsightsSettings, **{**values, **overrides})


@pytest_asyncio.fixture(scope="module")
async def insights(service_settings) -> AsyncIterator[InsightsUnderTest]:
    reader = InMemoryMetricReader()
    running = await service.start(insights_settings(service_settings), MeterProvider(metric_readers=[reader]))
    keys = KeyStore(running.pool)
    tag = uuid.uuid4().hex[:6]
    projects = (f"ins-a-{tag}", f"ins-b-{tag}")
    api_keys = {}
    for project in projects:
        await keys.create_project(project)
        api_keys[project] = await keys.create_api_key(project)
    await keys.create_project(f"ops-{tag}")
    api_keys["admin"] = await keys.create_api_key(f"ops-{tag}", admin=True)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    try:
        yield InsightsUnderTest(running, channel, insights_service_pb2_grpc.InsightsServiceStub(channel),
                                reader, api_keys, projects)
    finally:
        await running.pool.execute("DELETE FROM iam.rollout")
        await channel.close()
        await running.stop()
