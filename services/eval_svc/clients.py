"""What the evaluation service asks of the dataset and training services, over gRPC
(DESIGN: never another service's tables). Each call carries metadata the app chooses:
the caller's own key, or the internal token on a project's behalf."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from mtw.dataset.v1 import dataset_service_pb2, dataset_service_pb2_grpc
from mtw.registry.v1 import model_version_pb2, registry_service_pb2, registry_service_pb2_grpc
from mtw.training.v1 import (
    base_model_pb2,
    training_service_pb2,
    training_service_pb2_grpc,
    tuning_job_pb2,
)
from mtw.training.v1 import tuning_job_event_pb2 as event_pb2
from services.common.errors import FailedPrecondition
from services.common.peers import ask, passed_on
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


class DatasetClient:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = dataset_service_pb2_grpc.DatasetServiceStub(channel)

    async def get_version(self, name: str, metadata: Metadata) -> VersionFacts:
        v = await ask(self._stub.GetDatasetVersion(dataset_service_pb2.GetDatasetVersionRequest(name=name),
                                                   metadata=metadata, timeout=30),
                      service="dataset", kind="dataset version", name=name)
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
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._stub = training_service_pb2_grpc.TuningServiceStub(channel)

    async def get_job(self, name: str, metadata: Metadata) -> tuning_job_pb2.TuningJob:
        return await ask(self._stub.GetTuningJob(training_service_pb2.GetTuningJobRequest(name=name),
                                                 metadata=metadata, timeout=30),
                         service="training", kind="tuning job", name=name)

    async def get_base_model(self, name: str, metadata: Metadata) -> base_model_pb2.BaseModel:
        return await ask(self._stub.GetBaseModel(training_service_pb2.GetBaseModelRequest(name=name),
                                                 metadata=metadata, timeout=30),
                         service="training", kind="base model", name=name)

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


class RegistryClient:
    def __init__(self, channel: grpc.aio.Channel | None) -> None:
        """``channel``: to the model registry; None where this deployment has none."""
        self._stub = registry_service_pb2_grpc.RegistryServiceStub(channel) if channel else None

    async def get_version(self, name: str, metadata: Metadata, field: str) -> model_version_pb2.ModelVersion:
        """The live version ``name`` (an ``@alias`` resolved to its version)."""
        if self._stub is None:
            raise FailedPrecondition("evaluating a registered model version needs the model registry, which this "
                                     "deployment does not have; evaluate the tuning job instead",
                                     reason="REGISTRY_UNAVAILABLE")
        version = await ask(self._stub.GetModelVersion(registry_service_pb2.GetModelVersionRequest(name=name),
                                                       metadata=metadata, timeout=30),
                            service="registry", kind="model version", name=name, field=field)
        if version.state != model_version_pb2.MODEL_VERSION_STATE_ACTIVE or not version.artifacts.uri:
            raise FailedPrecondition(f"model version '{version.name}' was deleted; its weights are gone",
                                     reason="MODEL_VERSION_DELETED")
        return version

    @property
    def available(self) -> bool:
        return self._stub is not None

    async def link_evaluation(self, project: str, name: str, metadata: Metadata) -> list[str]:
        """Tells the registry that evaluation ``name`` has ended; it links it into the
        versions it measured and returns them."""
        assert self._stub is not None
        linked = await ask(self._stub.LinkEvaluation(
            registry_service_pb2.LinkEvaluationRequest(parent=f"projects/{project}", evaluation=name),
            metadata=metadata, timeout=30), service="registry", kind="evaluation", name=name)
        return list(linked.model_versions)
