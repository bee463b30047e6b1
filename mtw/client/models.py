"""``client.models``: wizard step 4 — registered models, versions, aliases, cards,
exports, downloads and predictions (registry service).

A model may be given by id (``genres``, expanded with the client's project) or full name;
a version as ``genres@3``, ``genres@production``, ``genres/versions/3``, a full name, or a
returned ``ModelVersion``. Resources come back as the service's protobuf messages;
predictions as typed results (:class:`Classification`, :class:`Generation`).
"""

from __future__ import annotations

import hashlib
import re
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import duration_pb2, field_mask_pb2

from mtw.client import names
from mtw.client.pagination import aiterate_pages, iterate_pages
from mtw.client.transport import USE_DEFAULT, AsyncTransport, SyncTransport, aend_stream, end_stream
from mtw.errors import MtwError, from_rpc_error
from mtw.registry.v1 import (
    alias_history_pb2,
    model_export_pb2,
    model_version_pb2,
    prediction_pb2,
    registered_model_pb2,
)
from mtw.registry.v1 import registry_service_pb2 as svc
from mtw.registry.v1.registry_service_pb2_grpc import RegistryServiceStub

SERVICE = "registry"

RegisteredModel = registered_model_pb2.RegisteredModel
ModelVersion = model_version_pb2.ModelVersion
ModelExport = model_export_pb2.ModelExport
AliasHistoryEntry = alias_history_pb2.AliasHistoryEntry
EXPORT_TERMINAL = frozenset({4, 5})  # SUCCEEDED, FAILED

_ID = r"[A-Za-z0-9][A-Za-z0-9_-]*"
_MODEL = re.compile(rf"(?:projects/(?P<project>{_ID})/models/)?(?P<model>{_ID})")
_VERSION = re.compile(rf"(?:projects/(?P<project>{_ID})/models/)?(?P<model>{_ID})(?:/versions/|@)(?P<ref>{_ID})")


# --- names ---------------------------------------------------------------------------------


def model_name(ref: Any, project: str) -> str:
    """``genres`` → ``projects/{project}/models/genres``; full names pass through."""
    text = names._as_str(ref)
    m = _MODEL.fullmatch(text)
    if m is None:
        raise names.InvalidResourceName(f"{text!r} is not a model id or projects/P/models/M")
    return f"projects/{m['project'] or project}/models/{m['model']}"


def version_name(ref: Any, project: str) -> str:
    """A version reference as the service takes it: ``projects/p/models/m@production`` or
    ``projects/p/models/m/versions/3``."""
    text = names._as_str(ref)
    m = _VERSION.fullmatch(text)
    if m is None:
        raise names.InvalidResourceName(
            f"{text!r} is not a model version: use MODEL@ALIAS, MODEL@N, MODEL/versions/N or a full name")
    base = f"projects/{m['project'] or project}/models/{m['model']}"
    return f"{base}/versions/{m['ref']}" if m["ref"].isdigit() else f"{base}@{m['ref']}"


def short_version(name: str) -> str:
    """``projects/p/models/m/versions/3`` → ``m@3`` for display."""
    m = _VERSION.fullmatch(name or "")
    return f"{m['model']}@{m['ref']}" if m else name


# --- typed prediction results -----------------------------------------------------------------


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True)
class Classification:
    """A classifier's answer: the most likely label, its probability, and the ranked scores."""

    label: str
    score: float
    scores: list[LabelScore] = field(default_factory=list)


@dataclass(frozen=True)
class Generation:
    """A generative model's answer."""

    text: str
    finish_reason: str  # END_OF_SEQUENCE, MAX_TOKENS, STOP_SEQUENCE, CONTEXT_LENGTH
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True)
class PredictResult:
    model_version: str  # the version that answered (an alias resolved)
    predictions: list[Classification | Generation]


@dataclass(frozen=True)
class TextDelta:
    """One message of a streamed generation; the last one has ``finish_reason``."""

    text: str
    model_version: str = ""
    finish_reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0


def _finish(value: int) -> str:
    return prediction_pb2.FinishReason.Name(value).removeprefix("FINISH_REASON_") if value else ""


