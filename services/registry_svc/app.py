"""The registry's use cases: registered models, versions from tuning jobs, aliases and
their history, model cards, exports, downloads. Prediction lives in ``predictor.py``.
No gRPC here: the servicer parses requests and calls these methods."""

from __future__ import annotations

import dataclasses
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from services.common import names, pagination
from services.common.auth import Principal, audit, check_project
from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
)
from services.common.filtering import parse_filter
from services.common.names import ModelVersionRef
from services.registry_svc import artifacts as art
from services.registry_svc.artifacts import ArtifactStore
from services.registry_svc.domain import card as cards
from services.registry_svc.domain.model import (
    AliasAction,
    AliasEntry,
    Artifacts,
    ExportDtype,
    ExportState,
    Lineage,
    ModelExport,
    ModelVersion,
    RegisteredModel,
    Task,
)
from services.registry_svc.peers import (
    SUCCEEDED,
    BaseModelInfo,
    DatasetInfo,
    EvaluationInfo,
    Peers,
    TuningJobInfo,
    call_metadata,
)
from services.registry_svc.settings import RegistrySettings
from services.registry_svc.store import NewVersion, RegistryStore

log = logging.getLogger(__name__)

PROJECT = "projects/{project}"
JOB = "projects/{project}/tuningJobs/{job}"
EVALUATION = "projects/{project}/evaluations/{evaluation}"
EXPORT = "projects/{project}/models/{model}/versions/{version}/exports/{export}"
_TEXT_LIMITS = {"display_name": 200, "description": 20_000}
_TAG_KEY = re.compile(r"[a-z][a-z0-9_.-]{0,62}")
MODEL_UPDATABLE = ("display_name", "description", "task", "tags")
VERSION_UPDATABLE = ("description", "tags")


@dataclasses.dataclass(frozen=True)
class Page:
    items: list[Any]
    next_page_token: str


@dataclasses.dataclass(frozen=True)
class Caller:
    """Who calls, and how to call other services on their behalf."""

    principal: Principal
    api_key: str

    @property
    def actor(self) -> str:
        return f"projects/{self.principal.project}/apiKeys/{self.principal.key_id}"


@dataclasses.dataclass(frozen=True)
class DownloadFile:
    path: str
    url: str
    size_bytes: int
    sha256: str = ""


@dataclasses.dataclass(frozen=True)
class Downloads:
    version: ModelVersion
    files: list[DownloadFile]
    archive: DownloadFile | None
    expire_time: datetime


