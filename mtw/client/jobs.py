"""``client.jobs``: wizard step 2 — base models, estimates and tuning jobs.

Methods return the service's protobuf messages (``TuningJob``, ``BaseModel``,
``EstimateTuningJobResponse``, ``TuningJobEvent``). A job may be given by id (expanded
with the client's project), by full name, or as a returned ``TuningJob``; a dataset
version as ``DATASET@N`` or a full name; a base model by id or ``baseModels/{id}``.
Hyperparameters are keyword arguments or a mapping with the proto's field names
(``epochs=3, learning_rate=2e-4, lora={"rank": 16}``).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from google.protobuf import json_format

from mtw.client import names
from mtw.client.pagination import aiterate_pages, iterate_pages
from mtw.client.transport import USE_DEFAULT, AsyncTransport, SyncTransport, afollow, follow
from mtw.training.v1 import (
    base_model_pb2,
    hyperparameters_pb2,
    tuning_job_event_pb2,
    tuning_job_pb2,
)
from mtw.training.v1 import training_service_pb2 as svc
from mtw.training.v1.training_service_pb2_grpc import TuningServiceStub

SERVICE = "training"

TuningJob = tuning_job_pb2.TuningJob
BaseModel = base_model_pb2.BaseModel
Hyperparameters = hyperparameters_pb2.Hyperparameters
TuningJobEvent = tuning_job_event_pb2.TuningJobEvent
Estimate = svc.EstimateTuningJobResponse
TERMINAL = frozenset({4, 5, 7})  # SUCCEEDED, FAILED, CANCELLED


def job_name(ref: Any, project: str) -> str:
    """``j`` → ``projects/{project}/tuningJobs/j``; full names pass through."""
    text = names._as_str(ref)
    return text if text.startswith("projects/") else f"projects/{project}/tuningJobs/{text}"


def base_model_name(ref: Any) -> str:
    text = names._as_str(ref)
    return text if text.startswith("baseModels/") else f"baseModels/{text}"


def hyperparameters(values: Mapping[str, Any] | Hyperparameters | None = None, **kwargs: Any) -> Hyperparameters:
    """A Hyperparameters message from a mapping/kwargs of proto field names (enums by name,
    e.g. ``lr_scheduler="COSINE"``)."""
    if isinstance(values, Hyperparameters) and not kwargs:
        return values
    merged: dict[str, Any] = {**(dict(values) if values else {}), **kwargs}
    merged = {k: v for k, v in merged.items() if v is not None}
    for key, prefix in (("lr_scheduler", "LEARNING_RATE_SCHEDULER_"), ("precision", "PRECISION_")):
        if isinstance(merged.get(key), str) and not merged[key].startswith(prefix):
            merged[key] = prefix + merged[key].upper()
    return json_format.ParseDict(merged, Hyperparameters())


def _enum(value: Any, prefix: str) -> Any:
    if isinstance(value, str) and value and not value.upper().startswith(prefix):
        return prefix + value.upper()
    return value.upper() if isinstance(value, str) else value


class _Requests:
    """Builds the requests both clients send (one place for names, specs and defaults)."""

    def __init__(self, project: str) -> None:
        self.project = project

    def parent(self, project: str | None) -> str:
        return names.project_name(project or self.project)

    def job(self, ref: Any) -> str:
        return job_name(ref, self.project)

    def spec(
        self, base_model: Any, dataset_version: Any, *, task: Any = None, method: Any = None, preset: Any = None,
        hyperparameters: Mapping[str, Any] | Hyperparameters | None = None, display_name: str = "",
        description: str = "", licence_acknowledged: bool = False, labels: Mapping[str, str] | None = None,
        continued_from: Any = None, continued_from_model_version: str = "", branched_from: Any = None,
        source_evaluation: str = "", register_to_model: str = "", skip_final_evaluation: bool = False,
    ) -> TuningJob:
        job = TuningJob(
            base_model=base_model_name(base_model),
            dataset_version=names.version_name(dataset_version, self.project),
            hyperparameters=globals()["hyperparameters"](hyperparameters),
            display_name=display_name, description=description, licence_acknowledged=licence_acknowledged,
            labels=dict(labels or {}), skip_final_evaluation=skip_final_evaluation,
            register_to_model=_model_name(register_to_model, self.project) if register_to_model else "",
        )
        if task:
            job.task = json_format.ParseDict({"task": _enum(task, "TASK_")}, TuningJob()).task
        if method:
            job.method = json_format.ParseDict({"method": _enum(method, "TUNING_METHOD_")}, TuningJob()).method
        if preset:
            job.preset = json_format.ParseDict({"preset": _enum(preset, "PRESET_")}, TuningJob()).preset
        if continued_from:
            job.lineage.continued_from_tuning_job = self.job(continued_from)
        if continued_from_model_version:
            job.lineage.continued_from_model_version = continued_from_model_version
        if branched_from:
            job.lineage.branched_from = self.job(branched_from)
        if source_evaluation:
            job.lineage.source_evaluation = source_evaluation
        return job

    def estimate(self, base_model: Any, dataset_version: Any, project: str | None, spec: dict) -> Any:
        return svc.EstimateTuningJobRequest(parent=self.parent(project),
                                            tuning_job=self.spec(base_model, dataset_version, **spec))

    def create(self, base_model: Any, dataset_version: Any, job_id: str, project: str | None, spec: dict) -> Any:
        # The request id makes a retried create idempotent.
        return svc.CreateTuningJobRequest(parent=self.parent(project), tuning_job_id=job_id,
                                          tuning_job=self.spec(base_model, dataset_version, **spec),
                                          request_id=str(uuid.uuid4()))

    def list(self, parent: str, filter: str, page_size: int | None, token: str) -> Any:
        return svc.ListTuningJobsRequest(parent=parent, page_size=page_size or 0, page_token=token, filter=filter)

    def resume(self, job: Any, job_id: str, overrides: dict) -> Any:
        return svc.ResumeTuningJobRequest(name=self.job(job), tuning_job_id=job_id,
                                          hyperparameter_overrides=hyperparameters(overrides),
                                          request_id=str(uuid.uuid4()))


def _model_name(ref: str, project: str) -> str:
    return ref if ref.startswith("projects/") else f"projects/{project}/models/{ref}"


class JobsResource:
    """Base models and tuning jobs of the client's project (sync). Reached as ``client.jobs``."""

    def __init__(self, transport: SyncTransport, project: str) -> None:
        self._t = transport
        self._r = _Requests(project)

    @property
    def _stub(self) -> TuningServiceStub:
        return self._t.stub(SERVICE, TuningServiceStub)

    # -- catalog ----------------------------------------------------------------

    def base_models(self, *, filter: str = "", timeout: Any = USE_DEFAULT) -> Iterator[BaseModel]:
        def fetch(token: str) -> svc.ListBaseModelsResponse:
            req = svc.ListBaseModelsRequest(page_token=token, filter=filter)
            return self._t.call(self._stub.ListBaseModels, req, idempotent=True, timeout=timeout)

        return iterate_pages(fetch, "base_models")

    def base_model(self, ref: Any, *, timeout: Any = USE_DEFAULT) -> BaseModel:
        req = svc.GetBaseModelRequest(name=base_model_name(ref))
        return self._t.call(self._stub.GetBaseModel, req, idempotent=True, timeout=timeout)

    # -- jobs -------------------------------------------------------------------

    def spec(self, base_model: Any, dataset_version: Any, **spec: Any) -> TuningJob:
        """The TuningJob message a create/estimate sends."""
        return self._r.spec(base_model, dataset_version, **spec)

    def estimate(self, base_model: Any, dataset_version: Any, *, project: str | None = None,
                 timeout: Any = USE_DEFAULT, **spec: Any) -> Estimate:
        """What a job would do — resolved settings, steps, memory, duration — without starting it."""
        req = self._r.estimate(base_model, dataset_version, project, spec)
        return self._t.call(self._stub.EstimateTuningJob, req, idempotent=True,
                            timeout=None if timeout is USE_DEFAULT else timeout)

    def create(self, base_model: Any, dataset_version: Any, *, job_id: str = "", project: str | None = None,
               timeout: Any = USE_DEFAULT, **spec: Any) -> TuningJob:
        """Create and queue a job; retried safely (the request id makes it idempotent)."""
        req = self._r.create(base_model, dataset_version, job_id, project, spec)
        return self._t.call(self._stub.CreateTuningJob, req, idempotent=True, timeout=timeout)

    def get(self, job: Any, *, timeout: Any = USE_DEFAULT) -> TuningJob:
        return self._t.call(self._stub.GetTuningJob, svc.GetTuningJobRequest(name=self._r.job(job)),
                            idempotent=True, timeout=timeout)

    def list(self, *, filter: str = "", page_size: int | None = None, limit: int | None = None,
             project: str | None = None, timeout: Any = USE_DEFAULT) -> Iterator[TuningJob]:
        """All jobs, newest first. ``filter`` e.g. ``state=JOB_STATE_RUNNING``."""
        parent = self._r.parent(project)

        def fetch(token: str) -> svc.ListTuningJobsResponse:
            req = self._r.list(parent, filter, page_size, token)
            return self._t.call(self._stub.ListTuningJobs, req, idempotent=True, timeout=timeout)

        return iterate_pages(fetch, "tuning_jobs", limit=limit)

    def cancel(self, job: Any, *, etag: str = "", timeout: Any = USE_DEFAULT) -> TuningJob:
        """Best effort: returns at once with the job CANCELLING (or CANCELLED when it was queued)."""
        req = svc.CancelTuningJobRequest(name=self._r.job(job), etag=etag)
        return self._t.call(self._stub.CancelTuningJob, req, idempotent=True, timeout=timeout)

    def resume(self, job: Any, *, job_id: str = "", timeout: Any = USE_DEFAULT, **overrides: Any) -> TuningJob:
        """A new job continuing a FAILED/CANCELLED one from its last checkpoint."""
        req = self._r.resume(job, job_id, overrides)
        return self._t.call(self._stub.ResumeTuningJob, req, idempotent=True, timeout=timeout)

    def delete(self, job: Any, *, etag: str = "", timeout: Any = USE_DEFAULT) -> None:
        req = svc.DeleteTuningJobRequest(name=self._r.job(job), etag=etag)
        self._t.call(self._stub.DeleteTuningJob, req, idempotent=True, timeout=timeout)

    def events(self, job: Any, *, filter: str = "", limit: int | None = None,
               timeout: Any = USE_DEFAULT) -> Iterator[TuningJobEvent]:
        """The stored events, oldest first (e.g. ``filter="event:step_metrics"`` for the loss curve)."""
        parent = self._r.job(job)

        def fetch(token: str) -> svc.ListTuningJobEventsResponse:
            req = svc.ListTuningJobEventsRequest(parent=parent, page_token=token, filter=filter)
            return self._t.call(self._stub.ListTuningJobEvents, req, idempotent=True, timeout=timeout)

        return iterate_pages(fetch, "events", limit=limit)

    def watch(self, job: Any, *, after: int = 0, reconnect: bool = True) -> Iterator[TuningJobEvent]:
        """Events from ``after`` on, live, until the job ends. A dropped stream is re-opened
        after the last event seen, so nothing is missed or repeated."""
        name = self._r.job(job)
        yield from follow(lambda last: self._stub.WatchTuningJob(
            svc.WatchTuningJobRequest(name=name, after_sequence_number=last)), after, reconnect)


