import grpc
from google.rpc import code_pb2, error_details_pb2
from grpc_status import rpc_status

from services.common import errors
from services.common.interceptors import ERROR_DOMAIN, error_details, status_for


class FakeRpcError(grpc.RpcError):
    def __init__(self, status):
        s = rpc_status.to_status(status)
        self._md = s.trailing_metadata

    def trailing_metadata(self):
        return self._md


def test_invalid_argument_status():
    exc = errors.InvalidArgument(
        "bad",
        [errors.FieldViolation("name", "expected x"), errors.FieldViolation("page_size", "neg")],
        reason="BAD_NAME",
        metadata={"k": "v"},
    )
    st = status_for(exc)
    assert st.code == code_pb2.INVALID_ARGUMENT and st.message == "bad"
    bad, info = error_details(FakeRpcError(st))
    assert [(v.field, v.description) for v in bad.field_violations] == [
        ("name", "expected x"),
        ("page_size", "neg"),
    ]
    assert (
        info.reason == "BAD_NAME"
        and info.domain == ERROR_DOMAIN
        and dict(info.metadata) == {"k": "v"}
    )


def test_not_found_resource():
    exc = errors.NotFound.resource("dataset", "projects/p/datasets/x")
    assert exc.message == "dataset 'projects/p/datasets/x' was not found"
    assert exc.reason == "DATASET_NOT_FOUND" and exc.code == "NOT_FOUND"
    st = status_for(exc)
    assert st.code == code_pb2.NOT_FOUND
    bad, info = error_details(FakeRpcError(st))
    assert bad is None and info.reason == "DATASET_NOT_FOUND"
    assert errors.NotFound.resource("dataset version", "n").reason == "DATASET_VERSION_NOT_FOUND"
    assert errors.AlreadyExists.resource("tuningJob", "n").reason == "TUNING_JOB_ALREADY_EXISTS"


def test_every_class_maps_to_a_grpc_code():
    for cls in [
        errors.NotFound,
        errors.AlreadyExists,
        errors.FailedPrecondition,
        errors.PermissionDenied,
        errors.ResourceExhausted,
        errors.Unauthenticated,
        errors.Aborted,
        errors.Unavailable,
        errors.Internal,
        errors.Cancelled,
        errors.InvalidArgument,
        errors.DeadlineExceeded,
    ]:
        exc = cls("m", reason="R")
        assert exc.reason == "R" and exc.message == "m" and exc.metadata == {}
        st = status_for(exc)
        assert st.code == getattr(grpc.StatusCode, cls.code).value[0]
        assert cls("m").reason == cls.code


def test_no_grpc_in_errors_module():
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(errors))
    names = [
        a.name
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in n.names
    ]
    mods = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not any("grpc" in (m or "") for m in names + mods)


def test_error_details_without_status():
    class Plain(grpc.RpcError):
        def trailing_metadata(self):
            return ()

    assert error_details(Plain()) == (None, None)
    assert isinstance(error_details_pb2.BadRequest(), error_details_pb2.BadRequest)