class RegistryApp:
    def __init__(self, settings: RegistrySettings, store: RegistryStore, files: ArtifactStore, peers: Peers) -> None:
        self.settings = settings
        self.store = store
        self.files = files
        self.peers = peers
        self.exports = None  # the ExportRunner, attached by service.start

    # --- names -----------------------------------------------------------------------

    @staticmethod
    def project_of(parent: str, field: str = "parent") -> str:
        project = names.parse(PROJECT, parent, field)["project"]
        check_project(project, "project", parent)
        return project

    @staticmethod
    def model_of(name: str, field: str = "name") -> tuple[str, str]:
        parts = names.parse(names.MODEL, name, field)
        check_project(parts["project"], "registered model", name)
        return parts["project"], parts["model"]

    @staticmethod
    def version_ref(name: str, field: str = "name", *, allow_alias: bool = True) -> ModelVersionRef:
        ref = names.parse_model_version(name, field, allow_alias=allow_alias)
        check_project(ref.project, "model version", name)
        return ref

    async def resolve(self, name: str, field: str = "name") -> ModelVersion:
        """The version a name, `@version` or `@alias` reference points at."""
        ref = self.version_ref(name, field)
        number = int(ref.version) if ref.version else await self.store.alias_target(ref.project, ref.model, ref.alias)
        return await self.store.get_version(ref.project, ref.model, number)

    async def resolve_active(self, name: str, field: str = "name") -> ModelVersion:
        version = await self.resolve(name, field)
        if version.is_deleted:
            raise FailedPrecondition(f"model version '{version.name}' was deleted; its files are gone",
                                     reason="VERSION_DELETED")
        return version

    # --- registered models -------------------------------------------------------------

    async def create_model(self, caller: Caller, parent: str, model: RegisteredModel, model_id: str) -> RegisteredModel:
        project = self.project_of(parent)
        model_id = names.check_id(model_id, "registered_model_id") if model_id else "m-" + uuid.uuid4().hex[:10]
        violations = _text_violations("registered_model", display_name=model.display_name,
                                      description=model.description)
        violations += _tag_violations("registered_model.tags", model.tags)
        if violations:
            raise InvalidArgument(_summary("the registered model", violations), violations)
        created = await self.store.insert_model(dataclasses.replace(
            model, project=project, model_id=model_id, creator=caller.actor))
        await audit(self.store.pool, "registered_model.create", created.name, service=self.settings.service_name)
        return created

    async def get_model(self, name: str) -> RegisteredModel:
        return await self.store.get_model(*self.model_of(name))

    async def list_models(self, parent: str, page_size: int, page_token: str, filter_text: str) -> Page:
        project = self.project_of(parent)
        size = pagination.page_size(page_size)
        terms = parse_filter(filter_text, ("display_name", "task", "aliases", "tags."))
        fingerprint = pagination.request_fingerprint("models", project, filter_text)
        after = None
        if page_token:
            state = self._decode(page_token, fingerprint)
            after = (datetime.fromisoformat(state["t"]), state["id"])
        rows = await self.store.list_models(project, size + 1, after, terms)
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = self._encode({"t": last.update_time.isoformat(), "id": last.model_id}, fingerprint)
        return Page(rows[:size], token)

    async def update_model(self, model: RegisteredModel, name: str, etag: str, mask: list[str]) -> RegisteredModel:
        project, model_id = self.model_of(name, "registered_model.name")
        changes = _mask_changes(mask, MODEL_UPDATABLE, "registered_model", {
            "display_name": model.display_name, "description": model.description, "task": model.task.value,
            "tags": model.tags})
        violations = _text_violations("registered_model", **{k: v for k, v in changes.items()
                                                              if k in _TEXT_LIMITS})
        if "tags" in changes:
            violations += _tag_violations("registered_model.tags", changes["tags"])
        if violations:
            raise InvalidArgument(_summary("the update", violations), violations)
        updated = await self.store.update_model(project, model_id, changes, etag)
        await audit(self.store.pool, "registered_model.update", updated.name, {"fields": sorted(changes)},
                    service=self.settings.service_name)
        return updated

    async def delete_model(self, name: str, etag: str, force: bool) -> None:
        project, model_id = self.model_of(name)
        versions = await self.store.delete_model(project, model_id, etag, force)
        await audit(self.store.pool, "registered_model.delete", name, {"versions": len(versions), "force": force},
                    service=self.settings.service_name)
        await self.files.delete_quietly(art.model_prefix(project, model_id))

    # --- versions --------------------------------------------------------------------

    async def create_version(self, caller: Caller, parent: str, tuning_job: str, description: str,
                             tags: dict[str, str], evaluations: list[str], request_id: str) -> ModelVersion:
        project, model_id = self.model_of(parent, "parent")
        violations: list[FieldViolation] = []
        if not tuning_job:
            violations.append(FieldViolation("tuning_job", "required: the SUCCEEDED tuning job to register, "
                                             "projects/{project}/tuningJobs/{tuning_job}"))
        else:
            try:
                job_project = names.parse(JOB, tuning_job, "tuning_job")["project"]
                if job_project != project:
                    raise NotFound.resource("tuning job", tuning_job)
            except InvalidArgument as exc:
                violations.extend(exc.violations)
        for i, evaluation in enumerate(evaluations):
            try:
                if names.parse(EVALUATION, evaluation, f"evaluations[{i}]")["project"] != project:
                    raise NotFound.resource("evaluation", evaluation)
            except InvalidArgument as exc:
                violations.extend(exc.violations)
        violations += _text_violations("", description=description)
        violations += _tag_violations("tags", tags)
        if request_id:
            violations += _request_id_violations(request_id)
        if violations:
            raise InvalidArgument(_summary("the model version", violations), violations)

        existing = await self.store.version_for_request(project, model_id, request_id)
        if existing is not None:
            return existing
        try:
            model = await self.store.get_model(project, model_id)
        except NotFound:
            if not caller.principal.is_service:
                raise
            # A tuning job asked to be registered into a model that does not exist yet.
            model = await self._create_model_quietly(caller, project, model_id)
        metadata = call_metadata(caller.principal, caller.api_key, self.settings.internal_token)
        job = await self.peers.tuning_job(tuning_job, metadata, "tuning_job")
        self._check_job(job, model)
        base = await self.peers.base_model(job.base_model, metadata)
        data = await self._dataset_quietly(job.dataset_version, metadata)
        examples = await self.peers.examples(job.dataset_version, self.settings.reference_example_count, metadata)
        linked = await self.peers.evaluations(project, job.name, tuple(evaluations), metadata)

        number = await self.store.next_version_number(project, model_id)
        prefix = f"{art.version_prefix(project, model_id, number)}/model"
        files = await self.files.copy_folder(job.output.uri, prefix, adapter_only=job.output.is_adapter_only)
        try:
            lineage = _lineage(job, linked, base, data)
            artifacts = Artifacts(uri=self.files.objects.uri(prefix), files=tuple(files),
                                  size_bytes=sum(f.size_bytes for f in files),
                                  merged_uri="" if job.output.is_adapter_only else self.files.objects.uri(prefix))
            card_input = _card_input(model, model.version_name(number), description, job, lineage)
            card = cards.render(card_input)
            artifacts = await self.files.write_card(artifacts, card)
            new = NewVersion(
                project=project, model_id=model_id, task=job.task, artifacts=artifacts,
                is_adapter_only=job.output.is_adapter_only, base_model=job.base_model, lineage=lineage,
                description=description, label_names=job.output.label_names,
                metrics=cards.headline_metrics(card_input.evaluations, job.output.metrics),
                examples=examples, tags=dict(tags), creator=caller.actor, request_id=request_id, model_card=card)
            version = await self.store.insert_version(new, number)
        except AlreadyExists:
            await self.files.delete_quietly(prefix + "/")
            again = await self.store.version_for_request(project, model_id, request_id)
            if again is None:
                raise
            return again  # a concurrent retry with the same request id won
        except BaseException:
            await self.files.delete_quietly(prefix + "/")
            raise
        await audit(self.store.pool, "model_version.create", version.name,
                    {"tuning_job": job.name, "bytes": artifacts.size_bytes}, service=self.settings.service_name)
        return version

    async def _create_model_quietly(self, caller: Caller, project: str, model_id: str) -> RegisteredModel:
        try:
            return await self.store.insert_model(RegisteredModel(project=project, model_id=model_id,
                                                                 display_name=model_id, creator=caller.actor))
        except AlreadyExists:
            return await self.store.get_model(project, model_id)

    @staticmethod
    def _check_job(job: TuningJobInfo, model: RegisteredModel) -> None:
        if job.state != SUCCEEDED or job.output is None:
            raise FailedPrecondition(
                f"tuning job '{job.name}' is {job.state_name}; only a SUCCEEDED job's model can be registered",
                reason="TUNING_JOB_NOT_SUCCEEDED", metadata={"state": job.state_name})
        if model.task not in (Task.UNSPECIFIED, job.task):
            raise FailedPrecondition(
                f"registered model '{model.name}' holds {model.task.name} models and tuning job '{job.name}' "
                f"trained {job.task.name}; register it under another model", reason="TASK_MISMATCH")

    async def _dataset_quietly(self, name: str, metadata) -> DatasetInfo | None:
        """The card's data section is worth having, not worth failing a registration over."""
        try:
            return await self.peers.dataset_version(name, metadata)
        except (NotFound, FailedPrecondition, InvalidArgument) as exc:
            log.warning("dataset version %s not described in the card: %s", name, exc)
            return None

    async def get_version(self, name: str) -> ModelVersion:
        return await self.resolve(name)

    async def list_versions(self, parent: str, page_size: int, page_token: str, filter_text: str) -> Page:
        project, model_id = self.model_of(parent, "parent")
        size = pagination.page_size(page_size)
        terms = parse_filter(filter_text, ("state", "aliases", "lineage.tuning_job", "lineage.dataset_version",
                                           "lineage.base_model", "tags."))
        fingerprint = pagination.request_fingerprint("versions", project, model_id, filter_text)
        before = self._decode(page_token, fingerprint)["v"] if page_token else None
        await self.store.get_model(project, model_id)
        rows = await self.store.list_versions(project, model_id, size + 1, before, terms)
        token = self._encode({"v": rows[size - 1].version}, fingerprint) if len(rows) > size else ""
        return Page(rows[:size], token)

    async def update_version(self, name: str, description: str, tags: dict[str, str], etag: str,
                             mask: list[str]) -> ModelVersion:
        ref = self.version_ref(name, "model_version.name", allow_alias=False)
        changes = _mask_changes(mask, VERSION_UPDATABLE, "model_version",
                                {"description": description, "tags": tags})
        violations = _text_violations("model_version", **{k: v for k, v in changes.items() if k in _TEXT_LIMITS})
        if "tags" in changes:
            violations += _tag_violations("model_version.tags", changes["tags"])
        if violations:
            raise InvalidArgument(_summary("the update", violations), violations)
        version = await self.store.update_version(ref.project, ref.model, int(ref.version), changes, etag)
        if "description" in changes and not version.is_deleted:
            async with self.store.version_lock(version):
                version = await self.rewrite_card(await self.store.get_version(ref.project, ref.model,
                                                                               int(ref.version)))
        await audit(self.store.pool, "model_version.update", version.name, {"fields": sorted(changes)},
                    service=self.settings.service_name)
        return version

    async def rewrite_card(self, version: ModelVersion) -> ModelVersion:
        """The card again from the stored lineage (after a description change or new evaluations);
        called under the version's lock."""
        model = await self.store.get_model(version.project, version.model_id)
        card = cards.render(_card_input_from_version(model, version))
        artifacts = await self.files.write_card(version.artifacts, card)
        await self.store.set_artifacts(version.project, version.model_id, version.version, artifacts)
        await self.store.set_card(version.project, version.model_id, version.version, card, version.lineage,
                                  version.metrics)
        return await self.store.get_version(version.project, version.model_id, version.version)

    async def delete_version(self, name: str, etag: str) -> ModelVersion:
        ref = self.version_ref(name, allow_alias=False)
        version = await self.store.mark_deleted(ref.project, ref.model, int(ref.version), etag)
        await self.store.fail_exports_of(ref.project, ref.model, int(ref.version), "the version was deleted")
        await self.files.objects.delete_prefix(art.version_prefix(ref.project, ref.model, int(ref.version)) + "/")
        await audit(self.store.pool, "model_version.delete", version.name, service=self.settings.service_name)
        return version

    async def model_card(self, name: str) -> ModelVersion:
        return await self.resolve(name)

    async def link_evaluation(self, caller: Caller, parent: str, evaluation: str) -> list[ModelVersion]:
        """Links an evaluation into the versions it measured: the version it names, or
        every live version made from the tuning job it evaluated."""
        project = self.project_of(parent)
        if not evaluation:
            raise InvalidArgument.field("evaluation", "required: projects/{project}/evaluations/{evaluation}")
        if names.parse(EVALUATION, evaluation, "evaluation")["project"] != project:
            raise NotFound.resource("evaluation", evaluation)
        found = await self.peers.evaluation(
            evaluation, call_metadata(caller.principal, caller.api_key, self.settings.internal_token))
        if found.model_version:
            ref = self.version_ref(found.model_version, "evaluation")
            targets = [await self.store.get_version(ref.project, ref.model, int(ref.version))]
        elif found.tuning_job:
            targets = await self.store.versions_made_by(project, found.tuning_job)
        else:
            raise InvalidArgument.field("evaluation", f"'{evaluation}' measured a base model; only evaluations of "
                                        "a tuning job's output or of a model version are linked to versions")
        linked = []
        for target in (t for t in targets if not t.is_deleted):
            async with self.store.version_lock(target):
                current = await self.store.get_version(target.project, target.model_id, target.version)
                changed = _with_evaluation(current, found)
                linked.append(current if changed is None else await self.rewrite_card(changed))
            if changed is not None:
                log.info("%s: linked evaluation %s", current.name, found.name)
        return linked

    # --- aliases ---------------------------------------------------------------------

    async def set_alias(self, caller: Caller, model_name: str, alias: str, target: str, reason: str,
                        etag: str) -> RegisteredModel:
        project, model_id = self.model_of(model_name, "registered_model")
        violations = _alias_violations(alias)
        if not target:
            violations.append(FieldViolation("model_version", "required: a version number, a full version "
                                             "name or another alias"))
        if len(reason) > 1000:
            violations.append(FieldViolation("reason", "at most 1,000 characters"))
        if violations:
            raise InvalidArgument(_summary("the alias", violations), violations)
        version = await self._alias_target(project, model_id, target)
        model = await self.store.change_alias(project, model_id, alias, AliasAction.SET, version, reason,
                                              caller.actor, etag)
        await audit(self.store.pool, "alias.set", f"{model.name}@{alias}", {"version": version, "reason": reason},
                    service=self.settings.service_name)
        return model

    async def _alias_target(self, project: str, model_id: str, target: str) -> int:
        """`3`, `production`, or a full name of a version of the same model → a version number."""
        text = target.strip()
        if names.VERSION_PATTERN.fullmatch(text):
            ref = ModelVersionRef(project, model_id, version=text)
        elif names.valid_alias(text):
            ref = ModelVersionRef(project, model_id, alias=text)
        else:
            ref = self.version_ref(text, "model_version")
            if (ref.project, ref.model) != (project, model_id):
                raise InvalidArgument.field("model_version", f"'{text}' is a version of another model; an alias "
                                            "points at a version of its own model")
        number = int(ref.version) if ref.version else await self.store.alias_target(project, model_id, ref.alias)
        await self.store.get_version(project, model_id, number)  # NotFound for an unknown number
        return number

    async def delete_alias(self, caller: Caller, model_name: str, alias: str, reason: str, etag: str) -> RegisteredModel:
        project, model_id = self.model_of(model_name, "registered_model")
        violations = _alias_violations(alias)
        if violations:
            raise InvalidArgument(_summary("the alias", violations), violations)
        model = await self.store.change_alias(project, model_id, alias, AliasAction.DELETED, None, reason,
                                              caller.actor, etag)
        await audit(self.store.pool, "alias.delete", f"{model.name}@{alias}", {"reason": reason},
                    service=self.settings.service_name)
        return model

    async def rollback_alias(self, caller: Caller, model_name: str, alias: str, reason: str,
                             etag: str) -> RegisteredModel:
        project, model_id = self.model_of(model_name, "registered_model")
        violations = _alias_violations(alias)
        if violations:
            raise InvalidArgument(_summary("the alias", violations), violations)
        model = await self.store.change_alias(project, model_id, alias, AliasAction.ROLLED_BACK, None, reason,
                                              caller.actor, etag)
        await audit(self.store.pool, "alias.rollback", f"{model.name}@{alias}",
                    {"version": model.aliases.get(alias), "reason": reason}, service=self.settings.service_name)
        return model

    async def alias_history(self, parent: str, page_size: int, page_token: str, filter_text: str) -> Page:
        project, model_id = self.model_of(parent, "parent")
        size = pagination.page_size(page_size)
        terms = parse_filter(filter_text, ("alias", "action", "time"), comparisons=True)
        fingerprint = pagination.request_fingerprint("alias-history", project, model_id, filter_text)
        before = self._decode(page_token, fingerprint)["s"] if page_token else None
        rows: list[AliasEntry] = await self.store.list_alias_history(project, model_id, size + 1, before, terms)
        token = self._encode({"s": rows[size - 1].sequence}, fingerprint) if len(rows) > size else ""
        return Page(rows[:size], token)

    # --- exports and downloads ---------------------------------------------------------

    async def export(self, name: str, dtype: ExportDtype) -> ModelExport:
        version = await self.resolve_active(name)
        export = ModelExport(project=version.project, model_id=version.model_id, version=version.version,
                             export_id="e-" + uuid.uuid4().hex[:10], dtype=dtype, state=ExportState.QUEUED)
        if not version.is_adapter_only and dtype is ExportDtype.UNSPECIFIED:
            # A full fine-tune is already a standalone model: the export is the folder itself.
            export, created = await self.store.insert_export(export)
            if created:
                await self.store.finish_export(export, ExportState.SUCCEEDED, uri=version.artifacts.uri,
                                               size_bytes=version.artifacts.size_bytes)
            return await self.store.get_export(export.project, export.model_id, export.version, export.export_id)
        export, created = await self.store.insert_export(export)
        if created:
            await audit(self.store.pool, "model_version.export", export.name, {"dtype": dtype.name},
                        service=self.settings.service_name)
            self.exports.submit(export)
        return export

    async def get_export(self, name: str) -> ModelExport:
        parts = names.parse(EXPORT, name, "name")
        check_project(parts["project"], "model export", name)
        if not names.VERSION_PATTERN.fullmatch(parts["version"]):
            raise InvalidArgument.field("name", f"'{parts['version']}' is not a version number")
        return await self.store.get_export(parts["project"], parts["model"], int(parts["version"]), parts["export"])

    async def download_urls(self, name: str, merged: bool, include_archive: bool, ttl_seconds: float) -> Downloads:
        if ttl_seconds and not 60 <= ttl_seconds <= 7 * 24 * 3600:
            raise InvalidArgument.field("ttl", "must be between 1 minute and 7 days")
        ttl = timedelta(seconds=ttl_seconds or 3600)
        version = await self.resolve_active(name)
        uri = version.artifacts.merged_uri if merged else version.artifacts.uri
        if not uri:
            raise FailedPrecondition(f"model version '{version.name}' has no merged copy yet; call "
                                     "ExportModelVersion and wait for it to succeed", reason="NOT_EXPORTED")
        known = {f.path: f for f in version.artifacts.files} if uri == version.artifacts.uri else {}
        key = self.files.key_of(uri)
        listing = await self.files.folder_files(uri)
        downloads = []
        for rel, size in sorted(listing):
            url = await self.files.objects.presigned_get_url(f"{key}/{rel}", ttl)
            downloads.append(DownloadFile(rel, url, size, known[rel].sha256 if rel in known else ""))
        archive = None
        if include_archive:
            kind = "merged" if merged else "model"
            archive_key = f"{art.version_prefix(version.project, version.model_id, version.version)}/archives/" \
                          f"{version.model_id}-v{version.version}-{kind}.tar.gz"
            if merged:
                archive_key = archive_key.replace(".tar.gz", f"-{_uri_tag(uri)}.tar.gz")
            size = await self.files.ensure_archive(uri, archive_key)
            archive = DownloadFile(archive_key.rsplit("/", 1)[1],
                                   await self.files.objects.presigned_get_url(archive_key, ttl), size)
        return Downloads(version, downloads, archive, datetime.now(UTC) + ttl)

    # --- helpers ---------------------------------------------------------------------

    def _encode(self, state: dict, fingerprint: str) -> str:
        return pagination.encode_page_token(self.settings.page_token_secret, state, fingerprint)

    def _decode(self, token: str, fingerprint: str) -> dict:
        return pagination.decode_page_token(self.settings.page_token_secret, token, fingerprint)


