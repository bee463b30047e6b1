"""Assembles the registry service: database, object store, peers, app, predictor, gRPC server."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc

from mtw.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from services.common import db
from services.common.auth import KeyStore, migrate_iam
from services.common.objectstore import ObjectStore
from services.common.server import create_server, stop_server
from services.registry_svc.app import RegistryApp
from services.registry_svc.artifacts import ArtifactStore
from services.registry_svc.exports import ExportRunner
from services.registry_svc.peers import Peers
from services.registry_svc.predictor import Predictor
from services.registry_svc.servicer import RegistryServicer
from services.registry_svc.settings import RegistrySettings
from services.registry_svc.store import SCHEMA, RegistryStore

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = registry_service_pb2.DESCRIPTOR.services_by_name["RegistryService"].full_name


@dataclass
class RunningRegistryService:
    server: grpc.aio.Server
    port: int
    app: RegistryApp
    predictor: Predictor
    exports: ExportRunner
    pool: asyncpg.Pool
    objects: ObjectStore

    async def stop(self, grace: float = 5) -> None:
        await stop_server(self.server, grace)
        await self.exports.stop()
        await self.predictor.close()
        await self.app.peers.close()
        await self.pool.close()
        self.objects.close()


async def start(settings: RegistrySettings) -> RunningRegistryService:
    """Migrates, restarts exports a previous process left unfinished, and serves on
    settings.grpc_port (0 = a free port)."""
    await db.ensure_database(settings.database_url)
    pool = await db.create_pool(settings.database_url, SCHEMA)
    await migrate_iam(pool)
    await db.migrate(pool, SCHEMA, MIGRATIONS)
    objects = ObjectStore.from_settings(settings)
    await objects.ensure_bucket()
    peers = Peers(settings.training_service_endpoint, settings.dataset_service_endpoint,
                  settings.evaluation_service_endpoint)
    app = RegistryApp(settings, RegistryStore(pool), ArtifactStore(objects), peers)
    app.exports = ExportRunner(app, settings)
    await app.exports.resume_unfinished()
    predictor = Predictor(settings, app)

    async def ready() -> bool:
        return await db.ping(pool) and await objects.ping()

    server, port = await create_server(
        settings,
        register=lambda s: registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(
            RegistryServicer(app, predictor), s),
        service_names=[SERVICE_NAME],
        key_store=KeyStore(pool, internal_token=settings.internal_token),
        readiness=ready,
    )
    return RunningRegistryService(server, port, app, predictor, app.exports, pool, objects)