class AsyncJobsResource:
    """The grpc.aio twin of :class:`JobsResource` (``AsyncClient.jobs``)."""

    def __init__(self, transport: AsyncTransport, project: str) -> None:
        self._t = transport
        self._r = _Requests(project)

    @property
    def _stub(self) -> TuningServiceStub:
        return self._t.stub(SERVICE, TuningServiceStub)

    def base_models(self, *, filter: str = "", timeout: Any = USE_DEFAULT) -> AsyncIterator[BaseModel]:
        async def fetch(token: str) -> svc.ListBaseModelsResponse:
            req = svc.ListBaseModelsRequest(page_token=token, filter=filter)
            return await self._t.call(self._stub.ListBaseModels, req, idempotent=True, timeout=timeout)

        return aiterate_pages(fetch, "base_models")

    async def base_model(self, ref: Any, *, timeout: Any = USE_DEFAULT) -> BaseModel:
        req = svc.GetBaseModelRequest(name=base_model_name(ref))
        return await self._t.call(self._stub.GetBaseModel, req, idempotent=True, timeout=timeout)

    def spec(self, base_model: Any, dataset_version: Any, **spec: Any) -> TuningJob:
        return self._r.spec(base_model, dataset_version, **spec)

    async def estimate(self, base_model: Any, dataset_version: Any, *, project: str | None = None,
                       timeout: Any = USE_DEFAULT, **spec: Any) -> Estimate:
        req = self._r.estimate(base_model, dataset_version, project, spec)
        return await self._t.call(self._stub.EstimateTuningJob, req, idempotent=True,
                                  timeout=None if timeout is USE_DEFAULT else timeout)

    async def create(self, base_model: Any, dataset_version: Any, *, job_id: str = "", project: str | None = None,
                     timeout: Any = USE_DEFAULT, **spec: Any) -> TuningJob:
        req = self._r.create(base_model, dataset_version, job_id, project, spec)
        return await self._t.call(self._stub.CreateTuningJob, req, idempotent=True, timeout=timeout)

    async def get(self, job: Any, *, timeout: Any = USE_DEFAULT) -> TuningJob:
        return await self._t.call(self._stub.GetTuningJob, svc.GetTuningJobRequest(name=self._r.job(job)),
                                  idempotent=True, timeout=timeout)

    def list(self, *, filter: str = "", page_size: int | None = None, limit: int | None = None,
             project: str | None = None, timeout: Any = USE_DEFAULT) -> AsyncIterator[TuningJob]:
        parent = self._r.parent(project)

        async def fetch(token: str) -> svc.ListTuningJobsResponse:
            req = self._r.list(parent, filter, page_size, token)
            return await self._t.call(self._stub.ListTuningJobs, req, idempotent=True, timeout=timeout)

        return aiterate_pages(fetch, "tuning_jobs", limit=limit)

    async def cancel(self, job: Any, *, etag: str = "", timeout: Any = USE_DEFAULT) -> TuningJob:
        req = svc.CancelTuningJobRequest(name=self._r.job(job), etag=etag)
        return await self._t.call(self._stub.CancelTuningJob, req, idempotent=True, timeout=timeout)

    async def resume(self, job: Any, *, job_id: str = "", timeout: Any = USE_DEFAULT, **overrides: Any) -> TuningJob:
        req = self._r.resume(job, job_id, overrides)
        return await self._t.call(self._stub.ResumeTuningJob, req, idempotent=True, timeout=timeout)

    async def delete(self, job: Any, *, etag: str = "", timeout: Any = USE_DEFAULT) -> None:
        req = svc.DeleteTuningJobRequest(name=self._r.job(job), etag=etag)
        await self._t.call(self._stub.DeleteTuningJob, req, idempotent=True, timeout=timeout)

    def events(self, job: Any, *, filter: str = "", limit: int | None = None,
               timeout: Any = USE_DEFAULT) -> AsyncIterator[TuningJobEvent]:
        parent = self._r.job(job)

        async def fetch(token: str) -> svc.ListTuningJobEventsResponse:
            req = svc.ListTuningJobEventsRequest(parent=parent, page_token=token, filter=filter)
            return await self._t.call(self._stub.ListTuningJobEvents, req, idempotent=True, timeout=timeout)

        return aiterate_pages(fetch, "events", limit=limit)

    async def watch(self, job: Any, *, after: int = 0, reconnect: bool = True) -> AsyncIterator[TuningJobEvent]:
        """``async for event in client.jobs.watch(job)``: live until the job ends, re-opened
        after the last event seen when the stream drops."""
        name = self._r.job(job)
        events = afollow(lambda last: self._stub.WatchTuningJob(
            svc.WatchTuningJobRequest(name=name, after_sequence_number=last)), after, reconnect)
        async with contextlib.aclosing(events):
            async for event in events:
                yield event
