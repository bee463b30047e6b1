"""The funnel as the other services' own records show it, asked of them over gRPC with
the internal token on each project's behalf (never read from their tables).

Per project: datasets with at least one version (a version exists only once its data
passed validation), tuning jobs started and succeeded, model versions registered. A
service that is not configured or does not answer is reported as unavailable rather
than counted as zero.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc

from mtw.dataset.v1 import dataset_service_pb2, dataset_service_pb2_grpc
from mtw.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from mtw.training.v1 import training_service_pb2, training_service_pb2_grpc
from services.common.auth import service_metadata

log = logging.getLogger(__name__)

PAGE = 1000
CALL_TIMEOUT = 10.0
CONCURRENT_PROJECTS = 8
RECORDED_STEPS = ("DATASET_VALID", "JOB_STARTED", "JOB_SUCCEEDED", "MODEL_SAVED")


@dataclass
class RecordedFunnel:
    """Per step: (projects with at least one, resources in all)."""

    steps: dict[str, list[int]] = field(default_factory=lambda: {s: [0, 0] for s in RECORDED_STEPS})
    unavailable: set[str] = field(default_factory=set)
    projects: int = 0

    def add(self, step: str, count: int) -> None:
        self.steps[step][0] += 1 if count else 0
        self.steps[step][1] += count


async def _count_pages(fetch: Callable[[str], Awaitable], items: str, weight=lambda item: 1) -> int:
    total, token = 0, ""
    while True:
        page = await fetch(token)
        total += sum(weight(i) for i in getattr(page, items))
        token = page.next_page_token
        if not token:
            return total


class ServiceRecords:
    """Clients of the dataset, training and registry services (any may be unset: "")."""

    def __init__(self, internal_token: str, dataset: str, training: str, registry: str) -> None:
        self.internal_token = internal_token
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._dataset = self._stub("dataset", dataset, dataset_service_pb2_grpc.DatasetServiceStub)
        self._training = self._stub("training", training, training_service_pb2_grpc.TuningServiceStub)
        self._registry = self._stub("registry", registry, registry_service_pb2_grpc.RegistryServiceStub)

    def _stub(self, name: str, endpoint: str, cls):
        if not endpoint or not self.internal_token:
            return None
        self._channels[name] = grpc.aio.insecure_channel(endpoint)
        return cls(self._channels[name])

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    async def funnel(self, projects: list[str]) -> RecordedFunnel:
        result = RecordedFunnel(projects=len(projects))
        for name, stub in (("dataset", self._dataset), ("training", self._training), ("registry", self._registry)):
            if stub is None:
                result.unavailable.add(name)
        gate = asyncio.Semaphore(CONCURRENT_PROJECTS)

        async def one(project: str) -> None:
            async with gate:
                await self._project(project, result)

        await asyncio.gather(*(one(p) for p in projects))
        return result

    async def _ask(self, service: str, result: RecordedFunnel, call: Callable[[], Awaitable[int]]) -> int | None:
        if service in result.unavailable:
            return None
        try:
            return await call()
        except grpc.aio.AioRpcError as err:
            log.warning("%s did not answer the success report: %s %s", service, err.code().name, err.details())
            result.unavailable.add(service)
            return None

    async def _project(self, project: str, result: RecordedFunnel) -> None:
        md = service_metadata(self.internal_token, project, "insights")
        parent = f"projects/{project}"
        datasets = await self._ask("dataset", result, lambda: _count_pages(
            lambda t: self._dataset.ListDatasets(dataset_service_pb2.ListDatasetsRequest(
                parent=parent, page_size=PAGE, page_token=t), metadata=md, timeout=CALL_TIMEOUT),
            "datasets", lambda d: 1 if d.version_count else 0))

        def jobs(filter_: str):
            return lambda: _count_pages(lambda t: self._training.ListTuningJobs(
                training_service_pb2.ListTuningJobsRequest(parent=parent, page_size=PAGE, page_token=t,
                                                           filter=filter_), metadata=md, timeout=CALL_TIMEOUT),
                "tuning_jobs")

        started = await self._ask("training", result, jobs(""))
        succeeded = await self._ask("training", result, jobs("state=JOB_STATE_SUCCEEDED"))
        versions = await self._ask("registry", result, lambda: _count_pages(
            lambda t: self._registry.ListRegisteredModels(registry_service_pb2.ListRegisteredModelsRequest(
                parent=parent, page_size=PAGE, page_token=t), metadata=md, timeout=CALL_TIMEOUT),
            "registered_models", lambda m: m.version_count))
        for step, count in zip(RECORDED_STEPS, (datasets, started, succeeded, versions), strict=True):
            if count is not None:
                result.add(step, count)
