"""create_server end to end: auth, rich errors for all four RPC kinds, health, reflection, tracing."""

import asyncio
import json
import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.common.auth import current_principal
from services.common.errors import FieldViolation, InvalidArgument, NotFound
from services.common.interceptors import error_details
from services.common.server import create_server, stop_server
from services.common.telemetry import setup_telemetry

SERVICE = "mtw.test.v1.EchoService"
_exporter = InMemorySpanExporter()


def _reply(req: bytes) -> bytes:
    if req == b"invalid":
        raise InvalidArgument(
            "bad input", [FieldViolation("payload", "must not be 'invalid'")], reason="BAD_PAYLOAD"
        )
    if req == b"missing":
        raise NotFound.resource("dataset", "projects/p/datasets/x")
    if req == b"boom":
        raise RuntimeError("secret internal detail")
    return f"{current_principal().project}:{req.decode()}".encode()


async def unary_unary(req, ctx):
    return _reply(req)


async def unary_stream(req, ctx):
    yield b"first"
    yield _reply(req)


async def stream_unary(reqs, ctx):
    out = []
    async for r in reqs:
        out.append(_reply(r))
    return b",".join(out)


async def stream_stream(reqs, ctx):
    async for r in reqs:
        yield _reply(r)


def register(server: grpc.aio.Server) -> None:
    ident = {"request_deserializer": None, "response_serializer": None}
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "UU": grpc.unary_unary_rpc_method_handler(unary_unary, **ident),
                    "US": grpc.unary_stream_rpc_method_handler(unary_stream, **ident),
                    "SU": grpc.stream_unary_rpc_method_handler(stream_unary, **ident),
                    "SS": grpc.stream_stream_rpc_method_handler(stream_stream, **ident),
                },
            ),
        )
    )


@pytest.fixture(scope="module")
async def server(service_settings, key_store):
    # Telemetry first: the instrumentors patch grpc.aio.server and channels.
    setup_telemetry(
        "test-echo", service_settings(), extra_processors=[SimpleSpanProcessor(_exporter)]
    )
    ready = {"value": True}

    async def readiness():
        return ready["value"]

    srv, port = await create_server(
        service_settings(),
        register=register,
        service_names=[SERVICE],
        key_store=key_store,
        readiness=readiness,
        readiness_interval=0.2,
    )
    yield srv, port, ready
    await stop_server(srv, grace=1)


@pytest.fixture
async def channel(server):
    _, port, _ = server
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as ch:
        yield ch


@pytest.fixture(scope="module")
async def key(api_key):
    return await api_key("echo-project")


def _calls(ch):
    return {
        k: getattr(
            ch,
            {
                "UU": "unary_unary",
                "US": "unary_stream",
                "SU": "stream_unary",
                "SS": "stream_stream",
            }[k],
        )(f"/{SERVICE}/{k}")
        for k in ("UU", "US", "SU", "SS")
    }


async def _invoke(ch, kind, payload, metadata):
    c = _calls(ch)[kind]
    if kind == "UU":
        return [await c(payload, metadata=metadata)]
    if kind == "US":
        return [r async for r in c(payload, metadata=metadata)]

    async def gen():
        yield payload

    if kind == "SU":
        return [await c(gen(), metadata=metadata)]
    return [r async for r in c(gen(), metadata=metadata)]


@pytest.mark.parametrize("kind", ["UU", "US", "SU", "SS"])
async def test_ok_and_principal(channel, key, bearer, kind):
    out = await _invoke(channel, kind, b"hi", bearer(key))
    assert out[-1] == b"echo-project:hi"