# --- lineage and cards ------------------------------------------------------------------


def _lineage(job: TuningJobInfo, evaluations: list[EvaluationInfo], base: BaseModelInfo,
             data: DatasetInfo | None) -> Lineage:
    assert job.output is not None
    return Lineage(
        base_model=job.base_model, dataset_version=job.dataset_version, tuning_job=job.name, method=job.method,
        hyperparameters=job.resolved_hyperparameters, evaluations=tuple(e.name for e in evaluations),
        parent_model_version=job.continued_from_model_version, training_metrics=dict(job.output.metrics),
        trained_step=job.output.step, trainable_parameter_count=job.output.trainable_parameter_count,
        card_facts={
            "job_display_name": job.display_name,
            "base": dataclasses.asdict(cards.BaseFacts(
                name=base.name, display_name=base.display_name, source=base.source, licence_name=base.licence_name,
                licence_uri=base.licence_uri, parameter_count=base.parameter_count,
                context_length=base.context_length)),
            "data": dataclasses.asdict(cards.DataFacts(
                name=data.name, split_rows=data.split_rows, row_count=data.row_count,
                label_distribution=list(data.label_distribution), warnings=list(data.warnings),
                exact_duplicate_rows=data.exact_duplicate_rows, near_duplicate_rows=data.near_duplicate_rows,
                cross_split_duplicate_rows=data.cross_split_duplicate_rows, pii_rows=data.pii_rows))
            if data is not None else None,
            "evaluations": [dataclasses.asdict(_evaluation_facts(e)) for e in evaluations if e.state == SUCCEEDED],
        },
    )


