"""Server interceptors (call metrics, errors → rich statuses, API-key auth) and a
client-side helper.

Both interceptors wrap the *behaviour* of the RpcMethodHandler rather than acting in
``intercept_service`` itself: only inside the behaviour can an error become a status
via ``context.abort_with_status``, and only there does a contextvar reach the
servicer. All four RPC kinds are handled.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from services.common.auth import KeyStore, as_principal
from services.common.errors import InvalidArgument, MtwError

log = logging.getLogger(__name__)

ERROR_DOMAIN = "mtw.ai"
_DETAILS_KEY = "grpc-status-details-bin"
# Health and reflection must answer without a key (probes, grpcurl).
PUBLIC_SERVICE_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")

Behaviour = Callable[..., Any]
BehaviourWrapper = Callable[[Behaviour, bool, bool, str], Behaviour]


def _wrap_handler(handler: grpc.RpcMethodHandler | None, wrap: BehaviourWrapper, method: str):
    """Return a copy of ``handler`` whose behaviour is ``wrap(behaviour, ...)``, for any RPC kind."""
    if handler is None:
        return None
    if handler.unary_unary:
        kind, factory = (False, False), grpc.unary_unary_rpc_method_handler
        behaviour = handler.unary_unary
    elif handler.unary_stream:
        kind, factory = (False, True), grpc.unary_stream_rpc_method_handler
        behaviour = handler.unary_stream
    elif handler.stream_unary:
        kind, factory = (True, False), grpc.stream_unary_rpc_method_handler
        behaviour = handler.stream_unary
    elif handler.stream_stream:
        kind, factory = (True, True), grpc.stream_stream_rpc_method_handler
        behaviour = handler.stream_stream
    else:  # pragma: no cover
        return handler
    return factory(
        wrap(behaviour, kind[0], kind[1], method),
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def _guard(
    behaviour: Behaviour, response_streaming: bool, around: Callable[[Any], Any]
) -> Behaviour:
    """Build an async behaviour that runs the original inside ``around(context)`` (an async ctx manager)."""
    if response_streaming:

        async def stream_behaviour(request: Any, context: grpc.aio.ServicerContext):
            async with around(context):
                result = behaviour(request, context)
                if inspect.isasyncgen(result) or hasattr(result, "__aiter__"):
                    async for item in result:
                        yield item
                elif inspect.isawaitable(result):  # context.write() style servicer
                    await result
                else:  # a sync generator
                    for item in result:
                        yield item

        return stream_behaviour

    async def unary_behaviour(request: Any, context: grpc.aio.ServicerContext):
        async with around(context):
            result = behaviour(request, context)
            if inspect.isawaitable(result):
                result = await result
            return result

    return unary_behaviour


# --------------------------------------------------------------------------- errors


def status_for(exc: MtwError) -> status_pb2.Status:
    """The ``google.rpc.Status`` (with BadRequest/ErrorInfo details) for a domain error."""
    code = getattr(code_pb2, exc.code, code_pb2.UNKNOWN)
    details: list[any_pb2.Any] = []
    if isinstance(exc, InvalidArgument) and exc.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in exc.violations
            ]
        )
        details.append(_pack(bad))
    details.append(
        _pack(
            error_details_pb2.ErrorInfo(
                reason=exc.reason, domain=ERROR_DOMAIN, metadata=exc.metadata
            )
        )
    )
    return status_pb2.Status(code=code, message=exc.message, details=details)


def _pack(msg) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


class _ErrorScope:
    """Async context manager converting exceptions raised by a servicer into statuses."""

    def __init__(self, context: grpc.aio.ServicerContext, method: str) -> None:
        self.context = context
        self.method = method

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False  # CancelledError & co. pass through
        if isinstance(exc, grpc.aio.AbortError):
            return False  # the servicer (or an inner interceptor) already set the status
        if isinstance(exc, MtwError):
            if exc.code in ("INTERNAL", "UNKNOWN", "DATA_LOSS"):
                log.error("%s failed: %s", self.method, exc.message, exc_info=exc)
            else:
                log.info("%s → %s %s: %s", self.method, exc.code, exc.reason, exc.message)
            status = status_for(exc)
        else:
            log.error("unexpected error in %s", self.method, exc_info=exc)
            status = status_pb2.Status(
                code=code_pb2.INTERNAL,
                message="internal error",
                details=[
                    _pack(error_details_pb2.ErrorInfo(reason="INTERNAL", domain=ERROR_DOMAIN))
                ],
            )
        # Raises AbortError, which grpc turns into the status we just set.
        await self.context.abort_with_status(rpc_status.to_status(status))
        return False  # pragma: no cover


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """MtwError → status with google.rpc details; anything else → INTERNAL, logged with traceback."""

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)

        def wrap(behaviour, _req_stream, resp_stream, method):
            return _guard(behaviour, resp_stream, lambda ctx: _ErrorScope(ctx, method))

        return _wrap_handler(handler, wrap, handler_call_details.method)


# --------------------------------------------------------------------------- metrics


class _CallMetrics:
    """The instruments, made on first use from the process's MeterProvider (set up by
    ``setup_telemetry``; without one they are no-ops)."""

    def __init__(self) -> None:
        from opentelemetry import metrics

        meter = metrics.get_meter("mtw.rpc")
        # OpenTelemetry's RPC semantic conventions: rpc.server.duration in milliseconds.
        self.duration = meter.create_histogram("rpc.server.duration", unit="ms",
                                               description="Duration of inbound gRPC calls")
        self.calls = meter.create_counter("rpc.server.calls", unit="{call}",
                                          description="Inbound gRPC calls by method and status code")


class _MetricsScope:
    def __init__(self, instruments: _CallMetrics, context: grpc.aio.ServicerContext, method: str) -> None:
        self.instruments = instruments
        self.context = context
        self.service, _, self.method = method.lstrip("/").rpartition("/")
        self.start = 0.0

    async def __aenter__(self) -> None:
        self.start = time.perf_counter()

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        code = "OK"
        if isinstance(exc, grpc.aio.AbortError):  # the error interceptor set the status
            status = self.context.code()
            code = status.name if isinstance(status, grpc.StatusCode) else "UNKNOWN"
        elif exc is not None:
            code = "CANCELLED" if isinstance(exc, asyncio.CancelledError) else "UNKNOWN"
        attributes = {"rpc.system": "grpc", "rpc.service": self.service, "rpc.method": self.method,
                      "rpc.grpc.status_code": code}
        self.instruments.duration.record((time.perf_counter() - self.start) * 1000, attributes)
        self.instruments.calls.add(1, attributes)
        return False


class MetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts every call and records its duration, by service, method and status code.
    Outermost, so the time and the status include auth and error handling."""

    def __init__(self) -> None:
        self._instruments: _CallMetrics | None = None

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if self._instruments is None:
            self._instruments = _CallMetrics()
        instruments = self._instruments

        def wrap(behaviour, _req_stream, resp_stream, method):
            return _guard(behaviour, resp_stream, lambda ctx: _MetricsScope(instruments, ctx, method))

        return _wrap_handler(handler, wrap, handler_call_details.method)


