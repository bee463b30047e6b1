"""Protobuf <-> domain objects for the training service, in one place."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from google.protobuf import duration_pb2, timestamp_pb2
from google.rpc import code_pb2, status_pb2

from mtw.common.v1 import job_event_pb2, job_failure_pb2
from mtw.training.v1 import (
    base_model_pb2,
)
from mtw.training.v1 import (
    hyperparameters_pb2 as hp_pb,
)
from mtw.training.v1 import (
    training_service_pb2 as svc_pb,
)
from mtw.training.v1 import (
    tuning_job_event_pb2 as ev_pb,
)
from mtw.training.v1 import (
    tuning_job_pb2 as job_pb,
)
from services.common.jobs import FailureCategory, JobFailure, JobState
from services.training_svc.app import EstimateResult, JobRequest
from services.training_svc.domain import model as m
from services.training_svc.store import parse_state

_SCALARS = ("epochs", "max_steps", "learning_rate", "warmup_ratio", "per_device_batch_size",
            "gradient_accumulation_steps", "max_seq_length", "weight_decay", "seed", "eval_interval_steps",
            "checkpoint_interval_steps", "early_stopping_patience", "early_stopping_threshold",
            "num_workers", "use_gpu", "gradient_checkpointing", "max_grad_norm")


def _timestamp(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def _duration(seconds: float | None) -> duration_pb2.Duration | None:
    if seconds is None:
        return None
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(max(0.0, seconds) * 1e9))
    return d


# --- requests -> domain ----------------------------------------------------------------


def hyperparameters_from_proto(p: hp_pb.Hyperparameters) -> tuple[m.Hyperparameters, set[str]]:
    """The overrides, and the names of the fields that were set."""
    values: dict[str, Any] = {f: getattr(p, f) for f in _SCALARS if p.HasField(f)}
    if p.lr_scheduler:
        values["lr_scheduler"] = m.LrScheduler(p.lr_scheduler)
    if p.precision:
        values["precision"] = m.Precision(p.precision)
    set_fields = set(values)
    if p.HasField("lora"):
        lora = p.lora
        values["lora"] = m.LoraSettings(
            rank=lora.rank if lora.HasField("rank") else None,
            alpha=lora.alpha if lora.HasField("alpha") else None,
            dropout=lora.dropout if lora.HasField("dropout") else None,
            target_modules=tuple(lora.target_modules),
        )
        set_fields.add("lora")
    return m.Hyperparameters(**values), set_fields


def lineage_from_proto(p: job_pb.TuningJobLineage) -> m.Lineage:
    return m.Lineage(
        resumed_from=p.resumed_from, continued_from_tuning_job=p.continued_from_tuning_job,
        continued_from_model_version=p.continued_from_model_version, branched_from=p.branched_from,
        source_evaluation=p.source_evaluation, source_recommendation=p.source_recommendation,
    )


def job_request_from_proto(p: job_pb.TuningJob) -> JobRequest:
    hyperparameters, _ = hyperparameters_from_proto(p.hyperparameters)
    return JobRequest(
        base_model=p.base_model, dataset_version=p.dataset_version, display_name=p.display_name,
        description=p.description, task=m.Task(p.task), method=m.TuningMethod(p.method),
        preset=m.Preset(p.preset), hyperparameters=hyperparameters,
        licence_acknowledged=p.licence_acknowledged, lineage=lineage_from_proto(p.lineage),
        skip_final_evaluation=p.skip_final_evaluation, labels=dict(p.labels),
        register_to_model=p.register_to_model,
    )


# --- domain -> responses ---------------------------------------------------------------


def hyperparameters_to_proto(h: m.Hyperparameters) -> hp_pb.Hyperparameters:
    p = hp_pb.Hyperparameters(lr_scheduler=h.lr_scheduler.value, precision=h.precision.value)
    for name in _SCALARS:
        value = getattr(h, name)
        if value is not None:
            setattr(p, name, value)
    lora = h.lora
    if any(v not in (None, ()) for v in (lora.rank, lora.alpha, lora.dropout, lora.target_modules)):
        p.lora.target_modules.extend(lora.target_modules)
        for name in ("rank", "alpha", "dropout"):
            if getattr(lora, name) is not None:
                setattr(p.lora, name, getattr(lora, name))
    return p


def base_model_to_proto(b: m.BaseModel) -> base_model_pb2.BaseModel:
    p = base_model_pb2.BaseModel(
        name=b.name, display_name=b.display_name, description=b.description, architecture=b.architecture,
        supported_tasks=[t.value for t in b.supported_tasks],
        supported_methods=[x.value for x in b.supported_methods], parameter_count=b.parameter_count,
        context_length=b.context_length, size_bytes=b.size_bytes, licence_name=b.licence_name,
        licence_uri=b.licence_uri, licence_requires_acknowledgement=b.licence_requires_acknowledgement,
        default_lora_target_modules=list(b.default_lora_target_modules), available=b.available,
    )
    if b.is_local:
        p.uri = b.source
    else:
        p.hugging_face_id = b.source
    return p


def failure_to_proto(f: JobFailure) -> job_failure_pb2.JobFailure:
    try:
        code = grpc.StatusCode[f.code].value[0]
    except KeyError:
        code = code_pb2.INTERNAL
    return job_failure_pb2.JobFailure(
        error=status_pb2.Status(code=code, message=f.message), category=f.category.value, hint=f.hint,
    )


def _failure_from_json(value: dict) -> JobFailure:
    return JobFailure(category=FailureCategory(value.get("category", 7)), message=value.get("message", ""),
                        hint=value.get("hint", ""), code=value.get("code", "INTERNAL"))


def metrics_to_proto(x: m.Metrics) -> job_pb.TrainingMetrics:
    p = job_pb.TrainingMetrics(
        step=x.step, epoch=x.epoch, train_loss=x.train_loss or 0.0, learning_rate=x.learning_rate or 0.0,
        samples_per_second=x.samples_per_second or 0.0, eval_step=x.eval_step,
        eval_metrics=dict(x.eval_metrics), best_eval_step=x.best_eval_step,
    )
    if x.eval_loss is not None:
        p.eval_loss = x.eval_loss
    if x.best_eval_loss is not None:
        p.best_eval_loss = x.best_eval_loss
    return p


def job_to_proto(j: m.TuningJob) -> job_pb.TuningJob:
    progress = j.progress
    fraction = min(1.0, progress.step / progress.total_steps) if progress.total_steps else 0.0
    if j.state == JobState.SUCCEEDED:
        fraction = 1.0
    lineage = j.lineage
    p = job_pb.TuningJob(
        name=j.name, display_name=j.display_name, description=j.description, base_model=j.base_model,
        dataset_version=j.dataset_version, task=j.task.value, method=j.method.value, preset=j.preset.value,
        hyperparameters=hyperparameters_to_proto(j.hyperparameters),
        resolved_hyperparameters=hyperparameters_to_proto(j.resolved_hyperparameters),
        licence_acknowledged=j.licence_acknowledged,
        lineage=job_pb.TuningJobLineage(
            resumed_from_step=lineage.resumed_from_step, source_evaluation=lineage.source_evaluation,
            source_recommendation=lineage.source_recommendation),
        skip_final_evaluation=j.skip_final_evaluation, state=j.state.value,
        progress=job_pb.TuningProgress(
            step=progress.step, total_steps=progress.total_steps, epoch=progress.epoch,
            total_epochs=progress.total_epochs, fraction_done=fraction, eta=_duration(progress.eta_seconds),
            elapsed=_duration(progress.elapsed_seconds), message=progress.message),
        latest_metrics=metrics_to_proto(j.latest_metrics), restart_count=j.restart_count,
        evaluation=j.evaluation, create_time=_timestamp(j.create_time), start_time=_timestamp(j.start_time),
        end_time=_timestamp(j.end_time), update_time=_timestamp(j.update_time), labels=j.labels,
        etag=j.etag, creator=j.creator, register_to_model=j.register_to_model, model_version=j.model_version,
        follow_up_error=j.follow_up_error,
    )
    for field in ("resumed_from", "continued_from_tuning_job", "continued_from_model_version", "branched_from"):
        if getattr(lineage, field):
            setattr(p.lineage, field, getattr(lineage, field))
            break
    if j.latest_checkpoint is not None:
        c = j.latest_checkpoint
        p.latest_checkpoint.CopyFrom(job_pb.Checkpoint(step=c.step, epoch=c.epoch, uri=c.uri,
                                                       create_time=_timestamp(c.create_time)))
        if c.eval_loss is not None:
            p.latest_checkpoint.eval_loss = c.eval_loss
    if j.output is not None:
        o = j.output
        p.output.CopyFrom(job_pb.TuningJobOutput(
            uri=o.uri, merged_model_uri=o.merged_model_uri, is_adapter_only=o.is_adapter_only,
            label_names=list(o.label_names), step=o.step, metrics=metrics_to_proto(j.latest_metrics),
            size_bytes=o.size_bytes, trainable_parameter_count=o.trainable_parameter_count))
    if j.failure is not None and j.state in (JobState.FAILED, JobState.CANCELLED):
        p.failure.CopyFrom(failure_to_proto(j.failure))
    return p


_LOG_LEVELS = {"DEBUG": 1, "INFO": 2, "WARNING": 3, "WARN": 3, "ERROR": 4, "CRITICAL": 4}


def event_to_proto(job_name: str, e: m.JobEvent) -> ev_pb.TuningJobEvent:
    p = ev_pb.TuningJobEvent(tuning_job=job_name, sequence_number=e.sequence, time=_timestamp(e.time))
    body = e.payload
    if e.kind == "state":
        change = job_event_pb2.JobStateChange(
            previous_state=parse_state(body.get("previous_state", 0)).value,
            state=parse_state(body["state"]).value, message=body.get("message", ""))
        if body.get("failure"):
            change.failure.CopyFrom(failure_to_proto(_failure_from_json(body["failure"])))
        p.state_change.CopyFrom(change)
    elif e.kind == "step":
        p.step_metrics.CopyFrom(ev_pb.StepMetrics(
            step=int(body.get("step", 0)), total_steps=int(body.get("total_steps", 0)),
            epoch=float(body.get("epoch", 0.0)), loss=float(body.get("loss", 0.0)),
            learning_rate=float(body.get("learning_rate", 0.0)), grad_norm=float(body.get("grad_norm", 0.0)),
            samples_per_second=float(body.get("samples_per_second", 0.0)),
            tokens_per_second=float(body.get("tokens_per_second", 0.0)),
            eta=_duration(body.get("eta_seconds"))))
    elif e.kind == "eval":
        p.eval_metrics.CopyFrom(ev_pb.EvalMetrics(
            step=int(body.get("step", 0)), epoch=float(body.get("epoch", 0.0)),
            split=body.get("split", "validation"), loss=float(body.get("eval_loss", body.get("loss", 0.0))),
            metrics={k: float(v) for k, v in (body.get("metrics") or {}).items()},
            is_best=bool(body.get("is_best", False)),
            evaluations_without_improvement=int(body.get("evaluations_without_improvement", 0))))
    elif e.kind == "checkpoint":
        p.checkpoint_saved.CopyFrom(ev_pb.CheckpointSaved(
            step=int(body.get("step", 0)), epoch=float(body.get("epoch", 0.0)), uri=body.get("uri", ""),
            size_bytes=int(body.get("size_bytes", 0)), is_best=bool(body.get("is_best", False))))
    else:
        p.log.CopyFrom(job_event_pb2.LogMessage(
            level=_LOG_LEVELS.get(str(body.get("level", "INFO")).upper(), 2), message=body.get("message", ""),
            source=body.get("source", "worker/0")))
    return p


def _get(obj: Any, *names: str, default: Any = None) -> Any:
    for name in names:
        if hasattr(obj, name):
            return getattr(obj, name)
    return default


def estimate_to_proto(r: EstimateResult) -> svc_pb.EstimateTuningJobResponse:
    plan, est = r.plan, r.plan.estimate
    memory = _get(est, "memory", "memory_breakdown")
    duration = _get(est, "duration_seconds")
    steps = int(_get(est, "steps", default=0) or 0)
    epochs = _get(est, "epochs", default=plan.resolved.epochs) or 1
    p = svc_pb.EstimateTuningJobResponse(
        preset=plan.preset.value, method=plan.method.value,
        resolved_hyperparameters=hyperparameters_to_proto(plan.resolved),
        train_examples=plan.version.rows("train"),
        train_tokens=int(_get(est, "train_tokens", default=0) or
                         (_get(est, "tokens_to_process", default=0) or 0) // max(1, int(epochs))),
        truncated_examples=int(_get(est, "truncated_examples", default=0) or 0),
        steps_per_epoch=int(_get(est, "steps_per_epoch", default=steps // max(1, int(epochs))) or 0),
        total_steps=steps,
        trainable_parameter_count=int(_get(est, "trainable_parameters", "trainable_parameter_count",
                                           default=0) or 0),
        peak_memory_bytes=int(_get(est, "peak_memory_bytes", default=0) or 0),
        worker_memory_bytes=r.worker_memory_bytes, fits=bool(_get(est, "fits", default=True)),
        estimated_duration=_duration(duration),
        licence_acknowledgement_required=r.licence_acknowledgement_required,
        warnings=list(_get(est, "warnings", default=()) or ()),
    )
    if memory is not None:
        p.memory_breakdown.CopyFrom(svc_pb.MemoryBreakdown(
            weights_bytes=int(_get(memory, "weights_bytes", "weights", default=0)),
            gradients_bytes=int(_get(memory, "gradients_bytes", "gradients", default=0)),
            optimizer_bytes=int(_get(memory, "optimizer_bytes", "optimizer_state_bytes", "optimizer_state",
                                     default=0)),
            activations_bytes=int(_get(memory, "activations_bytes", "activations", default=0)),
            overhead_bytes=int(_get(memory, "overhead_bytes", "overhead", default=0))))
    for s in _get(est, "suggestions", default=()) or ():
        hp = _get(s, "hyperparameters", "overrides", default=m.Hyperparameters())
        method = _get(s, "method", default=None)
        p.alternatives.append(svc_pb.SuggestedSettings(
            explanation=_get(s, "explanation", default=""),
            method=method.value if isinstance(method, m.TuningMethod) else 0,
            hyperparameters=hyperparameters_to_proto(hp),
            peak_memory_bytes=int(_get(s, "peak_memory_bytes", default=0) or 0),
            estimated_duration=_duration(_get(s, "duration_seconds", default=None)),
            fits=bool(_get(s, "fits", default=True))))
    return p
