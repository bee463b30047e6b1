"""Protobuf <-> domain objects for the registry service, in one place."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import json_format, timestamp_pb2
from google.rpc import code_pb2, status_pb2

from mtw.common.v1 import job_failure_pb2
from mtw.registry.v1 import (
    alias_history_pb2,
    model_export_pb2,
    model_version_pb2,
    prediction_pb2,
    registered_model_pb2,
    registry_service_pb2,
)
from mtw.training.v1 import hyperparameters_pb2
from services.registry_svc.app import Downloads
from services.registry_svc.domain.model import (
    AliasEntry,
    ExportDtype,
    ModelExport,
    ModelVersion,
    RegisteredModel,
    Task,
)
from services.registry_svc.domain.prediction import (
    Answer,
    ChatTurn,
    GenerationSettings,
    PredictInput,
    Prediction,
    StreamChunk,
)


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(value)
    return ts


def model_from_proto(p: registered_model_pb2.RegisteredModel) -> RegisteredModel:
    """The caller-settable fields of a RegisteredModel (output fields ignored)."""
    return RegisteredModel(project="", model_id="", display_name=p.display_name, description=p.description,
                           task=Task(p.task), tags=dict(p.tags))


def model_to_proto(m: RegisteredModel) -> registered_model_pb2.RegisteredModel:
    return registered_model_pb2.RegisteredModel(
        name=m.name, display_name=m.display_name, description=m.description, task=m.task.value, tags=m.tags,
        aliases={alias: m.version_name(v) for alias, v in m.aliases.items()},
        latest_version=m.version_name(m.latest_version) if m.latest_version else "",
        version_count=m.version_count, create_time=_ts(m.create_time), update_time=_ts(m.update_time),
        creator=m.creator, etag=m.etag,
    )


def version_to_proto(v: ModelVersion) -> model_version_pb2.ModelVersion:
    a = v.artifacts
    lineage = model_version_pb2.ModelLineage(
        base_model=v.lineage.base_model, dataset_version=v.lineage.dataset_version,
        tuning_job=v.lineage.tuning_job, method=v.lineage.method, evaluations=list(v.lineage.evaluations),
        parent_model_version=v.lineage.parent_model_version,
        hyperparameters=json_format.ParseDict(v.lineage.hyperparameters, hyperparameters_pb2.Hyperparameters(),
                                              ignore_unknown_fields=True),
    )
    return model_version_pb2.ModelVersion(
        name=v.name, version_id=str(v.version), description=v.description, task=v.task.value,
        label_names=list(v.label_names),
        artifacts=model_version_pb2.ModelArtifacts(
            uri=a.uri, size_bytes=a.size_bytes, merged_uri=a.merged_uri, model_card_uri=a.model_card_uri,
            files=[model_version_pb2.ArtifactFile(path=f.path, size_bytes=f.size_bytes, sha256=f.sha256)
                   for f in a.files]),
        is_adapter_only=v.is_adapter_only, base_model=v.base_model, lineage=lineage, metrics=v.metrics,
        model_card=v.model_card, state=v.state.value, aliases=list(v.aliases), tags=v.tags,
        create_time=_ts(v.create_time), update_time=_ts(v.update_time), delete_time=_ts(v.delete_time),
        creator=v.creator, etag=v.etag,
    )


def card_to_proto(v: ModelVersion) -> model_version_pb2.ModelCard:
    return model_version_pb2.ModelCard(model_version=v.name, markdown=v.model_card, update_time=_ts(v.card_time))


def alias_entry_to_proto(e: AliasEntry) -> alias_history_pb2.AliasHistoryEntry:
    model = f"projects/{e.project}/models/{e.model_id}"
    return alias_history_pb2.AliasHistoryEntry(
        registered_model=model, alias=e.alias, action=e.action.value,
        model_version=f"{model}/versions/{e.version}" if e.version else "",
        previous_model_version=f"{model}/versions/{e.previous_version}" if e.previous_version else "",
        reason=e.reason, actor=e.actor, time=_ts(e.time),
    )


def export_to_proto(x: ModelExport) -> model_export_pb2.ModelExport:
    out = model_export_pb2.ModelExport(
        name=x.name, dtype=x.dtype.value, state=x.state.value, uri=x.uri, size_bytes=x.size_bytes,
        create_time=_ts(x.create_time), end_time=_ts(x.end_time),
    )
    if x.failure:
        out.failure.CopyFrom(job_failure_pb2.JobFailure(
            category=job_failure_pb2.FailureCategory.Value("FAILURE_CATEGORY_" + x.failure.get("category", "INTERNAL")),
            error=status_pb2.Status(code=code_pb2.FAILED_PRECONDITION, message=x.failure.get("message", "")),
            hint=x.failure.get("hint", "")))
    if x.verification is not None:
        v = x.verification
        out.verification.CopyFrom(model_export_pb2.ExportVerification(
            example_count=v.example_count, matching_count=v.matching_count,
            max_abs_difference=v.max_abs_difference, passed=v.passed))
    return out


def dtype_from_proto(value: int) -> ExportDtype:
    return ExportDtype(value)


def downloads_to_proto(d: Downloads) -> registry_service_pb2.GetDownloadUrlsResponse:
    out = registry_service_pb2.GetDownloadUrlsResponse(
        model_version=d.version.name, expire_time=_ts(d.expire_time),
        files=[registry_service_pb2.DownloadUrl(path=f.path, url=f.url, size_bytes=f.size_bytes, sha256=f.sha256)
               for f in d.files])
    if d.archive is not None:
        out.archive.CopyFrom(registry_service_pb2.DownloadUrl(path=d.archive.path, url=d.archive.url,
                                                              size_bytes=d.archive.size_bytes))
    return out


# --- prediction ------------------------------------------------------------------------------


def input_from_proto(p: prediction_pb2.PredictInput) -> PredictInput:
    kind = p.WhichOneof("input")
    if kind == "text":
        return PredictInput(text=p.text)
    if kind == "conversation":
        return PredictInput(conversation=tuple(ChatTurn(m.role, m.content) for m in p.conversation.messages))
    return PredictInput()


def generation_from_proto(p: prediction_pb2.GenerationConfig) -> GenerationSettings:
    return GenerationSettings(
        max_new_tokens=p.max_new_tokens or 128,
        temperature=p.temperature if p.HasField("temperature") else 0.7,
        top_p=p.top_p if p.HasField("top_p") else 1.0,
        top_k=p.top_k, stop=tuple(p.stop_sequences), seed=p.seed if p.HasField("seed") else None,
    )


def prediction_to_proto(p: Prediction) -> prediction_pb2.Prediction:
    out = prediction_pb2.Prediction(input_truncated=p.input_truncated)
    if p.classification is not None:
        c = p.classification
        out.classification.CopyFrom(prediction_pb2.ClassificationResult(
            label=c.label, score=c.score,
            scores=[prediction_pb2.LabelScore(label=s.label, score=s.score) for s in c.scores]))
    elif p.generation is not None:
        g = p.generation
        out.generation.CopyFrom(prediction_pb2.GenerationResult(
            text=g.text, finish_reason=g.finish_reason.value, input_token_count=g.input_token_count,
            output_token_count=g.output_token_count))
    return out


def answer_to_proto(a: Answer) -> registry_service_pb2.PredictResponse:
    return registry_service_pb2.PredictResponse(model_version=a.model_version,
                                                predictions=[prediction_to_proto(p) for p in a.predictions])


def chunk_to_proto(version: str, c: StreamChunk) -> registry_service_pb2.StreamPredictResponse:
    return registry_service_pb2.StreamPredictResponse(
        model_version=version, text_delta=c.text_delta, finish_reason=c.finish_reason.value,
        input_token_count=c.input_token_count, output_token_count=c.output_token_count)
