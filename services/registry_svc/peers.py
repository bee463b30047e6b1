"""What the registry asks of the other services, over gRPC (DESIGN: never their tables).

Calls go out with the caller's own API key, or — when the caller is another MTW service
(the training service registering a job's output) — with the internal token acting for
the caller's project. Answers come back as plain dataclasses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import json_format

from mtw.dataset.v1 import dataset_service_pb2, dataset_service_pb2_grpc
from mtw.evaluation.v1 import evaluation_service_pb2, evaluation_service_pb2_grpc
from mtw.training.v1 import training_service_pb2, training_service_pb2_grpc
from services.common.auth import Principal, service_metadata
from services.common.errors import FailedPrecondition, Unavailable
from services.common.peers import Channels, ask
from services.common.task import Task

log = logging.getLogger(__name__)

SERVICE = "registry"
SUCCEEDED = 4  # mtw.common.v1.JobState


def call_metadata(principal: Principal, api_key: str, internal_token: str) -> tuple[tuple[str, str], ...]:
    """Credentials for a call on the caller's behalf."""
    if principal.is_service or not api_key:
        if not internal_token:
            raise Unavailable("this registry has no INTERNAL_TOKEN, so it cannot act for a service caller",
                              reason="INTERNAL_TOKEN_MISSING")
        return service_metadata(internal_token, principal.project, SERVICE)
    return (("authorization", f"Bearer {api_key}"),)


@dataclass(frozen=True)
class JobOutput:
    uri: str
    is_adapter_only: bool
    label_names: tuple[str, ...]
    step: int
    metrics: dict[str, float]
    trainable_parameter_count: int


@dataclass(frozen=True)
class TuningJobInfo:
    name: str
    display_name: str
    state: int
    state_name: str
    task: Task
    base_model: str
    dataset_version: str
    method: int
    resolved_hyperparameters: dict[str, Any]
    evaluation: str
    continued_from_model_version: str
    output: JobOutput | None


@dataclass(frozen=True)
class BaseModelInfo:
    name: str
    display_name: str
    source: str  # local folder, s3:// URI or Hugging Face id
    architecture: str
    parameter_count: int
    context_length: int
    licence_name: str
    licence_uri: str


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    task: Task
    label_names: tuple[str, ...]
    split_rows: dict[str, int]
    row_count: int
    label_distribution: tuple[tuple[str, int], ...]
    warnings: tuple[str, ...]
    exact_duplicate_rows: int
    near_duplicate_rows: int
    cross_split_duplicate_rows: int
    pii_rows: int
    mean_tokens: float


@dataclass(frozen=True)
class EvaluationInfo:
    name: str
    state: int
    dataset_version: str
    split: str
    summary: str
    metrics: dict[str, float]
    baseline: dict[str, float] = field(default_factory=dict)
    higher_is_better: dict[str, bool] = field(default_factory=dict)
    create_time: float = 0.0
    tuning_job: str = ""  # what it measured: a job's output, or a model version
    model_version: str = ""


def _metrics(m: Any) -> dict[str, float]:
    out = {}
    if m.HasField("eval_loss"):
        out["eval_loss"] = m.eval_loss
    out.update({f"eval_{k}" if not k.startswith("eval_") else k: v for k, v in m.eval_metrics.items()})
    if m.train_loss:
        out["train_loss"] = m.train_loss
    return out


