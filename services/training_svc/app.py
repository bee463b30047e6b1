"""The training service's use cases: catalog, estimate, create/get/list/cancel/resume/
delete, watch and events, and the loop that moves queued jobs onto the cluster.
No gRPC here: the servicer parses requests and calls these methods."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from services.common import names, pagination
from services.common.auth import Principal, audit, check_project
from services.common.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    MtwError,
    NotFound,
    ResourceExhausted,
)
from services.common.filtering import parse_filter
from services.common.jobs import FailureCategory, JobFailure, JobState
from services.common.objectstore import ObjectStore
from services.common.peers import Channels
from services.training_svc import store as st
from services.training_svc.datasets import DatasetClient, VersionInfo
from services.training_svc.domain import presets, states
from services.training_svc.domain.catalog import Catalog
from services.training_svc.domain.estimate import Estimate, estimate
from services.training_svc.domain.model import (
    BaseModel,
    Hyperparameters,
    JobEvent,
    Lineage,
    Preset,
    Task,
    TrainingSpec,
    TuningJob,
    TuningMethod,
)
from services.training_svc.events import EventHub
from services.training_svc.follow_ups import FollowUps
from services.training_svc.model_versions import ModelVersionClient
from services.training_svc.scheduler import Run, RunStatus, Scheduler, ThroughputQuery
from services.training_svc.settings import TrainingSettings
from services.training_svc.store import NewJob, TrainingStore, cancelled_by_user

log = logging.getLogger(__name__)

PROJECT = "projects/{project}"
JOB = "projects/{project}/tuningJobs/{job}"
MODEL = "projects/{project}/models/{model}"
BASE_MODEL = "baseModels/{model}"
OBJECT_ROOT = "training"
_TEXT_LIMITS = {"display_name": 200, "description": 4000}
# What ResumeTuningJob may change: how the work is spread, never what is learnt.
RESUME_OVERRIDABLE = ("per_device_batch_size", "gradient_accumulation_steps", "num_workers", "use_gpu",
                      "precision", "gradient_checkpointing")


@dataclasses.dataclass(frozen=True)
class Page:
    items: list[Any]
    next_page_token: str


@dataclasses.dataclass(frozen=True)
class JobRequest:
    """The spec fields of a TuningJob as a caller sends them (output fields dropped)."""

    base_model: str = ""
    dataset_version: str = ""
    display_name: str = ""
    description: str = ""
    task: Task = Task.UNSPECIFIED
    method: TuningMethod = TuningMethod.UNSPECIFIED
    preset: Preset = Preset.UNSPECIFIED
    hyperparameters: Hyperparameters = dataclasses.field(default_factory=Hyperparameters)
    licence_acknowledged: bool = False
    lineage: Lineage = dataclasses.field(default_factory=Lineage)
    skip_final_evaluation: bool = False
    labels: dict[str, str] = dataclasses.field(default_factory=dict)
    register_to_model: str = ""


@dataclasses.dataclass(frozen=True)
class Plan:
    """A request checked against the catalog and the dataset version, hyperparameters resolved."""

    model: BaseModel
    version: VersionInfo
    task: Task
    method: TuningMethod
    preset: Preset
    resolved: Hyperparameters
    estimate: Estimate


@dataclasses.dataclass(frozen=True)
class EstimateResult:
    plan: Plan
    licence_acknowledgement_required: bool
    worker_memory_bytes: int


class TrainingApp:
    def __init__(
        self, settings: TrainingSettings, store: TrainingStore, objects: ObjectStore, catalog: Catalog,
        scheduler: Scheduler, hub: EventHub,
    ) -> None:
        self.settings = settings
        self.store = store
        self.objects = objects
        self.catalog = catalog
        self.scheduler = scheduler
        self.hub = hub
        self.peers = Channels()
        self.datasets = DatasetClient(self.peers.get(settings.dataset_service_endpoint))
        self.follow_ups = FollowUps(settings, store, self.peers)
        self.model_versions = ModelVersionClient(self.peers.get(settings.registry_service_endpoint))
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._calibrations: dict[str, asyncio.Task] = {}

    # --- names --------------------------------------------------------------------------

    @staticmethod
    def project_of(parent: str, field: str = "parent") -> str:
        project = names.parse(PROJECT, parent, field)["project"]
        check_project(project, "project", parent)
        return project

    @staticmethod
    def job_of(name: str, field: str = "name") -> tuple[str, str]:
        parts = names.parse(JOB, name, field)
        check_project(parts["project"], "tuning job", name)
        return parts["project"], parts["job"]

    # --- base models -------------------------------------------------------------------

    def list_base_models(self, page_size: int, page_token: str, filter_text: str) -> Page:
        size = pagination.page_size(page_size)
        terms = parse_filter(filter_text, ("supported_tasks", "supported_methods", "available"))
        models = [m for m in self.catalog.list() if all(_model_matches(m, t.field, t.op, t.value) for t in terms)]
        fingerprint = pagination.request_fingerprint("base-models", filter_text)
        offset = self._decode(page_token, fingerprint)["o"] if page_token else 0
        end = offset + size
        token = self._encode({"o": end}, fingerprint) if end < len(models) else ""
        return Page(models[offset:end], token)

    def get_base_model(self, name: str) -> BaseModel:
        model_id = names.parse(BASE_MODEL, name, "name")["model"]
        return self.catalog.get(model_id)

    # --- estimate and create ------------------------------------------------------------

    async def estimate(self, parent: str, request: JobRequest, api_key: str) -> EstimateResult:
        project = self.project_of(parent)
        plan = await self._plan(project, request, api_key, calibrate=True)
        return EstimateResult(plan, plan.model.licence_requires_acknowledgement,
                              self.settings.worker_memory_bytes)

    async def create(
        self, principal: Principal, parent: str, request: JobRequest, job_id: str, request_id: str,
        api_key: str, traceparent: str = "",
    ) -> TuningJob:
        project = self.project_of(parent)
        job_id = names.check_id(job_id, "tuning_job_id") if job_id else _generated_id()
        if request_id:
            _check_request_id(request_id)
        plan = await self._plan(project, request, api_key, calibrate=False)
        if plan.model.licence_requires_acknowledgement and not request.licence_acknowledged:
            raise FailedPrecondition(
                f"base model '{plan.model.name}' is under the licence '{plan.model.licence_name}' "
                f"({plan.model.licence_uri or 'see the model card'}), which must be accepted: read it, then "
                "set tuning_job.licence_acknowledged=true",
                reason="LICENCE_NOT_ACKNOWLEDGED",
                metadata={"base_model": plan.model.name, "licence": plan.model.licence_name},
            )
        init_weights, lineage = await self._lineage_source(project, request.lineage, plan, api_key)
        if request.register_to_model:
            _check_model_name(request.register_to_model, project)
        await self._check_quota(project)
        spec = self._spec(project, job_id, plan, init_weights_uri=init_weights, traceparent=traceparent)
        job = await self.store.insert_job(NewJob(
            project=project, job_id=job_id, display_name=request.display_name,
            description=request.description, base_model=plan.model.name,
            dataset_version=request.dataset_version, task=plan.task, method=plan.method,
            preset=plan.preset, hyperparameters=request.hyperparameters,
            resolved_hyperparameters=plan.resolved, licence_acknowledged=request.licence_acknowledged,
            lineage=dataclasses.replace(lineage, resumed_from_step=0),
            skip_final_evaluation=request.skip_final_evaluation, labels=request.labels, spec=spec,
            creator=f"projects/{project}/apiKeys/{principal.key_id}", request_id=request_id,
            total_steps=plan.estimate.steps, register_to_model=request.register_to_model,
        ))
        await audit(self.store.pool, "tuning_job.create", job.name,
                    {"base_model": job.base_model, "dataset_version": job.dataset_version},
                    service=self.settings.service_name)
        self.wake()
        return job

    async def _plan(self, project: str, request: JobRequest, api_key: str, *, calibrate: bool) -> Plan:
        violations: list[FieldViolation] = []
        model: BaseModel | None = None
        if not request.base_model:
            violations.append(FieldViolation("tuning_job.base_model", "required: a base model, e.g. "
                                             "baseModels/all-minilm-l6-v2 (see ListBaseModels)"))
        else:
            try:
                model = self.catalog.resolve(request.base_model)
            except NotFound:
                known = ", ".join(m.name for m in self.catalog.list())
                violations.append(FieldViolation(
                    "tuning_job.base_model", f"unknown base model '{request.base_model}'; choose one of {known}"))
        if not request.dataset_version:
            violations.append(FieldViolation(
                "tuning_job.dataset_version", "required: projects/{project}/datasets/{dataset}/versions/{version}"))
        else:
            try:
                parts = names.parse("projects/{project}/datasets/{dataset}/versions/{version}",
                                    request.dataset_version, "tuning_job.dataset_version")
                if parts["project"] != project:
                    raise NotFound.resource("dataset version", request.dataset_version)
            except InvalidArgument as exc:
                violations.extend(exc.violations)
        text = {"display_name": request.display_name, "description": request.description}
        violations += [FieldViolation(f"tuning_job.{k}", f"at most {_TEXT_LIMITS[k]:,} characters")
                       for k, v in text.items() if len(v) > _TEXT_LIMITS[k]]
        violations += _label_violations(request.labels)
        if model is not None and request.method != TuningMethod.UNSPECIFIED \
                and request.method not in model.supported_methods:
            supported = ", ".join(m.name for m in model.supported_methods)
            violations.append(FieldViolation("tuning_job.method",
                                             f"{model.name} supports {supported}, not {request.method.name}"))
        context = model.context_length if model is not None else 1_000_000
        try:
            presets.validate(request.hyperparameters, field_prefix="tuning_job.hyperparameters",
                             max_seq_length_limit=context)
        except InvalidArgument as exc:
            violations.extend(exc.violations)
        if request.hyperparameters.use_gpu and not await self._has_gpus():
            violations.append(FieldViolation("tuning_job.hyperparameters.use_gpu",
                                             "this cluster has no GPUs; leave use_gpu unset"))
        if violations:
            raise InvalidArgument(_summary(violations), violations)
        assert model is not None
        if not model.available:
            raise FailedPrecondition(f"base model '{model.name}' is not available on this server right now",
                                     reason="BASE_MODEL_UNAVAILABLE")
        version = await self.datasets.get_version(request.dataset_version, api_key, "tuning_job.dataset_version")
        task = request.task if request.task != Task.UNSPECIFIED else version.task
        if task != version.task:
            raise FailedPrecondition(
                f"dataset version '{version.name}' holds {version.task.name} data, not {task.name}; "
                "leave tuning_job.task unset or upload data for that task", reason="TASK_MISMATCH")
        if task not in model.supported_tasks:
            supported = ", ".join(t.name for t in model.supported_tasks)
            raise FailedPrecondition(
                f"base model '{model.name}' cannot be trained for {task.name} (it supports {supported}); "
                "choose another base model", reason="TASK_NOT_SUPPORTED_BY_MODEL")
        train_rows = version.rows("train")
        if not train_rows:
            raise FailedPrecondition(f"dataset version '{version.name}' has no training rows",
                                     reason="NO_TRAINING_DATA")
        method = request.method if request.method != TuningMethod.UNSPECIFIED else TuningMethod.LORA
        preset, resolved = presets.resolve(request.preset, request.hyperparameters, task=task, model=model,
                                           method=method, train_rows=train_rows)
        presets.validate(resolved, field_prefix="tuning_job.hyperparameters", max_seq_length_limit=context)
        throughput = await self._throughput(model, task, method, resolved, calibrate)
        result = estimate(model=model, task=task, method=method, hp=resolved, train_rows=train_rows,
                          mean_tokens_per_row=version.mean_tokens_per_row, samples_per_second=throughput,
                          worker_memory_bytes=self.settings.worker_memory_bytes,
                          validation_rows=version.rows("validation"))
        return Plan(model, version, task, method, preset, resolved, result)

    async def _has_gpus(self) -> bool:
        probe = getattr(self.scheduler, "has_gpus", None)
        return bool(await probe()) if probe is not None else False

    async def _throughput(self, model: BaseModel, task: Task, method: TuningMethod, hp: Hyperparameters,
                          calibrate: bool) -> float | None:
        query = ThroughputQuery(model.source, model.is_local, task.name, method.name, hp.max_seq_length or 128,
                                hp.per_device_batch_size or 8, model.lora_fan_in_fan_out)
        cached = await self.store.calibration(query.key)
        if cached is not None or not calibrate:
            return cached
        # One measurement per key at a time, carried on in the background: an estimate
        # waits a little for it, and a later one finds it cached.
        task = self._calibrations.get(query.key)
        if task is None:
            task = self._calibrations[query.key] = asyncio.create_task(self._calibrate(query))
            task.add_done_callback(lambda _t: self._calibrations.pop(query.key, None))
        try:
            return await asyncio.wait_for(asyncio.shield(task), self.settings.calibration_wait_seconds)
        except TimeoutError:
            return None

    async def _calibrate(self, query: ThroughputQuery) -> float | None:
        try:
            measured = await self.scheduler.measure_throughput(query, self.settings.calibration_timeout_seconds)
        except Exception:
            log.warning("throughput calibration failed for %s", query.key, exc_info=True)
            return None
        if measured:
            await self.store.save_calibration(query.key, measured)
        return measured

    async def _lineage_source(self, project: str, lineage: Lineage, plan: Plan, api_key: str) -> tuple[str, Lineage]:
        """Checks what a new job continues or branches from; returns the weights to start from
        and the lineage as stored (a model version alias resolved to the version)."""
        if lineage.resumed_from:
            raise InvalidArgument.field("tuning_job.lineage.resumed_from",
                                        "set by ResumeTuningJob only; call it to resume a job")
        if lineage.continued_from_model_version:
            field = "tuning_job.lineage.continued_from_model_version"
            version = await self.model_versions.weights(lineage.continued_from_model_version, api_key, field)
            if names.parse("projects/{project}/models/{model}/versions/{version}", version.name,
                           field)["project"] != project:
                raise NotFound.resource("model version", lineage.continued_from_model_version)
            self._check_same_start(version.name, version.base_model, version.method, plan)
            return version.uri, dataclasses.replace(lineage, continued_from_model_version=version.name)
        source_name = lineage.continued_from_tuning_job or lineage.branched_from
        if not source_name:
            return "", lineage
        field = "continued_from_tuning_job" if lineage.continued_from_tuning_job else "branched_from"
        source_project, source_id = names.parse(JOB, source_name, f"tuning_job.lineage.{field}").values()
        if source_project != project:
            raise NotFound.resource("tuning job", source_name)
        source = await self.store.get_job(source_project, source_id)
        if not lineage.continued_from_tuning_job:
            return "", lineage
        if source.state != JobState.SUCCEEDED or source.output is None:
            raise FailedPrecondition(f"tuning job '{source.name}' is {source.state.name}; only a SUCCEEDED job's "
                                     "weights can be trained further", reason="LINEAGE_SOURCE_NOT_SUCCEEDED")
        self._check_same_start(f"tuning job '{source.name}'", source.base_model, source.method, plan)
        return source.output.uri, lineage

    @staticmethod
    def _check_same_start(source: str, base_model: str, method: TuningMethod, plan: Plan) -> None:
        if base_model != plan.model.name or method != plan.method:
            raise FailedPrecondition(
                f"{source} trained {base_model} with {method.name}; continue with the same base model and method",
                reason="LINEAGE_MODEL_MISMATCH")

    async def _check_quota(self, project: str) -> None:
        queued, _active = await self.store.project_counts(project)
        limit = self.settings.max_queued_jobs_per_project
        if queued >= limit:
            raise ResourceExhausted(
                f"project '{project}' already has {queued} tuning jobs waiting (its limit is {limit}); "
                "wait for some to start or cancel some", reason="TUNING_JOB_QUEUE_FULL",
                metadata={"queued": str(queued), "limit": str(limit)},
            )

    def _spec(self, project: str, job_id: str, plan: Plan, *, init_weights_uri: str = "",
              resume_from_checkpoint: str = "", traceparent: str = "") -> TrainingSpec:
        prefix = f"{OBJECT_ROOT}/projects/{project}/tuningJobs/{job_id}"
        return TrainingSpec(
            job_name=names.build(JOB, project=project, job=job_id),
            run_name=run_name(project, job_id),
            task=plan.task,
            base_model_source=plan.model.source,
            base_model_is_local=plan.model.is_local,
            lora_fan_in_fan_out=plan.model.lora_fan_in_fan_out,
            method=plan.method,
            hyperparameters=plan.resolved,
            train_uri=plan.version.uri("train"),
            validation_uri=plan.version.uri("validation"),
            label_names=plan.version.label_names if plan.task == Task.SEQUENCE_CLASSIFICATION else (),
            output_prefix=f"{prefix}/output",
            storage_path=f"{self.objects.bucket}/{prefix}/checkpoints",
            resume_from_checkpoint=resume_from_checkpoint,
            init_weights_uri=init_weights_uri,
            traceparent=traceparent,
        )

    # --- read ----------------------------------------------------------------------------

    async def get(self, name: str) -> TuningJob:
        return await self.store.get_job(*self.job_of(name))

    async def list(self, parent: str, page_size: int, page_token: str, filter_text: str) -> Page:
        project = self.project_of(parent)
        size = pagination.page_size(page_size)
        terms = parse_filter(filter_text, ("state", "base_model", "dataset_version", "task", "display_name",
                                           "labels."))
        fingerprint = pagination.request_fingerprint("tuning-jobs", project, filter_text)
        after = None
        if page_token:
            state = self._decode(page_token, fingerprint)
            after = (datetime.fromisoformat(state["t"]), state["id"])
        rows = await self.store.list_jobs(project, size + 1, after, terms)
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = self._encode({"t": last.create_time.isoformat(), "id": last.job_id}, fingerprint)
        return Page(rows[:size], token)

    # --- cancel, resume, delete ---------------------------------------------------------

    async def cancel(self, name: str, etag: str) -> TuningJob:
        project, job_id = self.job_of(name)
        job = await self.store.check_etag(project, job_id, etag)
        if job.state == JobState.CANCELLING:
            return job
        if job.state.is_terminal:
            states.check_transition(job.state, JobState.CANCELLED, job.name)
        if job.state == JobState.QUEUED:
            await self.store.record(project, job_id, "state", {"state": JobState.CANCELLED,
                                    "message": "cancelled before it started"}, failure=cancelled_by_user())
        else:
            events = await self.store.record(project, job_id, "state", {
                "state": JobState.CANCELLING, "message": "stopping the workers"})
            if events:
                self._spawn(self._stop_run(project, job_id))
        await audit(self.store.pool, "tuning_job.cancel", name, service=self.settings.service_name)
        return await self.store.get_job(project, job_id)

    async def _stop_run(self, project: str, job_id: str) -> None:
        spec = await self.store.get_spec(project, job_id)
        try:
            await self.scheduler.cancel(spec.run_name)
            await self.release_workers(project, job_id)
        except Exception:
            log.exception("could not stop run %s; the reconciler will retry", spec.run_name)
            return
        await self.store.record(project, job_id, "state", {"state": JobState.CANCELLED,
                                "message": "cancelled; the workers were stopped"}, failure=cancelled_by_user())
        self.wake()

    async def resume(self, principal: Principal, name: str, new_job_id: str, overrides: Hyperparameters,
                     set_fields: set[str], request_id: str) -> TuningJob:
        project, job_id = self.job_of(name)
        old = await self.store.get_job(project, job_id)
        if old.state not in (JobState.FAILED, JobState.CANCELLED):
            raise FailedPrecondition(f"tuning job '{old.name}' is {old.state.name}; only FAILED or CANCELLED "
                                     "jobs can be resumed", reason="TUNING_JOB_NOT_RESUMABLE")
        if old.latest_checkpoint is None:
            raise FailedPrecondition(f"tuning job '{old.name}' saved no checkpoint before it stopped; create "
                                     "it again instead", reason="NO_CHECKPOINT")
        bad = sorted(set_fields - set(RESUME_OVERRIDABLE))
        if bad:
            raise InvalidArgument("these settings change what is learnt and cannot change on resume",
                                  [FieldViolation(f"hyperparameter_overrides.{f}",
                                                  f"cannot change on resume; only {', '.join(RESUME_OVERRIDABLE)}")
                                   for f in bad])
        new_job_id = names.check_id(new_job_id, "tuning_job_id") if new_job_id else _generated_id()
        if request_id:
            _check_request_id(request_id)
        resolved = dataclasses.replace(old.resolved_hyperparameters,
                                       **{f: getattr(overrides, f) for f in set_fields})
        model = self.catalog.resolve(old.base_model)
        presets.validate(resolved, field_prefix="hyperparameter_overrides", max_seq_length_limit=model.context_length)
        await self._check_quota(project)
        old_spec = await self.store.get_spec(project, job_id)
        prefix = f"{OBJECT_ROOT}/projects/{project}/tuningJobs/{new_job_id}"
        spec = dataclasses.replace(
            old_spec, job_name=names.build(JOB, project=project, job=new_job_id),
            run_name=run_name(project, new_job_id), hyperparameters=resolved,
            output_prefix=f"{prefix}/output", storage_path=f"{self.objects.bucket}/{prefix}/checkpoints",
            resume_from_checkpoint=old.latest_checkpoint.uri,
        )
        job = await self.store.insert_job(NewJob(
            project=project, job_id=new_job_id, display_name=old.display_name, description=old.description,
            base_model=old.base_model, dataset_version=old.dataset_version, task=old.task, method=old.method,
            preset=old.preset, hyperparameters=old.hyperparameters, resolved_hyperparameters=resolved,
            licence_acknowledged=old.licence_acknowledged,
            lineage=Lineage(resumed_from=old.name, resumed_from_step=old.latest_checkpoint.step),
            skip_final_evaluation=old.skip_final_evaluation, labels=old.labels, spec=spec,
            creator=f"projects/{project}/apiKeys/{principal.key_id}", request_id=request_id,
            total_steps=old.progress.total_steps, register_to_model=old.register_to_model,
            message=f"queued to resume {old.name} from step {old.latest_checkpoint.step}",
        ))
        await audit(self.store.pool, "tuning_job.resume", job.name, {"resumed_from": old.name},
                    service=self.settings.service_name)
        self.wake()
        return job

    async def delete(self, name: str, etag: str) -> None:
        project, job_id = self.job_of(name)
        job = await self.store.delete_job(project, job_id, etag)
        await audit(self.store.pool, "tuning_job.delete", job.name, service=self.settings.service_name)
        try:
            await self.objects.delete_prefix(f"{OBJECT_ROOT}/projects/{project}/tuningJobs/{job_id}/")
        except Exception:
            log.exception("could not delete the objects of %s", job.name)

    # --- events --------------------------------------------------------------------------

    async def watch(self, name: str, after: int) -> AsyncIterator[JobEvent]:
        """The job's events after `after`, then live ones until the terminal state change."""
        project, job_id = self.job_of(name)
        if after < 0:
            raise InvalidArgument.field("after_sequence_number", "must not be negative")
        await self.store.get_job(project, job_id)

        async def has_ended() -> bool:
            return (await self.store.get_job(project, job_id)).state.is_terminal

        async with self.hub.follow(
            project, job_id, after, read=lambda after, limit: self.store.list_events(project, job_id, after, limit),
            is_final=_is_final, has_ended=has_ended,
        ) as events:
            async for event in events:
                yield event

    async def list_events(self, parent: str, page_size: int, page_token: str, filter_text: str) -> Page:
        project, job_id = self.job_of(parent, "parent")
        size = pagination.page_size(page_size, default=500, maximum=5000)
        kinds, after = _event_filter(filter_text)
        fingerprint = pagination.request_fingerprint("events", project, job_id, filter_text)
        if page_token:
            after = max(after, self._decode(page_token, fingerprint)["s"])
        await self.store.get_job(project, job_id)
        rows = await self.store.list_events(project, job_id, after, size + 1, kinds)
        token = self._encode({"s": rows[size - 1].sequence}, fingerprint) if len(rows) > size else ""
        return Page(rows[:size], token)

    # --- the scheduling loop -----------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def start_loop(self) -> None:
        self._loop_task = asyncio.create_task(self._run_loop(), name="training-scheduler")

    async def stop_loop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._background, *self._calibrations.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_loop(self) -> None:
        from services.training_svc import reconcile

        while True:
            try:
                await reconcile.reconcile(self)
                await self.dispatch()
                await self.follow_ups.run_pending()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduling pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.scheduler_interval_seconds)
            self._wake.clear()

    async def dispatch(self) -> int:
        """Starts queued jobs while quotas allow: per project at most max_concurrent_jobs_per_project,
        overall max_running_jobs; the project with the fewest running jobs goes first, then the
        oldest job (fair FIFO between projects). Returns how many started."""
        active = await self.store.active()
        running: dict[str, int] = defaultdict(int)
        for attempt in active:
            running[attempt.project] += 1
        total = len(active)
        queues: dict[str, list[st.Attempt]] = defaultdict(list)
        for attempt in await self.store.queued():
            queues[attempt.project].append(attempt)
        started = 0
        per_project = self.settings.max_concurrent_jobs_per_project
        while total < self.settings.max_running_jobs:
            ready = [p for p, q in queues.items() if q and running[p] < per_project]
            if not ready:
                break
            project = min(ready, key=lambda p: (running[p], queues[p][0].create_time))
            attempt = queues[project].pop(0)
            if await self._start(attempt):
                running[project] += 1
                total += 1
                started += 1
        return started

    async def _start(self, attempt: st.Attempt) -> bool:
        events = await self.store.record(attempt.project, attempt.job_id, "state", {
            "state": JobState.PREPARING, "message": "starting workers and loading the model and data"})
        if not events:
            return False  # cancelled meanwhile
        await self.submit(attempt.project, attempt.job_id, attempt.spec)
        return True

    async def submit(self, project: str, job_id: str, spec: TrainingSpec) -> None:
        run = Run(project, job_id, spec, self.settings.database_url, self.settings.training_max_failures,
                  self.settings.ray_cpus_per_worker, self.settings.otel_exporter_otlp_endpoint or "")
        try:
            await self.scheduler.submit(run)
        except Exception as exc:
            if (await self.store.attempt(project, job_id)).state == JobState.CANCELLING:
                # The cancel stopped the run as it was being submitted.
                await self.store.record(project, job_id, "state", {
                    "state": JobState.CANCELLED, "message": "cancelled before it started"}, failure=cancelled_by_user())
                return
            log.exception("could not submit %s", spec.run_name)
            await self.store.record(project, job_id, "state", {"state": JobState.FAILED,
                                    "message": f"the cluster did not accept the run: {exc}"},
                                    failure=JobFailure(FailureCategory.INFRASTRUCTURE,
                                                       f"the cluster did not accept the run: {exc}",
                                                       "Try again in a minute; if it keeps failing, tell the "
                                                       "operators the Ray cluster is unreachable.",
                                                       code="UNAVAILABLE"))
            return
        current = await self.store.attempt(project, job_id)
        if current.state == JobState.CANCELLING:  # cancelled while it was being submitted
            self._spawn(self._stop_run(project, job_id))

    async def release_workers(self, project: str, job_id: str) -> None:
        """Frees the CPUs of a run that was stopped or lost."""
        if placement_group := await self.store.placement_group(project, job_id):
            await self.scheduler.release(placement_group)

    async def run_status(self, run_name: str) -> RunStatus:
        return await self.scheduler.status(run_name)

    def _encode(self, state: dict, fingerprint: str) -> str:
        return pagination.encode_page_token(self.settings.page_token_secret, state, fingerprint)

    def _decode(self, token: str, fingerprint: str) -> dict:
        return pagination.decode_page_token(self.settings.page_token_secret, token, fingerprint)


