"""The one error hierarchy of MTW.

Domain code raises these; the error interceptor (``interceptors.py``) turns them into
gRPC statuses with ``google.rpc`` details. This module deliberately imports nothing
from grpc so domain packages stay free of transport concerns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One bad request field (becomes ``google.rpc.BadRequest.FieldViolation``)."""

    field: str
    description: str


class MtwError(Exception):
    """Base of every error a service means to send to its caller.

    ``code`` is the gRPC status code *name* (e.g. ``"NOT_FOUND"``); ``reason`` is the
    machine-readable ``google.rpc.ErrorInfo.reason`` (UPPER_SNAKE_CASE).
    """

    code: str = "UNKNOWN"
    default_reason: str = "UNKNOWN"

    def __init__(
        self,
        message: str,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = {str(k): str(v) for k, v in (metadata or {}).items()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class InvalidArgument(MtwError):
    """The request itself is wrong; ``violations`` say which fields and why."""

    code = "INVALID_ARGUMENT"
    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        violations: Sequence[FieldViolation] = (),
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations: tuple[FieldViolation, ...] = tuple(violations)

    @classmethod
    def field(cls, field: str, description: str, reason: str | None = None) -> InvalidArgument:
        """Shortcut for the common case of a single bad field."""
        return cls(f"{field}: {description}", [FieldViolation(field, description)], reason=reason)


class NotFound(MtwError):
    code = "NOT_FOUND"
    default_reason = "NOT_FOUND"

    @classmethod
    def resource(cls, kind: str, name: str, reason: str | None = None) -> NotFound:
        """``dataset 'projects/p/datasets/x' was not found`` with reason ``DATASET_NOT_FOUND``."""
        default = f"{_upper_snake(kind)}_NOT_FOUND"
        return cls(
            f"{kind} '{name}' was not found",
            reason=reason or default,
            metadata={"resource_kind": kind, "resource_name": name},
        )


class AlreadyExists(MtwError):
    code = "ALREADY_EXISTS"
    default_reason = "ALREADY_EXISTS"

    @classmethod
    def resource(cls, kind: str, name: str, reason: str | None = None) -> AlreadyExists:
        """``dataset 'projects/p/datasets/x' already exists`` with reason ``DATASET_ALREADY_EXISTS``."""
        return cls(
            f"{kind} '{name}' already exists",
            reason=reason or f"{_upper_snake(kind)}_ALREADY_EXISTS",
            metadata={"resource_kind": kind, "resource_name": name},
        )


class FailedPrecondition(MtwError):
    code = "FAILED_PRECONDITION"
    default_reason = "FAILED_PRECONDITION"


class PermissionDenied(MtwError):
    code = "PERMISSION_DENIED"
    default_reason = "PERMISSION_DENIED"


class ResourceExhausted(MtwError):
    code = "RESOURCE_EXHAUSTED"
    default_reason = "RESOURCE_EXHAUSTED"


class Unauthenticated(MtwError):
    code = "UNAUTHENTICATED"
    default_reason = "UNAUTHENTICATED"


class Aborted(MtwError):
    code = "ABORTED"
    default_reason = "ABORTED"


class Unavailable(MtwError):
    code = "UNAVAILABLE"
    default_reason = "UNAVAILABLE"


class Internal(MtwError):
    code = "INTERNAL"
    default_reason = "INTERNAL"


class Cancelled(MtwError):
    code = "CANCELLED"
    default_reason = "CANCELLED"


class DeadlineExceeded(MtwError):
    code = "DEADLINE_EXCEEDED"
    default_reason = "DEADLINE_EXCEEDED"


def _upper_snake(kind: str) -> str:
    """``"dataset version"`` / ``"datasetVersion"`` → ``"DATASET_VERSION"``."""
    out: list[str] = []
    for i, ch in enumerate(kind):
        if ch.isupper() and i and kind[i - 1].islower():
            out.append("_")
        out.append("_" if ch in " -." else ch.upper())
    return "".join(out)
