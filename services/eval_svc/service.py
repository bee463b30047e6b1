"""Assembles the evaluation service: database, clients of the other services, Ray
scheduler, app, gRPC server."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc

from mtw.evaluation.v1 import evaluation_service_pb2, evaluation_service_pb2_grpc
from services.common import db
from services.common.auth import KeyStore, migrate_iam
from services.common.objectstore import ObjectStore
from services.common.server import create_server
from services.eval_svc.app import EvaluationApp
from services.eval_svc.events import EventHub
from services.eval_svc.servicer import EvaluationServicer
from services.eval_svc.settings import EvaluationSettings
from services.eval_svc.store import SCHEMA, EvaluationStore

MIGRATIONS = Path(__file__).parent / "migrations"
SERVICE_NAME = evaluation_service_pb2.DESCRIPTOR.services_by_name["EvaluationService"].full_name


@dataclass
class RunningEvaluationService:
    server: grpc.aio.Server
    port: int
    app: EvaluationApp
    pool: asyncpg.Pool
    objects: ObjectStore

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


def s3_access(settings: EvaluationSettings):
    """How runs on Ray reach the object store (picklable)."""
    from services.common.worker_storage import S3Access

    return S3Access(endpoint=settings.s3_endpoint, access_key=settings.s3_access_key,
                    secret_key=settings.s3_secret_key, bucket=settings.s3_bucket, secure=settings.s3_secure,
                    region=settings.s3_region)


def ray_scheduler(settings: EvaluationSettings):
    from services.eval_svc.scheduler import RayEvaluationScheduler

    return RayEvaluationScheduler(settings.ray_address, settings.ray_namespace, s3_access(settings),
                                  settings.ray_local_num_cpus)


async def start(settings: EvaluationSettings, scheduler=None) -> RunningEvaluationService:
    """Migrates, adopts the runs still on the cluster, and serves on settings.grpc_port (0 = free)."""
    await db.ensure_database(settings.database_url)
    pool = await db.create_pool(settings.database_url, SCHEMA)
    await migrate_iam(pool)
    await db.migrate(pool, SCHEMA, MIGRATIONS)
    objects = ObjectStore.from_settings(settings)
    await objects.ensure_bucket()
    if scheduler is None:
        scheduler = await asyncio.to_thread(ray_scheduler, settings)
    hub = EventHub(settings.database_url)
    await hub.start()
    app = EvaluationApp(settings, EvaluationStore(pool), scheduler, hub)
    await app.reconcile()
    app.start_loop()

    async def ready() -> bool:
        return await db.ping(pool) and await objects.ping()

    server, port = await create_server(
        settings,
        register=lambda s: evaluation_service_pb2_grpc.add_EvaluationServiceServicer_to_server(
            EvaluationServicer(app), s),
        service_names=[SERVICE_NAME],
        key_store=KeyStore(pool, internal_token=settings.internal_token),
        readiness=ready,
    )
    return RunningEvaluationService(server, port, app, pool, objects)