def _result(p: prediction_pb2.Prediction) -> Classification | Generation:
    if p.WhichOneof("result") == "classification":
        c = p.classification
        return Classification(c.label, c.score, [LabelScore(s.label, s.score) for s in c.scores])
    g = p.generation
    return Generation(g.text, _finish(g.finish_reason), g.input_token_count, g.output_token_count)


def _delta(m: svc.StreamPredictResponse) -> TextDelta:
    return TextDelta(m.text_delta, m.model_version, _finish(m.finish_reason), m.input_token_count,
                     m.output_token_count)


Input = str | Sequence[Mapping[str, str]]  # text, or a conversation [{"role": …, "content": …}]


def _input(value: Input) -> prediction_pb2.PredictInput:
    if isinstance(value, str):
        return prediction_pb2.PredictInput(text=value)
    return prediction_pb2.PredictInput(conversation=prediction_pb2.ChatConversation(
        messages=[prediction_pb2.ChatMessage(role=m["role"], content=m["content"]) for m in value]))


def generation_config(max_new_tokens: int | None = None, temperature: float | None = None,
                      top_p: float | None = None, top_k: int | None = None, stop: Sequence[str] | None = None,
                      seed: int | None = None) -> prediction_pb2.GenerationConfig:
    config = prediction_pb2.GenerationConfig(max_new_tokens=max_new_tokens or 0, top_k=top_k or 0,
                                             stop_sequences=list(stop or ()))
    if temperature is not None:
        config.temperature = temperature
    if top_p is not None:
        config.top_p = top_p
    if seed is not None:
        config.seed = seed
    return config


class _Requests:
    """Request messages, shared by the sync and async resources."""

    def __init__(self, project: str) -> None:
        self.project = project

    def model(self, ref: Any) -> str:
        return model_name(ref, self.project)

    def version(self, ref: Any) -> str:
        return version_name(ref, self.project)

    def parent(self, project: str | None) -> str:
        return names.project_name(project or self.project)

    def create(self, model_id: str, display_name: str, description: str, tags: Mapping[str, str] | None,
               project: str | None) -> svc.CreateRegisteredModelRequest:
        return svc.CreateRegisteredModelRequest(
            parent=self.parent(project), registered_model_id=model_id,
            registered_model=RegisteredModel(display_name=display_name, description=description, tags=dict(tags or {})))

    def update(self, model: Any, etag: str, **values: Any) -> svc.UpdateRegisteredModelRequest:
        given = {k: v for k, v in values.items() if v is not None}
        return svc.UpdateRegisteredModelRequest(
            registered_model=RegisteredModel(name=self.model(model), etag=etag, **given),
            update_mask=field_mask_pb2.FieldMask(paths=sorted(given)))

    def register(self, model: Any, tuning_job: Any, description: str, tags: Mapping[str, str] | None,
                 evaluations: Sequence[str]) -> svc.CreateModelVersionRequest:
        job = names._as_str(tuning_job)
        if not job.startswith("projects/"):
            job = f"projects/{self.project}/tuningJobs/{job}"
        return svc.CreateModelVersionRequest(parent=self.model(model), tuning_job=job, description=description,
                                             tags=dict(tags or {}), evaluations=list(evaluations),
                                             request_id=str(uuid.uuid4()))

    def update_version(self, version: Any, etag: str, **values: Any) -> svc.UpdateModelVersionRequest:
        given = {k: v for k, v in values.items() if v is not None}
        return svc.UpdateModelVersionRequest(
            model_version=ModelVersion(name=self.version(version), etag=etag, **given),
            update_mask=field_mask_pb2.FieldMask(paths=sorted(given)))

    def predict(self, version: Any, inputs: Input | Sequence[Input], top_k: int,
                config: prediction_pb2.GenerationConfig) -> svc.PredictRequest:
        many = inputs if _is_many(inputs) else [inputs]
        return svc.PredictRequest(name=self.version(version), inputs=[_input(i) for i in many], top_k=top_k,
                                  generation_config=config)

    def downloads(self, version: Any, merged: bool, archive: bool, ttl: timedelta | None) -> svc.GetDownloadUrlsRequest:
        req = svc.GetDownloadUrlsRequest(name=self.version(version), include_archive=archive,
                                         kind=svc.ARTIFACT_KIND_MERGED if merged else svc.ARTIFACT_KIND_TRAINED)
        if ttl is not None:
            req.ttl.CopyFrom(duration_pb2.Duration(seconds=int(ttl.total_seconds())))
        return req