class Peers:
    """Channels to the training, dataset and evaluation services (opened once)."""

    def __init__(self, training: str, dataset: str, evaluation: str) -> None:
        self._channels = Channels()
        self._training = training_service_pb2_grpc.TuningServiceStub(self._channels.get(training))
        self._dataset = dataset_service_pb2_grpc.DatasetServiceStub(self._channels.get(dataset))
        self._evaluation = (evaluation_service_pb2_grpc.EvaluationServiceStub(self._channels.get(evaluation))
                            if evaluation else None)

    async def close(self) -> None:
        await self._channels.close()

    async def tuning_job(self, name: str, metadata, field_name: str) -> TuningJobInfo:
        job = await ask(
            self._training.GetTuningJob(training_service_pb2.GetTuningJobRequest(name=name), metadata=metadata,
                                        timeout=30),
            service="training", kind="tuning job", name=name, field=field_name)
        output = None
        if job.HasField("output") and job.output.uri:
            o = job.output
            output = JobOutput(uri=o.uri, is_adapter_only=o.is_adapter_only, label_names=tuple(o.label_names),
                               step=o.step, metrics=_metrics(o.metrics),
                               trainable_parameter_count=o.trainable_parameter_count)
        from mtw.common.v1 import job_state_pb2

        return TuningJobInfo(
            name=job.name, display_name=job.display_name, state=job.state,
            state_name=job_state_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_"), task=Task(job.task),
            base_model=job.base_model, dataset_version=job.dataset_version, method=job.method,
            resolved_hyperparameters=json_format.MessageToDict(job.resolved_hyperparameters,
                                                              preserving_proto_field_name=True),
            evaluation=job.evaluation,
            continued_from_model_version=job.lineage.continued_from_model_version, output=output,
        )

    async def base_model(self, name: str, metadata) -> BaseModelInfo:
        b = await ask(
            self._training.GetBaseModel(training_service_pb2.GetBaseModelRequest(name=name), metadata=metadata,
                                        timeout=30),
            service="training", kind="base model", name=name, field="base_model")
        return BaseModelInfo(
            name=b.name, display_name=b.display_name, source=b.uri or b.hugging_face_id,
            architecture=b.architecture, parameter_count=b.parameter_count, context_length=b.context_length,
            licence_name=b.licence_name, licence_uri=b.licence_uri,
        )

    async def dataset_version(self, name: str, metadata) -> DatasetInfo:
        v = await ask(
            self._dataset.GetDatasetVersion(dataset_service_pb2.GetDatasetVersionRequest(name=name),
                                            metadata=metadata, timeout=30),
            service="dataset", kind="dataset version", name=name, field="dataset_version")
        r = v.quality_report
        return DatasetInfo(
            name=v.name, task=Task(v.task), label_names=tuple(v.label_names),
            split_rows={s.name: s.row_count for s in v.splits}, row_count=r.row_count,
            label_distribution=tuple((c.label, c.count) for c in r.label_distribution),
            warnings=tuple(w.message for w in r.warnings),
            exact_duplicate_rows=r.exact_duplicate_rows, near_duplicate_rows=r.near_duplicate_rows,
            cross_split_duplicate_rows=r.cross_split_duplicate_rows,
            pii_rows=sum(p.row_count for p in r.pii),
            mean_tokens=r.token_length.mean if r.token_length.rows_measured else 0.0,
        )

    async def examples(self, dataset_version: str, count: int, metadata) -> tuple[str, ...]:
        """A few input texts of the test split (else validation, else train)."""
        if count <= 0:
            return ()
        for split in ("test", "validation", "train"):
            try:
                page = await self._dataset.PreviewDatasetVersion(
                    dataset_service_pb2.PreviewDatasetVersionRequest(name=dataset_version, split=split,
                                                                     page_size=count),
                    metadata=metadata, timeout=30)
            except grpc.aio.AioRpcError as exc:
                log.info("no %s examples from %s: %s", split, dataset_version, exc.details())
                continue
            texts = [_example_text(json_format.MessageToDict(row)) for row in page.rows]
            texts = [t for t in texts if t]
            if texts:
                return tuple(texts[:count])
        return ()

    async def evaluation(self, name: str, metadata) -> EvaluationInfo:
        """One evaluation (NotFound when there is none of that name in the project)."""
        if self._evaluation is None:
            raise FailedPrecondition("linking evaluations needs the evaluation service, which this deployment "
                                     "does not have", reason="EVALUATION_SERVICE_UNAVAILABLE")
        found = await ask(self._evaluation.GetEvaluation(
            evaluation_service_pb2.GetEvaluationRequest(name=name), metadata=metadata, timeout=15),
            service="evaluation", kind="evaluation", name=name, field="evaluation")
        return _evaluation(found)

    async def evaluations(self, project: str, tuning_job: str, extra: tuple[str, ...],
                          metadata) -> list[EvaluationInfo]:
        """Evaluations of the job's output plus ``extra`` ones, oldest first. The evaluation
        service is optional: when it is absent or down, nothing is linked."""
        if self._evaluation is None:
            return []
        found: dict[str, EvaluationInfo] = {}
        try:
            token = ""
            while True:
                page = await self._evaluation.ListEvaluations(
                    evaluation_service_pb2.ListEvaluationsRequest(
                        parent=f"projects/{project}", filter=f'tuning_job="{tuning_job}"', page_size=100,
                        page_token=token),
                    metadata=metadata, timeout=15)
                for e in page.evaluations:
                    found[e.name] = _evaluation(e)
                token = page.next_page_token
                if not token:
                    break
        except grpc.aio.AioRpcError as exc:
            log.warning("evaluations of %s not linked (%s: %s)", tuning_job, exc.code().name, exc.details())
        for name in extra:
            if name not in found:
                found[name] = await self.evaluation(name, metadata)
        return sorted(found.values(), key=lambda e: e.create_time)


def _example_text(row: dict[str, Any]) -> str:
    if isinstance(row.get("text"), str):
        return row["text"]
    if isinstance(row.get("prompt"), str):
        return row["prompt"]
    messages = row.get("messages")
    if isinstance(messages, list):
        users = [m.get("content", "") for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        return users[0] if users else ""
    return ""


def _evaluation(e: Any) -> EvaluationInfo:
    metrics = {m.name: m.value for m in e.results.metrics}
    baseline = {m.name: m.baseline_value for m in e.results.metrics if m.HasField("baseline_value")}
    return EvaluationInfo(
        name=e.name, state=e.state, dataset_version=e.dataset_version, split=e.split or "test",
        summary=e.results.summary, metrics=metrics, baseline=baseline,
        higher_is_better={m.name: m.higher_is_better for m in e.results.metrics},
        create_time=e.create_time.seconds + e.create_time.nanos / 1e9,
        tuning_job=e.tuning_job, model_version=e.model_version,
    )
