"""The evaluation service's use cases: create (with the base-model baseline), get, list,
cancel, delete, watch, example results, recommendations and "fine-tune again", compare,
and the loop that moves queued evaluations onto Ray and makes recommendations once
they succeed. No gRPC servicing here: the servicer parses requests and calls these."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from google.protobuf import json_format

from mtw.training.v1 import hyperparameters_pb2, training_service_pb2, tuning_job_pb2
from services.common import names, pagination
from services.common.auth import Principal, audit, check_project, service_metadata
from services.common.errors import (
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from services.common.filtering import parse_filter
from services.common.jobs import FailureCategory, JobFailure, JobState
from services.common.peers import Channels
from services.common.task import Task
from services.common.telemetry import current_traceparent
from services.eval_svc import store as st
from services.eval_svc.clients import (
    DatasetClient,
    Metadata,
    RegistryClient,
    TrainingClient,
    VersionFacts,
)
from services.eval_svc.domain import metrics as domain_metrics
from services.eval_svc.domain import recommend
from services.eval_svc.domain.model import (
    SPLITS,
    EvalConfig,
    Evaluation,
    EvaluationRequest,
    Event,
    ExampleResult,
    ModelRef,
    Recommendation,
    Results,
    RunSpec,
    StartFrom,
)
from services.eval_svc.events import EventHub
from services.eval_svc.scheduler import Run, RunStatus
from services.eval_svc.settings import EvaluationSettings
from services.eval_svc.store import EvaluationStore, NewEvaluation, cancelled_by_user

log = logging.getLogger(__name__)

PROJECT = "projects/{project}"
EVALUATION = "projects/{project}/evaluations/{evaluation}"
RECOMMENDATION = "projects/{project}/evaluations/{evaluation}/recommendations/{recommendation}"
TUNING_JOB = "projects/{project}/tuningJobs/{job}"
DATASET_VERSION = "projects/{project}/datasets/{dataset}/versions/{version}"
BASE_MODEL = "baseModels/{model}"
SERVICE = "evaluation"
CONFIG_LIMITS = {  # field: (lowest, highest)
    "max_examples": (0, 10**9), "batch_size": (1, 1024), "max_seq_length": (0, 1_000_000),
    "max_new_tokens": (1, 4096), "temperature": (0.0, 2.0), "sample_count": (0, 100),
    "bootstrap_resamples": (0, 10_000), "calibration_bins": (2, 50), "seed": (0, 2**62),
}


@dataclasses.dataclass(frozen=True)
class Page:
    items: list[Any]
    next_page_token: str
    total_size: int = 0


@dataclasses.dataclass(frozen=True)
class Comparison:
    evaluations: list[str]
    metrics: list[tuple[str, bool, list[float], list[float], list[bool]]]  # name, higher, values, deltas, sig
    fixed_counts: list[int]
    regressed_counts: list[int]
    changed: list[dict[str, Any]]
    next_page_token: str


@dataclasses.dataclass(frozen=True)
class ModelPlan:
    """What a request's model resolves to."""

    task: Task
    model_uri: str = ""
    model_path: str = ""
    base_source: str = ""
    label_names: tuple[str, ...] = ()
    max_seq_length: int = 0
    base_model: str = ""  # the base model of a tuning job or model version (for the baseline)
    dataset_version: str = ""  # the data it was trained on, the default
    model_version: str = ""  # a model version's canonical name (an alias resolved)
    supported_tasks: tuple[Task, ...] = ()  # a base model's