def _is_many(inputs: Any) -> bool:
    return isinstance(inputs, list | tuple) and (not inputs or not isinstance(inputs[0], Mapping))


def download_files(urls: svc.GetDownloadUrlsResponse, target: Path, timeout: float = 300) -> Path:
    """Fetches every file of a GetDownloadUrls answer into ``target``, checking sizes and SHA-256."""
    target.mkdir(parents=True, exist_ok=True)
    for f in urls.files:
        path = target / f.path
        if ".." in Path(f.path).parts:
            raise MtwError(f"refusing to write {f.path!r} outside {target}")
        path.parent.mkdir(parents=True, exist_ok=True)
        digest = hashlib.sha256()
        with urllib.request.urlopen(f.url, timeout=timeout) as response, open(path, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if path.stat().st_size != f.size_bytes or (f.sha256 and digest.hexdigest() != f.sha256):
            raise MtwError(f"{f.path} did not download intact; try again")
    return target


class ModelsResource:
    """Registered models and their versions (sync). Reached as ``client.models``."""

    def __init__(self, transport: SyncTransport, project: str) -> None:
        self._t = transport
        self._r = _Requests(project)

    @property
    def _stub(self) -> RegistryServiceStub:
        return self._t.stub(SERVICE, RegistryServiceStub)

    def _call(self, method: Any, request: Any, idempotent: bool = True, timeout: Any = USE_DEFAULT) -> Any:
        return self._t.call(method, request, idempotent=idempotent, timeout=timeout)

    # -- registered models

    def create(self, model_id: str = "", display_name: str = "", description: str = "",
               tags: Mapping[str, str] | None = None, project: str | None = None) -> RegisteredModel:
        return self._call(self._stub.CreateRegisteredModel,
                          self._r.create(model_id, display_name, description, tags, project), idempotent=False)

    def get(self, model: Any) -> RegisteredModel:
        return self._call(self._stub.GetRegisteredModel, svc.GetRegisteredModelRequest(name=self._r.model(model)))

    def list(self, *, filter: str = "", page_size: int | None = None, limit: int | None = None,
             project: str | None = None) -> Iterator[RegisteredModel]:
        parent = self._r.parent(project)
        return iterate_pages(lambda token: self._call(self._stub.ListRegisteredModels, svc.ListRegisteredModelsRequest(
            parent=parent, filter=filter, page_size=page_size or 0, page_token=token)), "registered_models", limit=limit)

    def update(self, model: Any, *, display_name: str | None = None, description: str | None = None,
               tags: Mapping[str, str] | None = None, etag: str = "") -> RegisteredModel:
        req = self._r.update(model, etag, display_name=display_name, description=description,
                             tags=dict(tags) if tags is not None else None)
        return self._call(self._stub.UpdateRegisteredModel, req)

    def delete(self, model: Any, *, force: bool = False, etag: str = "") -> None:
        self._call(self._stub.DeleteRegisteredModel,
                   svc.DeleteRegisteredModelRequest(name=self._r.model(model), force=force, etag=etag))

    # -- versions

    def register(self, model: Any, tuning_job: Any, *, description: str = "", tags: Mapping[str, str] | None = None,
                 evaluations: Sequence[str] = (), timeout: Any = 300) -> ModelVersion:
        """The SUCCEEDED job's output as the model's next version (safe to retry: one request id)."""
        return self._call(self._stub.CreateModelVersion,
                          self._r.register(model, tuning_job, description, tags, evaluations), timeout=timeout)

    def version(self, ref: Any) -> ModelVersion:
        return self._call(self._stub.GetModelVersion, svc.GetModelVersionRequest(name=self._r.version(ref)))

    def versions(self, model: Any, *, filter: str = "", page_size: int | None = None,
                 limit: int | None = None) -> Iterator[ModelVersion]:
        """Newest first; ``filter`` e.g. ``aliases:production`` or ``tags.approved="yes"``."""
        parent = self._r.model(model)
        return iterate_pages(lambda token: self._call(self._stub.ListModelVersions, svc.ListModelVersionsRequest(
            parent=parent, filter=filter, page_size=page_size or 0, page_token=token)), "model_versions", limit=limit)

    def update_version(self, ref: Any, *, description: str | None = None, tags: Mapping[str, str] | None = None,
                       etag: str = "") -> ModelVersion:
        req = self._r.update_version(ref, etag, description=description, tags=dict(tags) if tags is not None else None)
        return self._call(self._stub.UpdateModelVersion, req)

    def delete_version(self, ref: Any, *, etag: str = "") -> ModelVersion:
        return self._call(self._stub.DeleteModelVersion,
                          svc.DeleteModelVersionRequest(name=self._r.version(ref), etag=etag))

    def card(self, ref: Any) -> str:
        """The version's model card (Markdown with YAML front matter)."""
        return self._call(self._stub.GetModelCard, svc.GetModelCardRequest(name=self._r.version(ref))).markdown

    # -- aliases

    def set_alias(self, model: Any, alias: str, version: Any, *, reason: str = "", etag: str = "") -> RegisteredModel:
        """Point ``alias`` at ``version`` (a number, another alias or a version name)."""
        target = str(version) if isinstance(version, int) else names._as_str(version)
        return self._call(self._stub.SetAlias, svc.SetAliasRequest(
            registered_model=self._r.model(model), alias=alias, model_version=target, reason=reason, etag=etag))

    def delete_alias(self, model: Any, alias: str, *, reason: str = "", etag: str = "") -> RegisteredModel:
        return self._call(self._stub.DeleteAlias, svc.DeleteAliasRequest(
            registered_model=self._r.model(model), alias=alias, reason=reason, etag=etag))

    def rollback_alias(self, model: Any, alias: str, *, reason: str = "", etag: str = "") -> RegisteredModel:
        return self._call(self._stub.RollbackAlias, svc.RollbackAliasRequest(
            registered_model=self._r.model(model), alias=alias, reason=reason, etag=etag))

    def alias_history(self, model: Any, *, filter: str = "", limit: int | None = None) -> Iterator[AliasHistoryEntry]:
        parent = self._r.model(model)
        return iterate_pages(lambda token: self._call(self._stub.ListAliasHistory, svc.ListAliasHistoryRequest(
            parent=parent, filter=filter, page_token=token)), "entries", limit=limit)

    # -- exports and downloads

    def export(self, ref: Any, *, dtype: str = "", wait: bool = True, timeout: float = 600) -> ModelExport:
        """Start (or find) the merged export; with ``wait``, follow it until it ends."""
        value = model_export_pb2.ExportDtype.Value(f"EXPORT_DTYPE_{dtype.upper()}") if dtype else 0
        export = self._call(self._stub.ExportModelVersion,
                            svc.ExportModelVersionRequest(name=self._r.version(ref), dtype=value))
        deadline = time.monotonic() + timeout
        while wait and export.state not in EXPORT_TERMINAL and time.monotonic() < deadline:
            time.sleep(0.5)
            export = self._call(self._stub.GetModelExport, svc.GetModelExportRequest(name=export.name))
        return export

    def download_urls(self, ref: Any, *, merged: bool = False, archive: bool = False,
                      ttl: timedelta | None = None) -> svc.GetDownloadUrlsResponse:
        return self._call(self._stub.GetDownloadUrls, self._r.downloads(ref, merged, archive, ttl))

    def download(self, ref: Any, target: str | Path, *, merged: bool = False) -> Path:
        """The version's folder into ``target``, each file checked; loadable with transformers/peft."""
        return download_files(self.download_urls(ref, merged=merged), Path(target))

    # -- predictions

    def predict(self, ref: Any, inputs: Input | Sequence[Input], *, top_k: int = 0,
                timeout: Any = USE_DEFAULT, **generation: Any) -> PredictResult:
        """One input or a list; generation settings as keywords (``max_new_tokens``, ``temperature``,
        ``top_p``, ``top_k``, ``stop``, ``seed``)."""
        req = self._r.predict(ref, inputs, top_k, generation_config(**generation))
        answer = self._call(self._stub.Predict, req, timeout=timeout)
        return PredictResult(answer.model_version, [_result(p) for p in answer.predictions])

    def stream(self, ref: Any, text: Input, **generation: Any) -> Iterator[TextDelta]:
        """Generated text as it is produced."""
        call = self._stub.StreamPredict(svc.StreamPredictRequest(
            name=self._r.version(ref), input=_input(text), generation_config=generation_config(**generation)))
        try:
            for message in call:
                yield _delta(message)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            end_stream(call)


class AsyncModelsResource:
    """The grpc.aio twin of :class:`ModelsResource` (``AsyncClient.models``)."""

    def __init__(self, transport: AsyncTransport, project: str) -> None:
        self._t = transport
        self._r = _Requests(project)

    @property
    def _stub(self) -> RegistryServiceStub:
        return self._t.stub(SERVICE, RegistryServiceStub)

    async def _call(self, method: Any, request: Any, idempotent: bool = True, timeout: Any = USE_DEFAULT) -> Any:
        return await self._t.call(method, request, idempotent=idempotent, timeout=timeout)

    async def get(self, model: Any) -> RegisteredModel:
        return await self._call(self._stub.GetRegisteredModel, svc.GetRegisteredModelRequest(name=self._r.model(model)))

    def list(self, *, filter: str = "", limit: int | None = None, project: str | None = None
             ) -> AsyncIterator[RegisteredModel]:
        parent = self._r.parent(project)
        return aiterate_pages(lambda token: self._call(self._stub.ListRegisteredModels, svc.ListRegisteredModelsRequest(
            parent=parent, filter=filter, page_token=token)), "registered_models", limit=limit)

    async def register(self, model: Any, tuning_job: Any, *, description: str = "",
                       tags: Mapping[str, str] | None = None, evaluations: Sequence[str] = (),
                       timeout: Any = 300) -> ModelVersion:
        return await self._call(self._stub.CreateModelVersion,
                                self._r.register(model, tuning_job, description, tags, evaluations), timeout=timeout)

    async def version(self, ref: Any) -> ModelVersion:
        return await self._call(self._stub.GetModelVersion, svc.GetModelVersionRequest(name=self._r.version(ref)))

    def versions(self, model: Any, *, filter: str = "", limit: int | None = None) -> AsyncIterator[ModelVersion]:
        parent = self._r.model(model)
        return aiterate_pages(lambda token: self._call(self._stub.ListModelVersions, svc.ListModelVersionsRequest(
            parent=parent, filter=filter, page_token=token)), "model_versions", limit=limit)

    async def set_alias(self, model: Any, alias: str, version: Any, *, reason: str = "",
                        etag: str = "") -> RegisteredModel:
        target = str(version) if isinstance(version, int) else names._as_str(version)
        return await self._call(self._stub.SetAlias, svc.SetAliasRequest(
            registered_model=self._r.model(model), alias=alias, model_version=target, reason=reason, etag=etag))

    async def card(self, ref: Any) -> str:
        answer = await self._call(self._stub.GetModelCard, svc.GetModelCardRequest(name=self._r.version(ref)))
        return answer.markdown

    async def predict(self, ref: Any, inputs: Input | Sequence[Input], *, top_k: int = 0,
                      timeout: Any = USE_DEFAULT, **generation: Any) -> PredictResult:
        req = self._r.predict(ref, inputs, top_k, generation_config(**generation))
        answer = await self._call(self._stub.Predict, req, timeout=timeout)
        return PredictResult(answer.model_version, [_result(p) for p in answer.predictions])

    async def stream(self, ref: Any, text: Input, **generation: Any) -> AsyncIterator[TextDelta]:
        call = self._stub.StreamPredict(svc.StreamPredictRequest(
            name=self._r.version(ref), input=_input(text), generation_config=generation_config(**generation)))
        try:
            async for message in call:
                yield _delta(message)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from None
        finally:
            await aend_stream(call)