# --------------------------------------------------------------------------- auth


def bearer_token(metadata) -> str | None:
    """The token of an ``authorization: Bearer …`` metadata entry, if any."""
    for key, value in metadata or ():
        if key.lower() == "authorization":
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            scheme, _, token = value.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else ""
    return None


class _AuthScope:
    def __init__(self, key_store: KeyStore, context: grpc.aio.ServicerContext) -> None:
        self.key_store = key_store
        self.context = context
        self._scope = None

    async def __aenter__(self) -> None:
        metadata = self.context.invocation_metadata()
        principal = await self.key_store.authenticate_call(bearer_token(metadata), metadata)
        await self.key_store.authorize(principal)
        self._scope = as_principal(principal)
        self._scope.__enter__()

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        if self._scope is not None:
            self._scope.__exit__(exc_type, exc, tb)
        return False


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates every call but health/reflection, checks the caller's project is in
    the wizard's rollout (:meth:`KeyStore.authorize`) and sets the current principal.

    Must sit *inside* :class:`ErrorInterceptor` so its Unauthenticated becomes a status.
    """

    def __init__(self, key_store: KeyStore, public_prefixes=PUBLIC_SERVICE_PREFIXES) -> None:
        self.key_store = key_store
        self.public_prefixes = tuple(public_prefixes)

    async def intercept_service(self, continuation, handler_call_details):
        handler = await continuation(handler_call_details)
        if handler_call_details.method.startswith(self.public_prefixes):
            return handler

        def wrap(behaviour, _req_stream, resp_stream, _method):
            return _guard(behaviour, resp_stream, lambda ctx: _AuthScope(self.key_store, ctx))

        return _wrap_handler(handler, wrap, handler_call_details.method)


# --------------------------------------------------------------------------- client side


def error_status(rpc_error: grpc.RpcError) -> status_pb2.Status | None:
    """The rich ``google.rpc.Status`` carried by a failed call (sync or aio), if any."""
    try:
        metadata = rpc_error.trailing_metadata() or ()
    except Exception:  # noqa: BLE001 - not a call-like error
        return None
    for key, value in metadata:
        if key == _DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    return None


def error_details(
    rpc_error: grpc.RpcError,
) -> tuple[error_details_pb2.BadRequest | None, error_details_pb2.ErrorInfo | None]:
    """(BadRequest, ErrorInfo) unpacked from a failed call's status details (None when absent)."""
    status = error_status(rpc_error)
    bad_request = error_info = None
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            error_info = error_details_pb2.ErrorInfo()
            detail.Unpack(error_info)
    return bad_request, error_info


__all__ = [
    "ERROR_DOMAIN",
    "AuthInterceptor",
    "ErrorInterceptor",
    "MetricsInterceptor",
    "bearer_token",
    "error_details",
    "error_status",
    "status_for",
]
