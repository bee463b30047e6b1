"""What the evaluation service asks of the dataset and training services, over gRPC
(DESIGN: never another service's tables). Each call carries metadata the app chooses:
the caller's own key, or the internal token on a project's behalf."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from mtw.dataset.v1 import dataset_service_pb2, dataset_service_pb2_grpc
from mtw.training.v1 import (
    base_model_pb2,
    training_service_pb2,
    training_service_pb2_grpc,
    tuning_job_pb2,
)
from mtw.training.v1 import tuning_job_event_pb2 as event_pb2
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
from services.common.task import Task
from services.eval_svc.domain.recommend import QualityFacts

Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class VersionFacts:
    name: str
    task: Task
    label_names: tuple[str, ...]
    split_rows: dict[str, int]
    split_uris: dict[str, str]
    quality: QualityFacts


_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument, grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists, grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied, grpc.StatusCode.NOT_FOUND: NotFound,
}


def passed_on(exc: grpc.aio.AioRpcError, service: str, what: str) -> MtwError:
    """Another service's error as ours, its message and field violations kept."""
    cls = _ERRORS.get(exc.code())
    if cls is None:
        return Unavailable(f"the {service} service did not answer for {what} ({exc.code().name}); try again",
                           reason=f"{service.upper()}_SERVICE_UNAVAILABLE")
    if cls is InvalidArgument:
        return InvalidArgument(exc.details() or "invalid", _violations(exc))
    return cls(exc.details() or what)


def _violations(exc: grpc.aio.AioRpcError) -> list[FieldViolation]:
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    try:
        status = rpc_status.from_call(exc)
    except Exception:  # noqa: BLE001 - no details is fine
        return []
    out = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out += [FieldViolation(v.field, v.description) for v in bad.field_violations]
    return out


class DatasetClient:
    def __init__(self, endpoint: str) -> None:
        self._channel = grpc.aio.insecure_channel(endpoint)
        self._stub = dataset_service_pb2_grpc.DatasetServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def get_version(self, name: str, metadata: Metadata) -> VersionFacts:
        try:
            v = await self._stub.GetDatasetVersion(dataset_service_pb2.GetDatasetVersionRequest(name=name),
                                                   metadata=metadata, timeout=30)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound.resource("dataset version", name) from None
            raise passed_on(exc, "dataset", f"'{name}'") from None
        report = v.quality_report
        return VersionFacts(
            name=v.name, task=Task(v.task), label_names=tuple(v.label_names),
            split_rows={s.name: s.row_count for s in v.splits}, split_uris={s.name: s.uri for s in v.splits},
            quality=QualityFacts(
                row_count=report.row_count, exact_duplicate_rows=report.exact_duplicate_rows,
                near_duplicate_rows=report.near_duplicate_rows,
                cross_split_duplicate_rows=report.cross_split_duplicate_rows,
                label_counts=tuple((c.label, c.count) for c in report.label_distribution),
                train_label_counts=tuple((c.label, int(c.split_counts.get("train", 0)))
                                         for c in report.label_distribution)))


class TrainingClient:
    def __init__(self, endpoint: str) -> None:
        self._channel = grpc.aio.insecure_channel(endpoint)
        self._stub = training_service_pb2_grpc.TuningServiceStub(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def get_job(self, name: str, metadata: Metadata) -> tuning_job_pb2.TuningJob:
        try:
            return await self._stub.GetTuningJob(training_service_pb2.GetTuningJobRequest(name=name),
                                                  metadata=metadata, timeout=30)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound.resource("tuning job", name) from None
            raise passed_on(exc, "training", f"'{name}'") from None

    async def get_base_model(self, name: str, metadata: Metadata) -> base_model_pb2.BaseModel:
        try:
            return await self._stub.GetBaseModel(training_service_pb2.GetBaseModelRequest(name=name),
                                                  metadata=metadata, timeout=30)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound.resource("base model", name) from None
            raise passed_on(exc, "training", f"'{name}'") from None

    async def job_events(self, name: str, metadata: Metadata, kinds: str) -> list[event_pb2.TuningJobEvent]:
        events: list[event_pb2.TuningJobEvent] = []
        token = ""
        try:
            while True:
                page = await self._stub.ListTuningJobEvents(training_service_pb2.ListTuningJobEventsRequest(
                    parent=name, page_size=5000, page_token=token, filter=kinds), metadata=metadata, timeout=30)
                events.extend(page.events)
                token = page.next_page_token
                if not token:
                    return events
        except grpc.aio.AioRpcError as exc:
            raise passed_on(exc, "training", f"the events of '{name}'") from None

    async def create_job(self, request: training_service_pb2.CreateTuningJobRequest,
                         metadata: Metadata) -> tuning_job_pb2.TuningJob:
        try:
            return await self._stub.CreateTuningJob(request, metadata=metadata, timeout=60)
        except grpc.aio.AioRpcError as exc:
            raise passed_on(exc, "training", "the new tuning job") from None
