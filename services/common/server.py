"""gRPC server bootstrap: interceptors, health, reflection, graceful shutdown.

``create_server`` returns a started ``grpc.aio`` server and its real port (tests use
port 0). Health reports SERVING for "" and each service only while ``readiness()``
answers True; ``serve_forever`` flips it to NOT_SERVING and stops gracefully on
SIGTERM/SIGINT. ``run_service`` is the whole start-up a service's ``__main__`` needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from services.common import db
from services.common.auth import KeyStore, migrate_iam
from services.common.interceptors import AuthInterceptor, ErrorInterceptor, MetricsInterceptor
from services.common.objectstore import ObjectStore
from services.common.settings import ServiceSettings

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
HEALTH_SERVICE = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass
class _ServerState:
    health: HealthServicer
    service_names: tuple[str, ...]
    readiness_task: asyncio.Task | None = None


def server_health(server: grpc.aio.Server) -> HealthServicer:
    """The health servicer create_server attached to ``server``."""
    return server._mtw_state.health  # type: ignore[attr-defined]


async def _set_all(state: _ServerState, status) -> None:
    for name in ("", *state.service_names):
        await state.health.set(name, status)


async def _watch_readiness(
    state: _ServerState, readiness: Callable[[], Awaitable[bool]], ready: bool, interval: float
) -> None:
    # Poll fast until ready, then every `interval`, flipping health whenever the answer changes.
    while True:
        await asyncio.sleep(interval if ready else min(0.5, interval))
        try:
            now = bool(await asyncio.wait_for(readiness(), timeout=5))
        except Exception:  # noqa: BLE001 - a failing probe means "not ready"
            now = False
        if now != ready:
            log.info("readiness changed", extra={"ready": now})
            await _set_all(state, _SERVING if now else _NOT_SERVING)
            ready = now


async def create_server(
    settings: ServiceSettings,
    *,
    register: Callable[[grpc.aio.Server], None],
    service_names: Sequence[str],
    key_store: KeyStore,
    readiness: Callable[[], Awaitable[bool]] | None = None,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    readiness_interval: float = 5.0,
) -> tuple[grpc.aio.Server, int]:
    """Build, bind and start a server; returns ``(server, port)``.

    ``register(server)`` adds the service's servicers; ``service_names`` are their full
    names (for health and reflection). Extra ``interceptors`` run inside auth.
    """
    # Metrics outermost (every call, whatever its end), then error handling so auth
    # failures become statuses too; the tracing interceptor (if telemetry is set up) is
    # put in front of all by OpenTelemetry.
    server = grpc.aio.server(
        interceptors=[MetricsInterceptor(), ErrorInterceptor(), AuthInterceptor(key_store), *interceptors],
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ],
    )
    register(server)
    state = _ServerState(HealthServicer(), tuple(service_names))
    health_pb2_grpc.add_HealthServicer_to_server(state.health, server)
    reflection.enable_server_reflection(
        (*service_names, HEALTH_SERVICE, reflection.SERVICE_NAME), server
    )
    server._mtw_state = state  # type: ignore[attr-defined]

    address = f"{settings.grpc_host}:{settings.grpc_port}"
    port = server.add_insecure_port(address)
    if port == 0:
        raise RuntimeError(f"could not bind gRPC server to {address}")
    await server.start()

    ready = True
    if readiness is not None:
        try:
            ready = bool(await asyncio.wait_for(readiness(), timeout=5))
        except Exception:  # noqa: BLE001 - a failing probe means "not ready"
            ready = False
    await _set_all(state, _SERVING if ready else _NOT_SERVING)
    if readiness is not None:
        state.readiness_task = asyncio.create_task(
            _watch_readiness(state, readiness, ready, readiness_interval)
        )
    log.info(
        "gRPC server listening",
        extra={"address": f"{settings.grpc_host}:{port}", "services": list(service_names)},
    )
    return server, port


async def stop_server(server: grpc.aio.Server, grace: float | None = 10) -> None:
    """Health → NOT_SERVING, stop the readiness poller, then ``server.stop(grace)``."""
    state: _ServerState | None = getattr(server, "_mtw_state", None)
    if state is not None:
        if state.readiness_task is not None:
            state.readiness_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await state.readiness_task
        await state.health.enter_graceful_shutdown()
    await server.stop(grace)


async def serve_forever(server: grpc.aio.Server, grace: float = 10) -> None:
    """Serve until SIGTERM/SIGINT (or termination), then shut down gracefully."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not main thread / platform
            loop.add_signal_handler(sig, stop.set)
    terminated = asyncio.create_task(server.wait_for_termination())
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({terminated, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            log.info("shutting down", extra={"grace_seconds": grace})
    finally:  # also when the serving task itself is cancelled
        stopping.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        # Only after the stop: cancelling wait_for_termination() cancels the server's own
        # shutdown future, and server.stop() then fails with CancelledError.
        await stop_server(server, grace)
        terminated.cancel()


@dataclass
class ServiceContext:
    """What a service's register function gets: settings and shared clients."""

    settings: ServiceSettings
    pool: asyncpg.Pool
    key_store: KeyStore
    object_store: ObjectStore | None


async def run_service(
    settings: ServiceSettings,
    *,
    schema: str,
    migrations_dir: Path | None,
    service_names: Sequence[str],
    register: Callable[[grpc.aio.Server, ServiceContext], None],
    use_object_store: bool = True,
    grace: float = 10,
) -> None:
    """Everything a ``__main__`` does: logs/tracing, DB + migrations, bucket, serve until SIGTERM.

    Example::

        settings = DatasetSettings(service_name="dataset")
        asyncio.run(run_service(settings, schema="dataset", migrations_dir=HERE / "migrations",
                                service_names=[SERVICE_NAME], register=register))
    """
    from services.common.telemetry import setup_telemetry, shutdown_telemetry

    setup_telemetry(settings.service_name, settings)
    with contextlib.suppress(Exception):  # no CREATE DATABASE right is fine if it exists
        await db.ensure_database(settings.database_url)
    pool = await db.create_pool(settings.database_url, schema)
    object_store = None
    try:
        await migrate_iam(pool)
        if migrations_dir is not None:
            await db.migrate(pool, schema, migrations_dir)
        if use_object_store:
            object_store = ObjectStore.from_settings(settings)
            await object_store.ensure_bucket()
        ctx = ServiceContext(settings, pool, KeyStore(pool, internal_token=settings.internal_token), object_store)

        async def readiness() -> bool:
            if not await db.ping(pool):
                return False
            return await object_store.ping() if object_store is not None else True

        server, _port = await create_server(
            settings,
            register=lambda s: register(s, ctx),
            service_names=service_names,
            key_store=ctx.key_store,
            readiness=readiness,
        )
        await serve_forever(server, grace)
    finally:
        await pool.close()
        if object_store is not None:
            object_store.close()
        shutdown_telemetry()
