"""Errors the SDK raises: one class per gRPC status code that a caller may handle.

Every failed call raises a :class:`MtwApiError` subclass built from the
``grpc.RpcError`` by :func:`from_rpc_error`, which also unpacks the ``google.rpc``
details the services attach (``BadRequest`` field violations, ``ErrorInfo`` reason and
metadata). ``str(error)`` is a readable one-line message.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import grpc
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status


class FieldViolation(NamedTuple):
    """One problem with a request field, e.g. ``("line:12:label", "empty label")``."""

    field: str
    description: str


class MtwError(Exception):
    """Base of every error the SDK raises on its own or on behalf of a service."""


class ConfigurationError(MtwError, ValueError):
    """The client is missing something it needs (an API key, a valid endpoint…)."""


class MtwApiError(MtwError):
    """A call to an MTW service failed.

    Attributes: ``code`` (``grpc.StatusCode``), ``message`` (the server's text),
    ``reason`` and ``domain`` and ``metadata`` (from ``google.rpc.ErrorInfo``, empty when
    absent), ``status`` (the full ``google.rpc.Status`` or None) and ``rpc_error``.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN
    title = "Request failed"

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        domain: str = "",
        metadata: dict[str, str] | None = None,
        status: status_pb2.Status | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.status = status
        self.rpc_error: Any = None  # the grpc.RpcError this was built from

    def __str__(self) -> str:
        text = self.message or self.code.name.lower().replace("_", " ")
        return f"{self.title}: {text}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class InvalidArgument(MtwApiError):
    """The request (or an uploaded file) is invalid.

    ``violations`` lists ``(field, description)`` pairs — for an upload the field is
    ``line:N[:column]`` — and ``total_errors`` counts every problem found, which may be
    more than the violations the server sent.
    """

    code = grpc.StatusCode.INVALID_ARGUMENT
    title = "Invalid argument"

    def __init__(
        self, message: str, *, violations: list[FieldViolation] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.violations: list[FieldViolation] = list(violations or [])
        try:
            self.total_errors = int(self.metadata.get("total_errors", ""))
        except ValueError:
            self.total_errors = len(self.violations)

    def __str__(self) -> str:
        text = super().__str__()
        if self.total_errors > 1:
            text += f" ({self.total_errors} problems)"
        return text


class NotFound(MtwApiError):
    code = grpc.StatusCode.NOT_FOUND
    title = "Not found"


class AlreadyExists(MtwApiError):
    code = grpc.StatusCode.ALREADY_EXISTS
    title = "Already exists"


class PermissionDenied(MtwApiError):
    code = grpc.StatusCode.PERMISSION_DENIED
    title = "Permission denied"


class Unauthenticated(MtwApiError):
    code = grpc.StatusCode.UNAUTHENTICATED
    title = "Not authenticated"


class ResourceExhausted(MtwApiError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    title = "Limit reached"


class FailedPrecondition(MtwApiError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    title = "Failed precondition"


class Aborted(MtwApiError):
    """A conditional request (etag) lost a race; read again and retry."""

    code = grpc.StatusCode.ABORTED
    title = "Aborted"


class Unavailable(MtwApiError):
    code = grpc.StatusCode.UNAVAILABLE
    title = "Service unavailable"


class DeadlineExceeded(MtwApiError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED
    title = "Deadline exceeded"


class Internal(MtwApiError):
    code = grpc.StatusCode.INTERNAL
    title = "Internal server error"


class Cancelled(MtwApiError):
    code = grpc.StatusCode.CANCELLED
    title = "Cancelled"


_BY_CODE: dict[grpc.StatusCode, type[MtwApiError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        AlreadyExists,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        FailedPrecondition,
        Aborted,
        Unavailable,
        DeadlineExceeded,
        Internal,
        Cancelled,
    )
}


def from_rpc_error(error: grpc.RpcError) -> MtwApiError:
    """Turn a failed call (sync or ``grpc.aio``) into the matching :class:`MtwApiError`."""
    code = _safe(error, "code") or grpc.StatusCode.UNKNOWN
    message = _safe(error, "details") or ""
    status = _rich_status(error)
    violations: list[FieldViolation] = []
    reason = domain = ""
    metadata: dict[str, str] = {}
    if status is not None:
        message = status.message or message
        for any_detail in status.details:
            if any_detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                any_detail.Unpack(bad)
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
            elif any_detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                any_detail.Unpack(info)
                reason, domain = info.reason, info.domain
                metadata.update(info.metadata)
    cls = _BY_CODE.get(code, MtwApiError)
    kwargs: dict[str, Any] = {
        "code": code,
        "reason": reason,
        "domain": domain,
        "metadata": metadata,
        "status": status,
    }
    if cls is InvalidArgument:
        err: MtwApiError = InvalidArgument(message, violations=violations, **kwargs)
    else:
        err = cls(message, **kwargs)
    err.rpc_error = error
    return err


def _rich_status(error: Any) -> status_pb2.Status | None:
    try:
        return rpc_status.from_call(error)
    except (ValueError, AttributeError, TypeError):
        # Code or message mismatch between the status proto and the call: still use
        # the details the server sent, rather than dropping them.
        for key, value in _safe(error, "trailing_metadata") or ():
            if key == "grpc-status-details-bin":
                try:
                    return status_pb2.Status.FromString(value)
                except Exception:  # noqa: BLE001 - a malformed blob is just ignored
                    return None
        return None


def _safe(error: Any, method: str) -> Any:
    try:
        return getattr(error, method)()
    except Exception:  # noqa: BLE001 - RpcError objects that aren't calls lack these
        return None


__all__ = [
    "Aborted",
    "AlreadyExists",
    "Cancelled",
    "ConfigurationError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "FieldViolation",
    "Internal",
    "InvalidArgument",
    "MtwApiError",
    "MtwError",
    "NotFound",
    "PermissionDenied",
    "ResourceExhausted",
    "Unauthenticated",
    "Unavailable",
    "from_rpc_error",
]
