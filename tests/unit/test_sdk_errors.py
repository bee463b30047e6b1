"""grpc.RpcError → mtw.errors, from a fake call carrying google.rpc details."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2

from mtw import errors


class FakeRpcError(grpc.RpcError):
    """What grpc raises: an RpcError that is also a Call (code/details/trailing_metadata)."""

    def __init__(self, status: status_pb2.Status | None, code=None, details=None, md=None):
        self._status = status
        self._code = code or grpc.StatusCode.UNKNOWN
        self._details = details or ""
        self._md = md

    def code(self):
        return self._code

    def details(self):
        return self._details

    def trailing_metadata(self):
        if self._md is not None:
            return self._md
        if self._status is None:
            return ()
        return (("grpc-status-details-bin", self._status.SerializeToString()),)


def rich_error(code, grpc_code, message, *details) -> FakeRpcError:
    status = status_pb2.Status(code=code, message=message)
    for d in details:
        status.details.add().Pack(d)
    return FakeRpcError(status, grpc_code, message)


def test_invalid_argument_carries_violations_and_total():
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="line:12:label", description="empty"),
            error_details_pb2.BadRequest.FieldViolation(field="line:40", description="bad JSON"),
        ]
    )
    info = error_details_pb2.ErrorInfo(
        reason="INVALID_ROWS", domain="mtw.ai", metadata={"total_errors": "250"}
    )
    err = errors.from_rpc_error(
        rich_error(
            code_pb2.INVALID_ARGUMENT,
            grpc.StatusCode.INVALID_ARGUMENT,
            "the file has 250 invalid rows",
            bad,
            info,
        )
    )
    assert isinstance(err, errors.InvalidArgument)
    assert isinstance(err, errors.MtwApiError)
    assert err.violations == [("line:12:label", "empty"), ("line:40", "bad JSON")]
    assert err.violations[0].field == "line:12:label"
    assert err.total_errors == 250
    assert err.reason == "INVALID_ROWS" and err.domain == "mtw.ai"
    assert err.code is grpc.StatusCode.INVALID_ARGUMENT
    assert str(err) == "Invalid argument: the file has 250 invalid rows (250 problems)"


def test_total_errors_defaults_to_violation_count():
    bad = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field="name", description="x")
        ]
    )
    err = errors.from_rpc_error(
        rich_error(code_pb2.INVALID_ARGUMENT, grpc.StatusCode.INVALID_ARGUMENT, "bad name", bad)
    )
    assert err.total_errors == 1
    assert str(err) == "Invalid argument: bad name"


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExists),
        (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied),
        (grpc.StatusCode.UNAUTHENTICATED, errors.Unauthenticated),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhausted),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
        (grpc.StatusCode.ABORTED, errors.Aborted),
        (grpc.StatusCode.DATA_LOSS, errors.MtwApiError),
    ],
)
def test_each_code_maps_to_its_class(code, cls):
    err = errors.from_rpc_error(FakeRpcError(None, code, "something happened"))
    assert type(err) is cls
    assert err.code is code
    assert "something happened" in str(err)


def test_error_info_on_not_found():
    info = error_details_pb2.ErrorInfo(
        reason="DATASET_NOT_FOUND", metadata={"resource_name": "projects/p/datasets/x"}
    )
    err = errors.from_rpc_error(
        rich_error(code_pb2.NOT_FOUND, grpc.StatusCode.NOT_FOUND, "dataset 'x' was not found", info)
    )
    assert isinstance(err, errors.NotFound)
    assert err.reason == "DATASET_NOT_FOUND"
    assert err.metadata["resource_name"] == "projects/p/datasets/x"
    assert str(err) == "Not found: dataset 'x' was not found"
    assert err.status is not None and err.rpc_error is not None


def test_details_kept_when_status_and_call_disagree():
    """from_call raises ValueError on a message mismatch; the details still count."""
    bad = error_details_pb2.BadRequest(
        field_violations=[error_details_pb2.BadRequest.FieldViolation(field="f", description="d")]
    )
    status = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="from status")
    status.details.add().Pack(bad)
    err = errors.from_rpc_error(
        FakeRpcError(status, grpc.StatusCode.INVALID_ARGUMENT, "different text")
    )
    assert isinstance(err, errors.InvalidArgument)
    assert err.violations == [("f", "d")]


def test_plain_rpc_error_without_call_methods():
    err = errors.from_rpc_error(grpc.RpcError())
    assert type(err) is errors.MtwApiError
    assert str(err) == "Request failed: unknown"