def _with_evaluation(version: ModelVersion, e: EvaluationInfo) -> ModelVersion | None:
    """The version with ``e`` in its lineage and, once it has succeeded, in its card and
    headline metrics (the latest linked evaluation's); None when it has it already."""
    facts = version.lineage.card_facts
    described = facts.get("evaluations", [])
    in_lineage = e.name in version.lineage.evaluations
    to_describe = e.state == SUCCEEDED and all(d["name"] != e.name for d in described)
    if in_lineage and not to_describe:
        return None
    if to_describe:
        described = [*described, dataclasses.asdict(_evaluation_facts(e))]
    lineage = dataclasses.replace(
        version.lineage, evaluations=version.lineage.evaluations + (() if in_lineage else (e.name,)),
        card_facts={**facts, "evaluations": described})
    metrics = cards.headline_metrics([cards.EvaluationFacts(**d) for d in described], version.lineage.training_metrics)
    return dataclasses.replace(version, lineage=lineage, metrics=metrics)


def _evaluation_facts(e: EvaluationInfo) -> cards.EvaluationFacts:
    return cards.EvaluationFacts(name=e.name, split=e.split, summary=e.summary, metrics=e.metrics,
                                 baseline=e.baseline, higher_is_better=e.higher_is_better)


def _card_input(model: RegisteredModel, version_name: str, description: str, job: TuningJobInfo,
                lineage: Lineage) -> cards.CardInput:
    assert job.output is not None
    facts = lineage.card_facts
    return cards.CardInput(
        version_name=version_name, model_display_name=model.display_name or model.model_id,
        description=description, task=job.task, label_names=job.output.label_names,
        is_adapter_only=job.output.is_adapter_only, base=cards.BaseFacts(**facts["base"]),
        data=cards.DataFacts(**facts["data"]) if facts.get("data") else None, tuning_job=job.name,
        method=job.method, hyperparameters=job.resolved_hyperparameters, trained_step=job.output.step,
        trainable_parameter_count=job.output.trainable_parameter_count, training_metrics=job.output.metrics,
        evaluations=[cards.EvaluationFacts(**e) for e in facts.get("evaluations", [])],
    )