class EvaluationApp:
    def __init__(self, settings: EvaluationSettings, store: EvaluationStore, scheduler, hub: EventHub) -> None:
        self.settings = settings
        self.store = store
        self.peers = Channels()
        self.datasets = DatasetClient(self.peers.get(settings.dataset_service_endpoint))
        self.training = TrainingClient(self.peers.get(settings.training_service_endpoint))
        self.registry = RegistryClient(self.peers.get(settings.registry_service_endpoint))
        self.scheduler = scheduler
        self.hub = hub
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._background: set[asyncio.Task] = set()
        self._registry_retry_at = 0.0  # loop time before which no link is pushed again

    # --- names and credentials ----------------------------------------------------------

    @staticmethod
    def project_of(parent: str, field: str = "parent") -> str:
        project = names.parse(PROJECT, parent, field)["project"]
        check_project(project, "project", parent)
        return project

    @staticmethod
    def evaluation_of(name: str, field: str = "name") -> tuple[str, str]:
        parts = names.parse(EVALUATION, name, field)
        check_project(parts["project"], "evaluation", name)
        return parts["project"], parts["evaluation"]

    def metadata(self, project: str, principal: Principal | None = None, api_key: str = "") -> Metadata:
        """The caller's key when a person calls; the internal token on the project's behalf
        when another service calls or no caller is at hand (background work)."""
        if principal is not None and not principal.is_service and api_key:
            return (("authorization", f"Bearer {api_key}"),)
        return service_metadata(self.settings.internal_token, project, SERVICE)

    # --- create ---------------------------------------------------------------------------

    async def create(self, principal: Principal, parent: str, request: EvaluationRequest, evaluation_id: str,
                     request_id: str, api_key: str) -> Evaluation:
        project = self.project_of(parent)
        if request_id:
            _check_request_id(request_id)
            existing = await self.store.by_request(project, request_id)
            if existing is not None:
                return existing
        evaluation_id = names.check_id(evaluation_id, "evaluation_id") if evaluation_id else _generated_id()
        metadata = self.metadata(project, principal, api_key)
        violations = _request_violations(request, project)
        if violations:
            raise InvalidArgument(_summary(violations), violations)
        plan = await self._model_plan(project, request.model, metadata)
        if plan.model_version:  # what was measured stays known when the alias moves on
            request = dataclasses.replace(request, model=ModelRef(model_version=plan.model_version))
        version_name = request.dataset_version or plan.dataset_version
        if not version_name:
            raise InvalidArgument.field("evaluation.dataset_version",
                                        "required: projects/{project}/datasets/{dataset}/versions/{version}")
        version = await self._version(project, version_name, metadata)
        split = request.split or "test"
        task, violations = _check_data(plan, version, split, request)
        metric_names, bad = domain_metrics.resolve_metrics(task, request.metrics)
        violations += bad
        if violations:
            raise InvalidArgument(_summary(violations), violations)
        if await self.store.queued_count(project) >= self.settings.max_queued_evaluations_per_project:
            raise ResourceExhausted(
                f"project '{project}' already has {self.settings.max_queued_evaluations_per_project} evaluations "
                "waiting; wait for some to finish or cancel some", reason="EVALUATION_QUEUE_FULL")
        baseline = request.baseline_evaluation
        if baseline:
            await self._check_baseline(project, baseline, version.name, split)
        elif (request.model.tuning_job or request.model.model_version) and plan.base_model:
            baseline = await self._baseline(principal, project, plan, version, split, metric_names, request.config)
        created_by = request.model.tuning_job if principal.key_id == "service:training" else ""
        spec = self._spec(project, evaluation_id, task, plan, version, split, metric_names, request.config)
        evaluation, created = await self.store.insert(NewEvaluation(
            project=project, evaluation_id=evaluation_id, display_name=request.display_name, model=request.model,
            dataset_version=version.name, split=split, metrics=metric_names, config=request.config,
            baseline_evaluation=baseline, task=task, created_by_tuning_job=created_by, spec=spec,
            creator=f"projects/{project}/apiKeys/{principal.key_id}", labels=request.labels, request_id=request_id))
        if created:
            await audit(self.store.pool, "evaluation.create", evaluation.name,
                        {"model": request.model.name, "dataset_version": version.name, "split": split},
                        service=self.settings.service_name, principal=principal)
            self.wake()
        return evaluation

    async def _model_plan(self, project: str, model: ModelRef, metadata: Metadata) -> ModelPlan:
        if model.model_version:
            return await self._model_version_plan(project, model.model_version, metadata)
        if model.base_model:
            base = await self._base_model(model.base_model, metadata, "evaluation.base_model")
            source = base.uri or base.hugging_face_id
            return ModelPlan(task=Task.UNSPECIFIED, model_uri=source if source.startswith("s3://") else "",
                             model_path="" if source.startswith("s3://") else source,
                             base_model=base.name, max_seq_length=base.context_length,
                             supported_tasks=tuple(Task(t) for t in base.supported_tasks))
        field = "evaluation.tuning_job"
        parts = names.parse(TUNING_JOB, model.tuning_job, field)
        if parts["project"] != project:
            raise InvalidArgument.field(field, f"there is no tuning job '{model.tuning_job}' in project '{project}'")
        try:
            job = await self.training.get_job(model.tuning_job, metadata)
        except NotFound:
            raise InvalidArgument.field(field, f"there is no tuning job '{model.tuning_job}'") from None
        if job.state != JobState.SUCCEEDED.value or not job.output.uri:
            raise FailedPrecondition(
                f"tuning job '{job.name}' is {JobState(job.state).name}; only a SUCCEEDED job's model can be evaluated",
                reason="TUNING_JOB_NOT_SUCCEEDED")
        base = await self._base_model(job.base_model, metadata, field)
        return ModelPlan(
            task=Task(job.task), model_uri=job.output.uri,
            base_source=(base.uri or base.hugging_face_id) if job.output.is_adapter_only else "",
            label_names=tuple(job.output.label_names), max_seq_length=job.resolved_hyperparameters.max_seq_length,
            base_model=job.base_model, dataset_version=job.dataset_version)

    async def _model_version_plan(self, project: str, name: str, metadata: Metadata) -> ModelPlan:
        field = "evaluation.model_version"
        if names.parse_model_version(name, field).project != project:
            raise InvalidArgument.field(field, f"there is no model version '{name}' in project '{project}'")
        try:
            version = await self.registry.get_version(name, metadata, field)
        except NotFound:
            raise InvalidArgument.field(field, f"there is no model version '{name}'") from None
        base_model = version.base_model or version.lineage.base_model
        base = await self._base_model(base_model, metadata, field)
        return ModelPlan(
            task=Task(version.task), model_uri=version.artifacts.uri,
            base_source=(base.uri or base.hugging_face_id) if version.is_adapter_only else "",
            label_names=tuple(version.label_names), max_seq_length=version.lineage.hyperparameters.max_seq_length,
            base_model=base_model, dataset_version=version.lineage.dataset_version, model_version=version.name)

    async def _base_model(self, name: str, metadata: Metadata, field: str):
        try:
            names.parse(BASE_MODEL, name, field)
            return await self.training.get_base_model(name, metadata)
        except NotFound:
            raise InvalidArgument.field(field, f"unknown base model '{name}' (see ListBaseModels)") from None

    async def _version(self, project: str, name: str, metadata: Metadata) -> VersionFacts:
        parts = names.parse(DATASET_VERSION, name, "evaluation.dataset_version")
        if parts["project"] != project:
            raise NotFound.resource("dataset version", name)
        return await self.datasets.get_version(name, metadata)

    async def _check_baseline(self, project: str, name: str, version: str, split: str) -> None:
        parts = names.parse(EVALUATION, name, "evaluation.baseline_evaluation")
        if parts["project"] != project:
            raise NotFound.resource("evaluation", name)
        baseline = await self.store.get(project, parts["evaluation"])
        if (baseline.dataset_version, baseline.split) != (version, split):
            raise InvalidArgument.field("evaluation.baseline_evaluation",
                                        f"'{name}' measured {baseline.dataset_version} ({baseline.split}); a baseline "
                                        "must use the same dataset version and split")

    async def _baseline(self, principal: Principal, project: str, plan: ModelPlan, version: VersionFacts, split: str,
                        metric_names: tuple[str, ...], config: EvalConfig) -> str:
        """An evaluation of the job's base model on the same split: an identical one that has
        not failed, else a new one."""
        config = dataclasses.replace(config, max_seq_length=config.max_seq_length or plan.max_seq_length)
        found = await self.store.reusable_baseline(project, plan.base_model, version.name, split, config, metric_names)
        if found is not None:
            return found.name
        base = await self._model_plan(project, ModelRef(base_model=plan.base_model), self.metadata(project))
        evaluation_id = _generated_id()
        spec = self._spec(project, evaluation_id, plan.task, dataclasses.replace(base, task=plan.task), version, split,
                          metric_names, config)
        evaluation, _ = await self.store.insert(NewEvaluation(
            project=project, evaluation_id=evaluation_id, display_name=f"baseline: {plan.base_model}",
            model=ModelRef(base_model=plan.base_model), dataset_version=version.name, split=split,
            metrics=metric_names, config=config, baseline_evaluation="", task=plan.task, created_by_tuning_job="",
            spec=spec, creator=f"projects/{project}/apiKeys/{principal.key_id}", labels={"role": "baseline"}))
        return evaluation.name

    def _spec(self, project: str, evaluation_id: str, task: Task, plan: ModelPlan, version: VersionFacts, split: str,
              metric_names: tuple[str, ...], config: EvalConfig) -> RunSpec:
        return RunSpec(
            evaluation_name=names.build(EVALUATION, project=project, evaluation=evaluation_id),
            run_name=run_name(project, evaluation_id), task=task, model_uri=plan.model_uri, model_path=plan.model_path,
            base_source=plan.base_source,
            label_names=plan.label_names or (version.label_names if task is Task.SEQUENCE_CLASSIFICATION else ()),
            split_uri=version.split_uris[split], split_rows=version.split_rows[split], metrics=metric_names,
            config=config, max_seq_length=config.max_seq_length or plan.max_seq_length,
            num_workers=self.settings.evaluation_num_workers, init_seed=config.seed,
            traceparent=current_traceparent())

    # --- read -----------------------------------------------------------------------------

    async def get(self, name: str) -> tuple[Evaluation, Results | None]:
        """The evaluation and, when it has a finished baseline, the baseline's results."""
        evaluation = await self.store.get(*self.evaluation_of(name))
        return evaluation, await self._baseline_results(evaluation)

    async def _baseline_results(self, evaluation: Evaluation) -> Results | None:
        if not evaluation.baseline_evaluation:
            return None
        parts = names.parse(EVALUATION, evaluation.baseline_evaluation)
        try:
            return (await self.store.get(parts["project"], parts["evaluation"])).results
        except NotFound:
            return None

    async def list(self, parent: str, page_size: int, page_token: str, filter_text: str) -> Page:
        project = self.project_of(parent)
        size = pagination.page_size(page_size)
        terms = parse_filter(filter_text, ("state", "tuning_job", "model_version", "base_model", "dataset_version",
                                           "split", "created_by_tuning_job", "labels."))
        fingerprint = pagination.request_fingerprint("evaluations", project, filter_text)
        offset = self._decode(page_token, fingerprint)["o"] if page_token else 0
        rows = await self.store.list(project, size + 1, offset, terms)
        items = []
        for evaluation in rows[:size]:
            items.append((evaluation, await self._baseline_results(evaluation)))
        token = self._encode({"o": offset + size}, fingerprint) if len(rows) > size else ""
        return Page(items, token)

    # --- cancel, delete -------------------------------------------------------------------

    async def cancel(self, name: str, etag: str) -> Evaluation:
        project, evaluation_id = self.evaluation_of(name)
        evaluation = await self.store.check_etag(project, evaluation_id, etag)
        if evaluation.state == JobState.CANCELLING:
            return evaluation
        if evaluation.state.is_terminal:
            raise FailedPrecondition(f"evaluation '{name}' has already ended ({evaluation.state.name})",
                                     reason="EVALUATION_ENDED")
        if evaluation.state == JobState.QUEUED:
            await self.store.record(project, evaluation_id, "state", {
                "state": JobState.CANCELLED, "message": "cancelled before it started"}, failure=cancelled_by_user())
        elif await self.store.record(project, evaluation_id, "state",
                                     {"state": JobState.CANCELLING, "message": "stopping the workers"}):
            self._spawn(self._stop_run(project, evaluation_id))
        await audit(self.store.pool, "evaluation.cancel", name, service=self.settings.service_name)
        return await self.store.get(project, evaluation_id)

    async def _stop_run(self, project: str, evaluation_id: str) -> None:
        spec = await self.store.get_spec(project, evaluation_id)
        try:
            await self.scheduler.cancel(spec.run_name)
        except Exception:
            log.exception("could not stop run %s; the loop will retry", spec.run_name)
            return
        await self.store.record(project, evaluation_id, "state", {
            "state": JobState.CANCELLED, "message": "cancelled; the workers were stopped"}, failure=cancelled_by_user())

    async def delete(self, name: str, etag: str) -> None:
        project, evaluation_id = self.evaluation_of(name)
        await self.store.delete(project, evaluation_id, etag)
        await audit(self.store.pool, "evaluation.delete", name, service=self.settings.service_name)

    # --- events ---------------------------------------------------------------------------

    async def watch(self, name: str, after: int) -> AsyncIterator[Event]:
        project, evaluation_id = self.evaluation_of(name)
        if after < 0:
            raise InvalidArgument.field("after_sequence_number", "must not be negative")
        await self.store.get(project, evaluation_id)

        async def has_ended() -> bool:
            return (await self.store.get(project, evaluation_id)).state.is_terminal

        async with self.hub.follow(
            project, evaluation_id, after, read=lambda after, limit: self.store.list_events(project, evaluation_id, after, limit),
            is_final=_is_final, has_ended=has_ended,
        ) as events:
            async for event in events:
                yield event

    # --- example results --------------------------------------------------------------------

    async def _succeeded(self, name: str, field: str) -> Evaluation:
        project, evaluation_id = self.evaluation_of(name, field)
        evaluation = await self.store.get(project, evaluation_id)
        if evaluation.state != JobState.SUCCEEDED:
            raise FailedPrecondition(f"evaluation '{name}' is {evaluation.state.name}; its results exist once it has "
                                     "SUCCEEDED", reason="EVALUATION_NOT_SUCCEEDED")
        return evaluation

    async def list_examples(self, parent: str, page_size: int, page_token: str, filter_text: str,
                            order_by: str) -> Page:
        evaluation = await self._succeeded(parent, "parent")
        size = pagination.page_size(page_size)
        terms = parse_filter(filter_text, tuple(st.EXAMPLE_FIELDS), comparisons=True)
        order = " ".join(order_by.lower().split()) or "loss desc"
        if order not in st.EXAMPLE_ORDERS:
            raise InvalidArgument.field("order_by", f"use one of {', '.join(st.EXAMPLE_ORDERS)}")
        fingerprint = pagination.request_fingerprint("examples", parent, filter_text, order)
        offset = self._decode(page_token, fingerprint)["o"] if page_token else 0
        rows, total = await self.store.list_examples(evaluation.project, evaluation.evaluation_id, terms, order,
                                                     size, offset)
        token = self._encode({"o": offset + size}, fingerprint) if offset + size < total else ""
        return Page(rows, token, total)

    # --- recommendations ----------------------------------------------------------------

    def _recommendation_of(self, name: str) -> tuple[str, str, str]:
        parts = names.parse(RECOMMENDATION, name, "name")
        check_project(parts["project"], "recommendation", name)
        return parts["project"], parts["evaluation"], parts["recommendation"]

    async def list_recommendations(self, parent: str, page_size: int, page_token: str,
                                   filter_text: str) -> Page:
        evaluation = await self._succeeded(parent, "parent")
        size = pagination.page_size(page_size, default=20, maximum=100)
        terms = parse_filter(filter_text, ("severity", "applicable", "code"))
        recs = [r for r in await self.store.list_recommendations(evaluation.project, evaluation.evaluation_id)
                if all(_recommendation_matches(r, t.field, t.op, t.value) for t in terms)]
        fingerprint = pagination.request_fingerprint("recommendations", parent, filter_text)
        offset = self._decode(page_token, fingerprint)["o"] if page_token else 0
        token = self._encode({"o": offset + size}, fingerprint) if offset + size < len(recs) else ""
        return Page([(evaluation, r) for r in recs[offset:offset + size]], token)

    async def get_recommendation(self, name: str) -> tuple[Evaluation, Recommendation]:
        project, evaluation_id, rec_id = self._recommendation_of(name)
        evaluation = await self.store.get(project, evaluation_id)
        return evaluation, await self.store.get_recommendation(project, evaluation_id, rec_id)

    async def apply(self, principal: Principal, name: str, tuning_job_id: str, display_name: str,
                    licence_acknowledged: bool, request_id: str, api_key: str) -> tuning_job_pb2.TuningJob:
        """A new tuning job from the one that made the evaluated model, with the changes applied."""
        evaluation, rec = await self.get_recommendation(name)
        metadata = self.metadata(evaluation.project, principal, api_key)
        producer = await self._producing_job(evaluation, metadata) if rec.applicable else ""
        if not rec.applicable or rec.changes is None or not producer:
            raise FailedPrecondition(f"recommendation '{name}' has no parameter changes to apply; "
                                     + (rec.explanation or "read its explanation"), reason="NOT_APPLICABLE")
        if request_id:
            _check_request_id(request_id)
        old = await self.training.get_job(producer, metadata)
        hyperparameters = hyperparameters_pb2.Hyperparameters()
        hyperparameters.CopyFrom(old.resolved_hyperparameters)
        hyperparameters.MergeFrom(json_format.ParseDict(rec.changes.hyperparameters,
                                                        hyperparameters_pb2.Hyperparameters()))
        title = f"{old.display_name or old.name.rsplit('/', 1)[-1]}: {rec.title.lower()}"
        job = tuning_job_pb2.TuningJob(
            base_model=rec.changes.base_model or old.base_model, dataset_version=old.dataset_version, task=old.task,
            method=rec.changes.method or old.method, preset=hyperparameters_pb2.PRESET_CUSTOM,
            hyperparameters=hyperparameters, display_name=(display_name or title)[:200],
            licence_acknowledged=licence_acknowledged or old.licence_acknowledged, labels=dict(old.labels))
        if rec.changes.start_from == StartFrom.TUNED_WEIGHTS and evaluation.model.model_version:
            job.lineage.continued_from_model_version = evaluation.model.model_version
        elif rec.changes.start_from == StartFrom.TUNED_WEIGHTS:
            job.lineage.continued_from_tuning_job = old.name
        else:
            job.lineage.branched_from = old.name
        job.lineage.source_evaluation = evaluation.name
        job.lineage.source_recommendation = name
        created = await self.training.create_job(training_service_pb2.CreateTuningJobRequest(
            parent=f"projects/{evaluation.project}", tuning_job=job, tuning_job_id=tuning_job_id,
            request_id=request_id or str(uuid.uuid4())), metadata)
        await self.store.add_applied_job(evaluation.project, evaluation.evaluation_id, rec.recommendation_id,
                                         created.name)
        await audit(self.store.pool, "recommendation.apply", name, {"tuning_job": created.name},
                    service=self.settings.service_name, principal=principal)
        return created

    async def make_recommendations(self, evaluation: Evaluation) -> list[Recommendation]:
        """Runs the rules on a SUCCEEDED evaluation and stores what they find."""
        project = evaluation.project
        metadata = self.metadata(project)
        baseline = await self._baseline_results(evaluation)
        facts = recommend.Facts(task=evaluation.task, results=evaluation.results, baseline=baseline)
        try:
            version = await self.datasets.get_version(evaluation.dataset_version, metadata)
            facts = dataclasses.replace(facts, quality=version.quality, train_rows=version.split_rows.get("train", 0))
        except NotFound:
            pass
        try:
            producer = await self._producing_job(evaluation, metadata)
        except (NotFound, FailedPrecondition):  # the version is gone: no curves to read
            producer = ""
        if producer:
            job = await self.training.get_job(producer, metadata)
            events = await self.training.job_events(job.name, metadata, "(event:step_metrics OR event:eval_metrics)")
            facts = dataclasses.replace(
                facts, tuned=True, method=job.method or recommend.LORA,
                hyperparameters=json_format.MessageToDict(job.resolved_hyperparameters,
                                                          preserving_proto_field_name=True),
                train_losses=tuple((e.step_metrics.step, e.step_metrics.loss) for e in events
                                   if e.WhichOneof("event") == "step_metrics"),
                eval_losses=tuple((e.eval_metrics.step, e.eval_metrics.loss) for e in events
                                  if e.WhichOneof("event") == "eval_metrics"))
        recs = recommend.recommend(facts)
        await self.store.save_recommendations(project, evaluation.evaluation_id, recs)
        return recs

    async def _producing_job(self, evaluation: Evaluation, metadata: Metadata) -> str:
        """The tuning job that made the evaluated model ("" for a base model, or a version
        registered without one)."""
        if evaluation.model.model_version:
            version = await self.registry.get_version(evaluation.model.model_version, metadata, "name")
            return version.lineage.tuning_job
        return evaluation.model.tuning_job

    # --- compare ------------------------------------------------------------------------------

    async def compare(self, names_: list[str], parent: str, page_size: int, page_token: str,
                      filter_text: str) -> Comparison:
        if len(names_) < 2 or len(names_) > 10:
            raise InvalidArgument.field("evaluations", "give two to ten evaluations")
        if parent:
            project = self.project_of(parent)
            for i, name in enumerate(names_):
                if names.parse(EVALUATION, name, f"evaluations[{i}]")["project"] != project:
                    raise NotFound.resource("evaluation", name)
        evaluations = [await self._succeeded(name, f"evaluations[{i}]") for i, name in enumerate(names_)]
        first = evaluations[0]
        for i, e in enumerate(evaluations[1:], start=1):
            if (e.dataset_version, e.split) != (first.dataset_version, first.split):
                raise InvalidArgument.field(f"evaluations[{i}]",
                                            f"'{e.name}' measured {e.dataset_version} ({e.split}), the first "
                                            f"{first.dataset_version} ({first.split}); compare the same split")
        size = pagination.page_size(page_size, default=50, maximum=1000)
        terms = parse_filter(filter_text, ("change", "reference"))
        outcomes = [await self.store.example_outcomes(e.project, e.evaluation_id) for e in evaluations]
        generation = first.task is not Task.SEQUENCE_CLASSIFICATION
        changes: dict[int, list[int]] = {}
        fixed, regressed = [0] * len(evaluations), [0] * len(evaluations)
        for row, (correct0, score0, _loss0) in outcomes[0].items():
            per = [0] * len(evaluations)
            for i in range(1, len(evaluations)):
                other = outcomes[i].get(row)
                if other is None:
                    continue
                change = _outcome_change(correct0, score0, other[0], other[1], generation)
                per[i] = change
                fixed[i] += change == 1
                regressed[i] += change == 2
            if any(per):
                changes[row] = per
        wanted = {t.value.upper().removeprefix("OUTCOME_CHANGE_") for t in terms if t.field == "change"}
        codes = {"FIXED": 1, "REGRESSED": 2, "CHANGED": 3}
        if wanted - set(codes):
            raise InvalidArgument.field("filter", "change takes OUTCOME_CHANGE_FIXED, _REGRESSED or _CHANGED")
        rows = [r for r, per in changes.items() if not wanted or any(codes[w] in per for w in wanted)]
        rows.sort(key=lambda r: (0 if 2 in changes[r] else 1 if 1 in changes[r] else 2, r))
        fingerprint = pagination.request_fingerprint("compare", names_, filter_text)
        offset = self._decode(page_token, fingerprint)["o"] if page_token else 0
        references = [t.value for t in terms if t.field == "reference"]
        details = [await self.store.examples_by_rows(e.project, e.evaluation_id, rows) for e in evaluations] \
            if references else None
        if references and details is not None:
            rows = [r for r in rows if r in details[0] and details[0][r].reference in references]
        page_rows = rows[offset:offset + size]
        examples = [await self.store.examples_by_rows(e.project, e.evaluation_id, page_rows) for e in evaluations]
        changed = []
        for r in page_rows:
            ref = examples[0].get(r)
            changed.append({
                "row": r, "input": ref.input if ref else "", "reference": ref.reference if ref else "",
                "predictions": [ex[r].prediction if r in ex else "" for ex in examples],
                "correct": [bool(ex[r].correct) if r in ex else False for ex in examples],
                "scores": [float(ex[r].score) if r in ex and ex[r].score is not None else math.nan for ex in examples],
                "changes": changes[r]})
        token = self._encode({"o": offset + size}, fingerprint) if offset + size < len(rows) else ""
        return Comparison(names_, _metric_comparison(evaluations, outcomes), fixed, regressed, changed, token)

    # --- the loop -------------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def start_loop(self) -> None:
        self._loop_task = asyncio.create_task(self._run_loop(), name="evaluation-scheduler")

    async def stop_loop(self) -> None:
        tasks = [t for t in (self._loop_task, *self._background) if t is not None]
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
        while True:
            try:
                await self.reconcile()
                await self.dispatch()
                await self.follow_ups()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("evaluation scheduling pass failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.scheduler_interval_seconds)
            self._wake.clear()

    async def reconcile(self) -> dict[str, str]:
        """Adopt runs that still exist; end evaluations whose run is gone."""
        done: dict[str, str] = {}
        for attempt in await self.store.active():
            status = await self.scheduler.status(attempt.spec.run_name)
            name = attempt.spec.evaluation_name
            if status == RunStatus.RUNNING:
                if attempt.state == JobState.CANCELLING:
                    self._spawn(self._stop_run(attempt.project, attempt.evaluation_id))
                done[name] = "adopted"
                continue
            current = await self.store.get(attempt.project, attempt.evaluation_id)
            if current.state.is_terminal:
                continue
            if current.state == JobState.CANCELLING:
                await self.store.record(attempt.project, attempt.evaluation_id, "state", {
                    "state": JobState.CANCELLED, "message": "cancelled; the run had stopped"},
                    failure=cancelled_by_user())
                done[name] = "cancelled"
                continue
            message = "the evaluation run was lost (the service or the cluster restarted)"
            await self.store.record(attempt.project, attempt.evaluation_id, "state",
                                    {"state": JobState.FAILED, "message": message},
                                    failure=JobFailure(FailureCategory.INFRASTRUCTURE, message,
                                                    "Create the evaluation again.", code="UNAVAILABLE"))
            done[name] = "failed"
        return done

    async def dispatch(self) -> int:
        """Starts queued evaluations while the limits allow, fairly between projects."""
        active = await self.store.active()
        running: dict[str, int] = defaultdict(int)
        for attempt in active:
            running[attempt.project] += 1
        total = len(active)
        queues: dict[str, list[st.Attempt]] = defaultdict(list)
        for attempt in await self.store.queued():
            queues[attempt.project].append(attempt)
        started = 0
        while total < self.settings.max_running_evaluations:
            ready = [p for p, q in queues.items()
                     if q and running[p] < self.settings.max_concurrent_evaluations_per_project]
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
        if not await self.store.record(attempt.project, attempt.evaluation_id, "state", {
                "state": JobState.PREPARING, "message": "loading the model and the data"}):
            return False
        run = Run(attempt.project, attempt.evaluation_id, attempt.spec, self.settings.database_url,
                  str(self.settings.model_cache_path), self.settings.model_cache_bytes,
                  self.settings.otel_exporter_otlp_endpoint or "")
        try:
            await self.scheduler.submit(run)
        except Exception as exc:
            current = await self.store.get(attempt.project, attempt.evaluation_id)
            if current.state == JobState.CANCELLING:  # the cancel stopped the run as it was being submitted
                await self.store.record(attempt.project, attempt.evaluation_id, "state", {
                    "state": JobState.CANCELLED, "message": "cancelled before it started"}, failure=cancelled_by_user())
                return True
            log.exception("could not submit %s", attempt.spec.run_name)
            message = f"the cluster did not accept the run: {exc}"
            await self.store.record(attempt.project, attempt.evaluation_id, "state",
                                    {"state": JobState.FAILED, "message": message},
                                    failure=JobFailure(FailureCategory.INFRASTRUCTURE, message,
                                                    "Try again in a minute.", code="UNAVAILABLE"))
        return True

    async def follow_ups(self) -> None:
        """Recommendations of SUCCEEDED evaluations (once their baseline has ended), and
        ended evaluations of tuned models pushed to the registry."""
        for evaluation in await self.store.pending_recommendations():
            try:
                await self.make_recommendations(evaluation)
            except Exception:
                log.exception("could not make the recommendations of %s; retrying later", evaluation.name)
        await self.push_registry_links()

    async def push_registry_links(self) -> None:
        """The registry links each ended evaluation of a job's output or of a version into
        the versions it measured. While it cannot be reached, pushes wait and retry."""
        loop = asyncio.get_running_loop()
        if not self.registry.available or loop.time() < self._registry_retry_at:
            return
        for evaluation in await self.store.pending_registry_links():
            try:
                linked = await self.registry.link_evaluation(evaluation.project, evaluation.name,
                                                             self.metadata(evaluation.project))
            except (NotFound, InvalidArgument, FailedPrecondition, PermissionDenied) as exc:
                linked = []  # nothing the registry can link (e.g. its version is gone): not retried
                log.warning("%s not linked in the registry: %s", evaluation.name, exc)
            except Exception as exc:  # noqa: BLE001 - the registry is away or failing: retried later
                self._registry_retry_at = loop.time() + self.settings.registry_retry_seconds
                log.warning("could not link %s in the registry (%s); retrying in %.0f s", evaluation.name, exc,
                            self.settings.registry_retry_seconds)
                return
            await self.store.mark_registry_linked(evaluation.project, evaluation.evaluation_id)
            if linked:
                log.info("%s linked into %s", evaluation.name, ", ".join(linked))

    def _encode(self, state: dict, fingerprint: str) -> str:
        return pagination.encode_page_token(self.settings.page_token_secret, state, fingerprint)

    def _decode(self, token: str, fingerprint: str) -> dict:
        return pagination.decode_page_token(self.settings.page_token_secret, token, fingerprint)


# --- helpers ------------------------------------------------------------------------------------


def run_name(project: str, evaluation_id: str) -> str:
    return f"ev-{project}-{evaluation_id}-{uuid.uuid4().hex[:8]}"


def _generated_id() -> str:
    return "ev-" + uuid.uuid4().hex[:12]


def _is_final(event: Event) -> bool:
    return event.kind == "state" and st.parse_state(event.payload.get("state")).is_terminal


def _check_request_id(request_id: str) -> None:
    try:
        uuid.UUID(request_id)
    except ValueError:
        raise InvalidArgument.field("request_id", "must be a UUID") from None


def _summary(violations: list[FieldViolation]) -> str:
    head = "; ".join(f"{v.field}: {v.description}" for v in violations[:3])
    more = f" (and {len(violations) - 3} more)" if len(violations) > 3 else ""
    return f"the evaluation is invalid: {head}{more}"


def _request_violations(request: EvaluationRequest, project: str) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if not request.model.name:
        out.append(FieldViolation("evaluation.model", "set exactly one of tuning_job, model_version or base_model"))
    if request.split and request.split not in SPLITS:
        out.append(FieldViolation("evaluation.split", f"unknown split '{request.split}'; use one of "
                                  + ", ".join(SPLITS)))
    if request.dataset_version:
        try:
            names.parse(DATASET_VERSION, request.dataset_version, "evaluation.dataset_version")
        except InvalidArgument as exc:
            out.extend(exc.violations)
    if len(request.display_name) > 200:
        out.append(FieldViolation("evaluation.display_name", "at most 200 characters"))
    if len(request.labels) > 64:
        out.append(FieldViolation("evaluation.labels", "at most 64 labels"))
    out += [FieldViolation(f"evaluation.labels.{k}", "keys are 1-63 lowercase letters, digits, '_' or '-' starting "
                           "with a letter; values at most 63 characters")
            for k, v in request.labels.items() if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", k) or len(v) > 63]
    for name in request.config_set:
        low, high = CONFIG_LIMITS[name]
        value = getattr(request.config, name)
        if not low <= value <= high:
            out.append(FieldViolation(f"evaluation.config.{name}", f"must be between {low} and {high}"))
    return out


def _check_data(plan: ModelPlan, version: VersionFacts, split: str, request: EvaluationRequest
                ) -> tuple[Task, list[FieldViolation]]:
    """The task both sides agree on, or why they do not."""
    violations: list[FieldViolation] = []
    task = plan.task if plan.task is not Task.UNSPECIFIED else version.task
    if plan.task is not Task.UNSPECIFIED and plan.task != version.task:
        violations.append(FieldViolation(
            "evaluation.dataset_version",
            f"'{version.name}' holds {version.task.name} data but the model was trained for {plan.task.name}; "
            "evaluate it on data of its own task"))
    if plan.supported_tasks and task not in plan.supported_tasks:
        violations.append(FieldViolation(
            "evaluation.base_model", f"{plan.base_model} does not do {task.name} (it does "
            f"{', '.join(t.name for t in plan.supported_tasks)}), the task of '{version.name}'"))
    if split not in version.split_rows or not version.split_rows.get(split):
        have = ", ".join(f"{s} ({n} rows)" for s, n in version.split_rows.items() if n) or "none"
        violations.append(FieldViolation("evaluation.split", f"'{version.name}' has no rows in the {split} split "
                                         f"(splits: {have})"))
    if task is Task.SEQUENCE_CLASSIFICATION and plan.label_names and version.label_names \
            and not set(version.label_names) <= set(plan.label_names):
        unknown = sorted(set(version.label_names) - set(plan.label_names))
        violations.append(FieldViolation("evaluation.dataset_version",
                                         f"the data has classes the model does not know: {', '.join(unknown)}"))
    return task, violations


def _outcome_change(correct0, score0, correct1, score1, generation: bool) -> int:
    """0 nothing, 1 fixed, 2 regressed, 3 changed (mtw.evaluation.v1.OutcomeChange)."""
    if correct0 is not None and correct1 is not None and correct0 != correct1:
        return 1 if correct1 else 2
    if generation and score0 is not None and score1 is not None and abs(score1 - score0) > 0.1:
        return 3
    return 0


def _metric_comparison(evaluations: list[Evaluation], outcomes: list[dict]) -> list:
    names_: dict[str, bool] = {}
    for e in evaluations:
        for m in e.results.metrics:
            names_.setdefault(m.name, m.higher_is_better)
    out = []
    for name, higher in names_.items():
        values = [e.results.value(name) for e in evaluations]
        values = [math.nan if v is None else float(v) for v in values]
        deltas = [v - values[0] for v in values]
        significant = [False] + [_significant(name, outcomes[0], outcomes[i]) for i in range(1, len(evaluations))]
        out.append((name, higher, values, deltas, significant))
    return out


def _significant(name: str, first: dict, other: dict, resamples: int = 1000, seed: int = 42) -> bool:
    """Paired bootstrap on the shared examples: does the 95 % interval of the difference
    exclude 0? Only for metrics that are means of per-example values."""
    index = {"accuracy": 0, "exact_match": 0, "log_loss": 2, "loss": 2}.get(name)
    if index is None:
        return False
    rows = [r for r in first if r in other and first[r][index] is not None and other[r][index] is not None]
    if len(rows) < 2:
        return False
    a = np.array([float(first[r][index]) for r in rows])
    b = np.array([float(other[r][index]) for r in rows])
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(rows), size=(resamples, len(rows)))
    diffs = (b[picks] - a[picks]).mean(axis=1)
    low, high = np.quantile(diffs, [0.025, 0.975])
    return bool(low > 0 or high < 0)


def _recommendation_matches(rec: Recommendation, field: str, op: str, value: str) -> bool:
    if field == "severity":
        found = rec.severity.name == value.upper().removeprefix("SEVERITY_")
    elif field == "applicable":
        found = rec.applicable == (value.lower() == "true")
    else:
        found = rec.code == value.upper()
    return found if op != "!=" else not found


__all__ = ["Comparison", "EvaluationApp", "ExampleResult", "Page"]
