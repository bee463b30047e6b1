"""run_service: the whole start-up of a service's __main__, then a clean stop."""

import asyncio
import socket

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.server import run_service


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_run_service_serves_then_stops(service_settings, tmp_path):
    (tmp_path / "001_init.sql").write_text("CREATE TABLE widgets (id text PRIMARY KEY);")
    port = _free_port()
    settings = service_settings(grpc_port=port, service_name="widget-svc")
    seen = {}

    def register(server, ctx):
        seen["ctx"] = ctx

    task = asyncio.create_task(
        run_service(
            settings,
            schema="widget",
            migrations_dir=tmp_path,
            service_names=["mtw.widget.v1.WidgetService"],
            register=register,
            grace=0.5,
        )
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
            stub = health_pb2_grpc.HealthStub(ch)
            for _ in range(100):
                try:
                    resp = await stub.Check(
                        health_pb2.HealthCheckRequest(service="mtw.widget.v1.WidgetService"),
                        timeout=1,
                    )
                    if resp.status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.1)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        ctx = seen["ctx"]
        assert ctx.object_store is not None and ctx.object_store.bucket == settings.s3_bucket
        assert await ctx.pool.fetchval("SELECT count(*) FROM widgets") == 0  # migrated, on path
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass
    # The port is free again: the server really stopped.
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
