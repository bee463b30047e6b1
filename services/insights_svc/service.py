"""Assembles the insights service: database, app, metrics, gRPC server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
from opentelemetry import metrics

from mtw.insights.v1 import insights_service_pb2, insights_service_pb2_grpc
from services.common import db
from services.common.auth import KeyStore, migrate_iam
from services.common.server import create_server, stop_server
from services.insights_svc.app import InsightsApp
from services.insights_svc.metrics import WizardMetrics
from services.insights_svc.records import ServiceRecords
from services.insights_svc.servicer import InsightsServicer
from services.insights_svc.settings import InsightsSettings
from services.insights_svc.store import SCHEMA, InsightsStore

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = insights_service_pb2.DESCRIPTOR.services_by_name["InsightsService"].full_name


@dataclass
class RunningInsightsService:
    server: grpc.aio.Server
    port: int
    app: InsightsApp
    pool: asyncpg.Pool

    async def stop(self, grace: float = 5) -> None:
        await stop_server(self.server, grace)
        await self.app.records.close()
        await self.pool.close()


async def start(settings: InsightsSettings,
                meter_provider: metrics.MeterProvider | None = None) -> RunningInsightsService:
    """Migrates and serves on settings.grpc_port (0 = a free port). Metrics go to
    ``meter_provider`` (default: the global one :func:`setup_telemetry` installs)."""
    await db.ensure_database(settings.database_url)
    pool = await db.create_pool(settings.database_url, SCHEMA)
    await migrate_iam(pool)
    await db.migrate(pool, SCHEMA, MIGRATIONS)
    key_store = KeyStore(pool, internal_token=settings.internal_token)
    records = ServiceRecords(settings.internal_token, settings.dataset_service_endpoint,
                             settings.training_service_endpoint, settings.registry_service_endpoint)
    app = InsightsApp(settings, InsightsStore(pool), key_store, WizardMetrics(meter_provider), records)

    async def ready() -> bool:
        return await db.ping(pool)

    server, port = await create_server(
        settings,
        register=lambda s: insights_service_pb2_grpc.add_InsightsServiceServicer_to_server(
            InsightsServicer(app), s),
        service_names=[SERVICE_NAME],
        key_store=key_store,
        readiness=ready,
    )
    return RunningInsightsService(server, port, app, pool)