@pytest.mark.parametrize("kind", ["UU", "US", "SU", "SS"])
async def test_unauthenticated(channel, key, kind):
    for md, reason in [
        ((), "API_KEY_MISSING"),
        ((("authorization", "Bearer nope"),), "API_KEY_MALFORMED"),
        ((("authorization", "Bearer " + key[:-3] + "abc"),), "API_KEY_INVALID"),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await _invoke(channel, kind, b"hi", md)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert error_details(err.value)[1].reason == reason


@pytest.mark.parametrize("kind", ["UU", "US", "SU", "SS"])
async def test_invalid_argument_details(channel, key, bearer, kind):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _invoke(channel, kind, b"invalid", bearer(key))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "bad input"
    bad, info = error_details(err.value)
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("payload", "must not be 'invalid'")
    ]
    assert info.reason == "BAD_PAYLOAD" and info.domain == "mtw.ai"


async def test_not_found_and_internal(channel, key, bearer, caplog):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _invoke(channel, "UU", b"missing", bearer(key))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_details(err.value)[1].reason == "DATASET_NOT_FOUND"
    with caplog.at_level(logging.ERROR), pytest.raises(grpc.aio.AioRpcError) as err:
        await _invoke(channel, "SS", b"boom", bearer(key))
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in err.value.details()
    assert any(
        r.exc_info and "secret internal detail" in str(r.exc_info[1]) for r in caplog.records
    )


async def test_sync_client_error_details(server, key):
    # The SDK may use sync channels: error_details works on grpc.RpcError too. The sync
    # call runs in a thread because this loop also runs the server.
    _, port, _ = server

    def call():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            try:
                ch.unary_unary(f"/{SERVICE}/UU")(
                    b"invalid", metadata=(("authorization", f"Bearer {key}"),)
                )
            except grpc.RpcError as exc:
                return exc
        raise AssertionError("expected an error")

    err = await asyncio.to_thread(call)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_details(err)[0].field_violations[0].field == "payload"


async def test_health_and_reflection_need_no_key(server, channel):
    _, _, ready = server
    health = health_pb2_grpc.HealthStub(channel)
    for name in ("", SERVICE):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING

    refl = reflection_pb2_grpc.ServerReflectionStub(channel)

    async def one():
        yield reflection_pb2.ServerReflectionRequest(list_services="")

    names = set()
    async for resp in refl.ServerReflectionInfo(one()):
        names |= {s.name for s in resp.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"} <= names

    # Readiness failing flips health to NOT_SERVING (polled).
    ready["value"] = False
    try:
        for _ in range(60):
            resp = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE))
            if resp.status == health_pb2.HealthCheckResponse.NOT_SERVING:
                break
            await asyncio.sleep(0.1)
        assert resp.status == health_pb2.HealthCheckResponse.NOT_SERVING
    finally:
        ready["value"] = True


async def test_client_and_server_spans_share_trace(channel, key, bearer):
    _exporter.clear()
    await _invoke(channel, "UU", b"traced", bearer(key))
    for _ in range(50):
        spans = [s for s in _exporter.get_finished_spans() if s.name.endswith("/UU")]
        if len(spans) >= 2:
            break
        await asyncio.sleep(0.05)
    kinds = {s.kind.name: s for s in spans}
    assert {"CLIENT", "SERVER"} <= set(kinds)
    assert kinds["CLIENT"].context.trace_id == kinds["SERVER"].context.trace_id
    assert kinds["SERVER"].parent.span_id == kinds["CLIENT"].context.span_id


def test_json_log_has_trace_id():
    import io

    from opentelemetry import trace

    from services.common.telemetry import configure_logging

    buf = io.StringIO()
    handler = configure_logging("svc-x", "INFO", stream=buf)
    try:
        with trace.get_tracer("t").start_as_current_span("s") as span:
            logging.getLogger("mtw.test").info("hello", extra={"dataset": "d"})
        rec = json.loads(buf.getvalue().strip().splitlines()[-1])
        assert rec["message"] == "hello" and rec["level"] == "INFO" and rec["logger"] == "mtw.test"
        assert rec["service"] == "svc-x" and rec["dataset"] == "d" and "time" in rec
        assert rec["trace_id"] == format(span.get_span_context().trace_id, "032x")
        assert rec["span_id"] == format(span.get_span_context().span_id, "016x")
    finally:
        logging.getLogger().removeHandler(handler)