def run_name(project: str, job_id: str) -> str:
    """Unique per attempt: Ray Train keys checkpoints by it, and the runner actor is named by it."""
    return f"tj-{project}-{job_id}-{uuid.uuid4().hex[:8]}"


def _generated_id() -> str:
    return "tj-" + uuid.uuid4().hex[:12]


def _is_final(event: JobEvent) -> bool:
    return event.kind == "state" and st.parse_state(event.payload.get("state")).is_terminal


def _summary(violations: list[FieldViolation]) -> str:
    head = "; ".join(f"{v.field}: {v.description}" for v in violations[:3])
    more = f" (and {len(violations) - 3} more)" if len(violations) > 3 else ""
    return f"the tuning job is invalid: {head}{more}"


def _check_model_name(name: str, project: str) -> None:
    field = "tuning_job.register_to_model"
    parts = names.parse(MODEL, name, field)
    if parts["project"] != project:
        raise InvalidArgument.field(field, f"'{name}' is in another project; register into a model of "
                                           f"projects/{project}")


def _check_request_id(request_id: str) -> None:
    try:
        uuid.UUID(request_id)
    except ValueError:
        raise InvalidArgument.field("request_id", "must be a UUID, e.g. 4f9c…-…") from None


def _label_violations(labels: dict[str, str]) -> list[FieldViolation]:
    if len(labels) > 64:
        return [FieldViolation("tuning_job.labels", "at most 64 labels")]
    return [
        FieldViolation(f"tuning_job.labels.{key}", "keys are 1-63 lowercase letters, digits, '_' or '-' "
                       "starting with a letter; values at most 63 characters")
        for key, value in labels.items()
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key) or len(value) > 63
    ]