def _card_input_from_version(model: RegisteredModel, v: ModelVersion) -> cards.CardInput:
    facts = v.lineage.card_facts
    return cards.CardInput(
        version_name=v.name, model_display_name=model.display_name or model.model_id, description=v.description,
        task=v.task, label_names=v.label_names, is_adapter_only=v.is_adapter_only,
        base=cards.BaseFacts(**facts["base"]) if facts.get("base") else cards.BaseFacts(name=v.base_model),
        data=cards.DataFacts(**facts["data"]) if facts.get("data") else None, tuning_job=v.lineage.tuning_job,
        method=v.lineage.method, hyperparameters=v.lineage.hyperparameters, trained_step=v.lineage.trained_step,
        trainable_parameter_count=v.lineage.trainable_parameter_count,
        training_metrics=v.lineage.training_metrics,
        evaluations=[cards.EvaluationFacts(**e) for e in facts.get("evaluations", [])],
    )


# --- validation ---------------------------------------------------------------------------


def _mask_changes(mask: list[str], allowed: tuple[str, ...], prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    if not mask:
        raise InvalidArgument.field("update_mask", f"required: the fields to change, some of {', '.join(allowed)}")
    bad = [p for p in mask if p not in allowed]
    if bad:
        raise InvalidArgument(
            f"update_mask: {', '.join(bad)} cannot be updated",
            [FieldViolation("update_mask", f"'{p}' cannot be updated; only {', '.join(allowed)} can")
             for p in bad])
    return {p: values[p] for p in dict.fromkeys(mask)}


def _text_violations(prefix: str, **values: str) -> list[FieldViolation]:
    dot = f"{prefix}." if prefix else ""
    return [FieldViolation(f"{dot}{k}", f"at most {_TEXT_LIMITS[k]:,} characters")
            for k, v in values.items() if isinstance(v, str) and len(v) > _TEXT_LIMITS[k]]


def _tag_violations(field: str, tags: dict[str, str]) -> list[FieldViolation]:
    if len(tags) > 64:
        return [FieldViolation(field, "at most 64 tags")]
    return [FieldViolation(f"{field}.{key}", "keys are 1-63 lowercase letters, digits, '_', '.' or '-' starting "
                           "with a letter; values at most 256 characters")
            for key, value in tags.items() if not _TAG_KEY.fullmatch(key) or len(value) > 256]


def _alias_violations(alias: str) -> list[FieldViolation]:
    try:
        names.check_alias(alias, "alias")
    except InvalidArgument as exc:
        return list(exc.violations)
    return []


def _request_id_violations(request_id: str) -> list[FieldViolation]:
    try:
        uuid.UUID(request_id)
    except ValueError:
        return [FieldViolation("request_id", "must be a UUID, e.g. 1b4e28ba-2fa1-11d2-883f-0016d3cca427")]
    return []


def _summary(what: str, violations: list[FieldViolation]) -> str:
    head = "; ".join(f"{v.field}: {v.description}" for v in violations[:3])
    more = f" (and {len(violations) - 3} more)" if len(violations) > 3 else ""
    return f"{what} is invalid: {head}{more}"


def _uri_tag(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[-1]
