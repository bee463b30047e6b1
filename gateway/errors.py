"""gRPC status → HTTP status (the one table) and the JSON error body.

The body follows Google's JSON error style and keeps the ``google.rpc`` details the
services attach (``BadRequest`` field violations, ``ErrorInfo``)::

    {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "…",
               "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                            "field_violations": [{"field": "…", "description": "…"}]}]}}
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2

from services.common.interceptors import ERROR_DOMAIN, error_status

# AIP-193 / grpc-gateway mapping.
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


@dataclass(frozen=True)
class Violation:
    field: str
    description: str


class GatewayError(Exception):
    """A problem the gateway finds itself (bad JSON, unknown parameter, no route), carried
    as a ``google.rpc.Status`` so it leaves in the same shape as a service's error."""

    def __init__(self, code: grpc.StatusCode, message: str, reason: str,
                 violations: list[Violation] | None = None) -> None:
        super().__init__(message)
        details = []
        if violations:
            details.append(_pack(error_details_pb2.BadRequest(field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=v.field, description=v.description)
                for v in violations])))
        details.append(_pack(error_details_pb2.ErrorInfo(reason=reason, domain=ERROR_DOMAIN)))
        self.status = status_pb2.Status(code=code.value[0], message=message, details=details)

    @classmethod
    def invalid(cls, message: str, violations: list[Violation] | None = None) -> GatewayError:
        return cls(grpc.StatusCode.INVALID_ARGUMENT, message, "INVALID_REQUEST", violations)

    @classmethod
    def not_found(cls, message: str, reason: str = "ROUTE_NOT_FOUND") -> GatewayError:
        return cls(grpc.StatusCode.NOT_FOUND, message, reason)

    @classmethod
    def unavailable(cls, message: str) -> GatewayError:
        return cls(grpc.StatusCode.UNAVAILABLE, message, "SERVICE_UNAVAILABLE")


def _pack(message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def status_of(exc: BaseException) -> status_pb2.Status:
    """The ``google.rpc.Status`` of a failed call (with its details) or gateway error."""
    if isinstance(exc, GatewayError):
        return exc.status
    if isinstance(exc, grpc.aio.AioRpcError):
        rich = error_status(exc)
        if rich is not None:
            return rich
        return status_pb2.Status(code=exc.code().value[0], message=exc.details() or "")
    return status_pb2.Status(code=code_pb2.INTERNAL, message="internal error")


def http_status(status: status_pb2.Status) -> int:
    return HTTP_STATUS.get(_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN), 500)


def error_body(status: status_pb2.Status) -> dict:
    code = _BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    return {
        "error": {
            "code": http_status(status),
            "status": code.name,
            "message": status.message,
            "details": [
                json_format.MessageToDict(d, preserving_proto_field_name=True)
                for d in status.details
            ],
        }
    }
