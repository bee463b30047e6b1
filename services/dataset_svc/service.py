"""Assembles the dataset service: database, object store, app, gRPC server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc

from mtw.dataset.v1 import dataset_service_pb2, dataset_service_pb2_grpc
from services.common import db
from services.common.auth import KeyStore, migrate_iam
from services.common.objectstore import ObjectStore
from services.common.server import create_server
from services.dataset_svc.app import DatasetApp
from services.dataset_svc.servicer import DatasetServicer
from services.dataset_svc.settings import DatasetSettings
from services.dataset_svc.store import SCHEMA, DatasetStore

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = dataset_service_pb2.DESCRIPTOR.services_by_name["DatasetService"].full_name


@dataclass
class RunningDatasetService:
    server: grpc.aio.Server
    port: int
    app: DatasetApp
    pool: asyncpg.Pool
    objects: ObjectStore

    async def stop(self, grace: float = 5) -> None:
        await self.server.stop(grace)
        await self.pool.close()
        self.objects.close()


async def start(settings: DatasetSettings) -> RunningDatasetService:
    """Migrates, cleans up after crashed uploads, and serves on settings.grpc_port (0 = free)."""
    await db.ensure_database(settings.database_url)
    pool = await db.create_pool(settings.database_url, SCHEMA)
    await migrate_iam(pool)
    await db.migrate(pool, SCHEMA, MIGRATIONS)
    objects = ObjectStore.from_settings(settings)
    await objects.ensure_bucket()
    app = DatasetApp(settings, DatasetStore(pool), objects, pool)
    await app.collect_garbage()

    async def ready() -> bool:
        return await db.ping(pool) and await objects.ping()

    server, port = await create_server(
        settings,
        register=lambda s: dataset_service_pb2_grpc.add_DatasetServiceServicer_to_server(
            DatasetServicer(app), s
        ),
        service_names=[SERVICE_NAME],
        key_store=KeyStore(pool, internal_token=settings.internal_token),
        readiness=ready,
    )
    return RunningDatasetService(server, port, app, pool, objects)
