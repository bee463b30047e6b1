"""Assembles the training service: database, object store, catalog, scheduler, app, gRPC server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc

from mtw.training.v1 import training_service_pb2, training_service_pb2_grpc
from services.common import db
from services.common.auth import KeyStore, migrate_iam
from services.common.objectstore import ObjectStore
from services.common.server import create_server
from services.training_svc import reconcile
from services.training_svc.app import TrainingApp
from services.training_svc.domain.catalog import Catalog
from services.training_svc.events import EventHub
from services.training_svc.scheduler import Scheduler
from services.training_svc.servicer import TuningServicer
from services.training_svc.settings import TrainingSettings
from services.training_svc.store import SCHEMA, TrainingStore

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = training_service_pb2.DESCRIPTOR.services_by_name["TuningService"].full_name


@dataclass
class RunningTrainingService:
    server: grpc.aio.Server
    port: int
    app: TrainingApp
    pool: asyncpg.Pool
    objects: ObjectStore
    reconciled: dict[str, str]  # what the start-up reconcile did, job name → action

    async def stop(self, grace: float = 5, *, close_scheduler: bool = True) -> None:
        """Stops serving. Runs on the cluster go on (a restarted service adopts them)."""
        await self.server.stop(grace)
        await self.app.stop_loop()
        await self.app.hub.stop()
        await self.app.peers.close()
        if close_scheduler:
            await self.app.scheduler.close()
        await self.pool.close()
        self.objects.close()


def ray_scheduler(settings: TrainingSettings) -> Scheduler:
    from services.training_svc.ray_scheduler import RayScheduler

    return RayScheduler(settings)


async def start(settings: TrainingSettings, scheduler: Scheduler | None = None) -> RunningTrainingService:
    """Migrates, reconciles non-final jobs with the cluster, and serves on settings.grpc_port (0 = free)."""
    await db.ensure_database(settings.database_url)
    pool = await db.create_pool(settings.database_url, SCHEMA)
    await migrate_iam(pool)
    await db.migrate(pool, SCHEMA, MIGRATIONS)
    objects = ObjectStore.from_settings(settings)
    await objects.ensure_bucket()
    catalog = Catalog(settings.model_dir_paths, settings.model_cache_path)
    await asyncio.to_thread(catalog.list)  # builds tiny-gpt2 once, off the loop
    if scheduler is None:
        scheduler = await asyncio.to_thread(ray_scheduler, settings)
    hub = EventHub(settings.database_url)
    await hub.start()
    app = TrainingApp(settings, TrainingStore(pool), objects, catalog, scheduler, hub)
    reconciled = await reconcile.reconcile(app)
    app.start_loop()

    async def ready() -> bool:
        return await db.ping(pool) and await objects.ping()

    server, port = await create_server(
        settings,
        register=lambda s: training_service_pb2_grpc.add_TuningServiceServicer_to_server(TuningServicer(app), s),
        service_names=[SERVICE_NAME],
        key_store=KeyStore(pool, internal_token=settings.internal_token),
        readiness=ready,
    )
    return RunningTrainingService(server, port, app, pool, objects, reconciled)