_EVENT_KINDS = {"state_change": "state", "step_metrics": "step", "eval_metrics": "eval",
                "checkpoint_saved": "checkpoint", "log": "log"}


def _event_filter(text: str) -> tuple[tuple[str, ...], int]:
    """`event:step_metrics`, `(event:a OR event:b)`, `sequence_number>N`, joined with AND."""
    kinds: list[str] = []
    after = 0
    rest = text.strip()
    for match in re.finditer(r"sequence_number\s*>\s*(\d+)", rest):
        after = max(after, int(match.group(1)))
    rest = re.sub(r"sequence_number\s*>\s*\d+", " ", rest)
    for match in re.finditer(r"event\s*[:=]\s*\"?([a-z_]+)\"?", rest):
        if match.group(1) not in _EVENT_KINDS:
            raise InvalidArgument.field("filter", f"unknown event kind '{match.group(1)}'; use one of "
                                        + ", ".join(_EVENT_KINDS))
        kinds.append(_EVENT_KINDS[match.group(1)])
    leftover = re.sub(r"event\s*[:=]\s*\"?[a-z_]+\"?|\bAND\b|\bOR\b|[()\s]", "", rest)
    if leftover:
        raise InvalidArgument.field("filter", f"cannot read '{leftover[:40]}'; use event:KIND and sequence_number>N")
    return tuple(kinds), after


def _model_matches(model: BaseModel, field: str, op: str, value: str) -> bool:
    if field == "supported_tasks":
        found = any(t.name == value.upper().removeprefix("TASK_") for t in model.supported_tasks)
    elif field == "supported_methods":
        found = any(m.name == value.upper().removeprefix("TUNING_METHOD_") for m in model.supported_methods)
    else:
        found = model.available == (value.lower() == "true")
    return found if op != "!=" else not found


__all__ = ["EstimateResult", "JobRequest", "MtwError", "Page", "Plan", "TrainingApp"]
