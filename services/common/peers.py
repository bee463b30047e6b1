"""Calling another MTW service: its errors become ours, in one way for every service.

A service that asks a peer (DESIGN: never its tables) passes the peer's answer on to its
own caller: a missing resource is NOT_FOUND naming it, a bad name is INVALID_ARGUMENT on
the caller's field, the peer's own refusals keep their code, message, reason and field
violations, and a peer that does not answer is UNAVAILABLE with "try again".
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc

from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    MtwError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unavailable,
)
from services.common.interceptors import error_details

T = TypeVar("T")

_PASSED_ON: dict[grpc.StatusCode, type[MtwError]] = {
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
}


class Channels:
    """One channel per peer endpoint for a whole service process, closed together (a
    channel multiplexes every call, so clients of one peer share it)."""

    def __init__(self) -> None:
        self._open: dict[str, grpc.aio.Channel] = {}

    def get(self, endpoint: str) -> grpc.aio.Channel | None:
        """The channel to ``endpoint``; None for an empty endpoint (a peer not deployed)."""
        if not endpoint:
            return None
        if endpoint not in self._open:
            self._open[endpoint] = grpc.aio.insecure_channel(endpoint)
        return self._open[endpoint]

    async def close(self) -> None:
        for channel in self._open.values():
            await channel.close()
        self._open.clear()


def bearer(api_key: str) -> tuple[tuple[str, str], ...]:
    """Call metadata carrying the caller's own API key."""
    return (("authorization", f"Bearer {api_key}"),)


async def ask(call: Awaitable[T], *, service: str, kind: str, name: str, field: str = "") -> T:
    """The answer of a peer's call about resource ``name`` (a ``kind``, e.g. "tuning job"),
    or its error as ours. ``field``: the request field the caller named it in."""
    try:
        return await call
    except grpc.aio.AioRpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            raise NotFound.resource(kind, name) from None
        if exc.code() == grpc.StatusCode.INVALID_ARGUMENT and field:
            raise InvalidArgument.field(field, f"'{name}' is not a valid {kind} name: {exc.details()}") from None
        raise passed_on(exc, service, f"{kind} '{name}'") from None


def passed_on(exc: grpc.aio.AioRpcError, service: str, what: str) -> MtwError:
    """A peer's error as ours (``what`` the call was about, for an unanswered call)."""
    bad_request, info = error_details(exc)
    violations = [FieldViolation(v.field, v.description) for v in bad_request.field_violations] if bad_request else []
    reason, metadata = (info.reason or None, dict(info.metadata)) if info else (None, {})
    message = exc.details() or what
    if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(message, violations, reason=reason, metadata=metadata)
    cls = _PASSED_ON.get(exc.code())
    if cls is not None:
        return cls(message, reason=reason, metadata=metadata)
    return Unavailable(f"the {service} service did not answer for {what} ({exc.code().name}); try again",
                       reason=f"{service.upper()}_SERVICE_UNAVAILABLE")
