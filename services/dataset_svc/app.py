"""The dataset service's use cases, over the store, the object store and the ingest
pipeline. No gRPC here: the servicer parses requests and calls these methods."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
import logging
import re
import tempfile
import uuid
from collections.abc import AsyncIterable
from datetime import datetime
from pathlib import Path
from typing import Any

from services.common import names, pagination
from services.common.auth import Principal, audit, check_project
from services.common.errors import FieldViolation, InvalidArgument, NotFound, ResourceExhausted
from services.common.filtering import parse_filter
from services.common.objectstore import ObjectStore, safe_key
from services.dataset_svc import preview
from services.dataset_svc.domain.ingest import IngestLimits, ingest, split_path
from services.dataset_svc.domain.model import (
    SPLITS,
    Dataset,
    DatasetVersion,
    IngestOptions,
    SplitInfo,
)
from services.dataset_svc.domain.tokens import load_token_counter
from services.dataset_svc.settings import DatasetSettings
from services.dataset_svc.store import DatasetStore, NewVersion, quota_exceeded
from services.dataset_svc.uploads import store_and_ingest

log = logging.getLogger(__name__)

PROJECT = "projects/{project}"
DATASET = "projects/{project}/datasets/{dataset}"
VERSION = "projects/{project}/datasets/{dataset}/versions/{version}"
OBJECT_ROOT = "datasets"
_FILE_NAME = re.compile(r"[^\x00-\x1f/\\]{1,255}")
_MUTABLE = {"display_name": 200, "description": 4000}


@dataclasses.dataclass(frozen=True)
class Page:
    items: list[Any]
    next_page_token: str


class DatasetApp:
    def __init__(self, settings: DatasetSettings, store: DatasetStore, objects: ObjectStore, pool) -> None:
        self.settings = settings
        self.store = store
        self.objects = objects
        self._pool = pool  # for the audit log

    # --- names --------------------------------------------------------------------

    @staticmethod
    def project_of(parent: str, field: str = "parent") -> str:
        project = names.parse(PROJECT, parent, field)["project"]
        check_project(project, "project", parent)
        return project

    @staticmethod
    def dataset_of(name: str, field: str = "name") -> tuple[str, str]:
        parts = names.parse(DATASET, name, field)
        check_project(parts["project"], "dataset", name)
        return parts["project"], parts["dataset"]

    @staticmethod
    def version_of(name: str, field: str = "name") -> tuple[str, str, int]:
        parts = names.parse(VERSION, name, field)
        check_project(parts["project"], "dataset version", name)
        if not parts["version"].isdigit():
            raise InvalidArgument.field(field, f"version must be a number, got '{parts['version']}'")
        return parts["project"], parts["dataset"], int(parts["version"])

    # --- datasets -------------------------------------------------------------------

    async def create_dataset(
        self, parent: str, dataset_id: str, display_name: str, description: str,
        labels: dict[str, str],
    ) -> Dataset:
        project = self.project_of(parent)
        dataset_id = names.check_id(dataset_id, "dataset_id") if dataset_id else _generated_id()
        _check_text({"dataset.display_name": display_name, "dataset.description": description})
        _check_labels(labels)
        dataset = await self.store.create_dataset(project, dataset_id, display_name, description, labels)
        await audit(self._pool, "dataset.create", dataset.name, service=self.settings.service_name)
        return dataset

    async def get_dataset(self, name: str) -> Dataset:
        return await self.store.get_dataset(*self.dataset_of(name))

    async def list_datasets(self, parent: str, page_size: int, page_token: str, filter_text: str) -> Page:
        project = self.project_of(parent)
        size = pagination.page_size(page_size)
        terms = parse_filter(filter_text, ("display_name", "labels."))
        fingerprint = pagination.request_fingerprint("datasets", project, filter_text)
        after = None
        if page_token:
            state = self._decode(page_token, fingerprint)
            after = (datetime.fromisoformat(state["t"]), state["id"])
        rows = await self.store.list_datasets(project, size + 1, after, terms)
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = self._encode({"t": last.create_time.isoformat(), "id": last.dataset_id}, fingerprint)
        return Page(rows[:size], token)

    async def update_dataset(self, name: str, paths: list[str], values: dict[str, Any], etag: str) -> Dataset:
        project, dataset_id = self.dataset_of(name, "dataset.name")
        if not paths:
            raise InvalidArgument.field("update_mask", "list the fields to change: display_name, description, labels")
        changes: dict[str, Any] = {}
        for path in paths:
            if path not in (*_MUTABLE, "labels"):
                raise InvalidArgument.field(
                    "update_mask", f"'{path}' cannot be changed; use display_name, description or labels"
                )
            changes[path] = values[path]
        _check_text({f"dataset.{k}": v for k, v in changes.items() if k in _MUTABLE})
        if "labels" in changes:
            _check_labels(changes["labels"])
        dataset = await self.store.update_dataset(project, dataset_id, changes, etag)
        await audit(self._pool, "dataset.update", dataset.name, {"fields": paths},
                    service=self.settings.service_name)
        return dataset

    async def delete_dataset(self, name: str, force: bool, etag: str) -> None:
        project, dataset_id = self.dataset_of(name)
        prefixes = await self.store.delete_dataset(project, dataset_id, force, etag)
        await audit(self._pool, "dataset.delete", name, {"versions_deleted": len(prefixes)},
                    service=self.settings.service_name)
        for prefix in prefixes:
            await self._delete_bytes(prefix)

    # --- versions -------------------------------------------------------------------

    async def upload_version(
        self, principal: Principal, parent: str, options: IngestOptions, declared_size: int,
        chunks: AsyncIterable[bytes],
    ) -> DatasetVersion:
        project, dataset_id = self.dataset_of(parent, "header.parent")
        await self.store.get_dataset(project, dataset_id)
        options = _checked_options(options, "header.options")
        max_bytes = self.settings.dataset_max_upload_bytes
        if declared_size > max_bytes:
            raise upload_too_large(max_bytes)
        used = await self.store.project_usage(project)
        quota = self.settings.dataset_project_quota_bytes
        if declared_size and used + declared_size > quota:
            raise quota_exceeded(project, used, declared_size, quota)
        return await self._create_version(principal, project, dataset_id, options, chunks, used,
                                          declared_size)

    async def import_version(
        self, principal: Principal, parent: str, source_uri: str, options: IngestOptions
    ) -> DatasetVersion:
        project, dataset_id = self.dataset_of(parent, "parent")
        await self.store.get_dataset(project, dataset_id)
        key = self._import_key(project, source_uri)
        info = await self.objects.stat(key)
        if not options.file_name:
            options = dataclasses.replace(options, file_name=key.rsplit("/", 1)[-1])
        options = _checked_options(options, "options")
        if info.size > self.settings.dataset_max_upload_bytes:
            raise upload_too_large(self.settings.dataset_max_upload_bytes)
        quota = self.settings.dataset_project_quota_bytes
        used = await self.store.project_usage(project)
        if used + info.size > quota:
            raise quota_exceeded(project, used, info.size, quota)
        return await self._create_version(
            principal, project, dataset_id, options, self.objects.iter_object(key), used, info.size
        )

    def _import_key(self, project: str, source_uri: str) -> str:
        try:
            key = self.objects.parse_uri(source_uri)
        except InvalidArgument:
            raise InvalidArgument.field(
                "source_uri", f"expected s3://{self.objects.bucket}/projects/{project}/imports/…, got '{source_uri}'"
            ) from None
        prefix = f"projects/{project}/imports/"
        if not key.startswith(prefix) or ".." in key.split("/"):
            # Another project's objects are invisible, like its resources.
            raise NotFound.resource("object", source_uri)
        return key

    async def _create_version(
        self, principal: Principal, project: str, dataset_id: str, options: IngestOptions,
        chunks: AsyncIterable[bytes], used_bytes: int, declared_size: int,
    ) -> DatasetVersion:
        upload_id = uuid.uuid4().hex
        prefix = safe_key(OBJECT_ROOT, "projects", project, "datasets", dataset_id,
                                       "objects", upload_id)
        raw_key = safe_key(prefix, "raw", options.file_name or "upload")
        limits = IngestLimits(max_field_chars=self.settings.dataset_max_field_chars)
        tokenizers = functools.partial(load_token_counter, model_dirs=self.settings.model_dir_paths)
        await self.store.claim_upload_prefix(project, prefix)
        try:
            with tempfile.TemporaryDirectory(dir=self.settings.dataset_work_dir or None) as tmp:
                workdir = Path(tmp)

                def run_ingest(source: io.BufferedReader):
                    return ingest(source, options, workdir, limits=limits, token_counter_loader=tokenizers)

                max_bytes, quota = self.settings.dataset_max_upload_bytes, self.settings.dataset_project_quota_bytes

                def too_large() -> Exception:
                    if max_bytes <= quota - used_bytes:
                        return upload_too_large(max_bytes)
                    return quota_exceeded(project, used_bytes, quota - used_bytes + 1, quota)

                canonical = {split: f"{prefix}/canonical/{split}.parquet" for split in SPLITS}
                stored = await store_and_ingest(
                    chunks, object_store=self.objects, raw_key=raw_key, run_ingest=run_ingest,
                    canonical={split_path(workdir, split): key for split, key in canonical.items()},
                    max_bytes=min(max_bytes, quota - used_bytes), too_large=too_large,
                    declared_size=declared_size,
                )
                result = stored.ingest
                splits = [SplitInfo(split, result.split_rows.get(split, 0), self.objects.uri(key))
                          for split, key in canonical.items()]
                stored_bytes = stored.size_bytes + sum(
                    split_path(workdir, split).stat().st_size for split in SPLITS)
            resolved = dataclasses.replace(
                options, format=result.format, task=result.task, column_mapping=result.column_mapping
            )
            version = await self.store.insert_version(
                NewVersion(
                    project=project, dataset_id=dataset_id, object_prefix=prefix, options=resolved,
                    format=result.format, task=result.task, size_bytes=stored.size_bytes,
                    stored_bytes=stored_bytes, sha256=stored.sha256, raw_key=self.objects.uri(raw_key),
                    columns=tuple(result.columns), label_names=tuple(result.label_names),
                    splits=tuple(splits), quality_report=result.report,
                    creator=f"projects/{project}/apiKeys/{principal.key_id}",
                ),
                self.settings.dataset_project_quota_bytes,
            )
        except BaseException:
            # Nothing half-made stays behind: not the raw object, not the canonical copy.
            await asyncio.shield(self._delete_bytes(prefix))
            raise
        await audit(self._pool, "dataset_version.create", version.name,
                    {"size_bytes": version.size_bytes, "sha256": version.sha256},
                    service=self.settings.service_name)
        return version

    async def get_version(self, name: str) -> DatasetVersion:
        return await self.store.get_version(*self.version_of(name))

    async def list_versions(self, parent: str, page_size: int, page_token: str, filter_text: str) -> Page:
        project, dataset_id = self.dataset_of(parent, "parent")
        size = pagination.page_size(page_size)
        terms = parse_filter(filter_text, ("task", "format"))
        fingerprint = pagination.request_fingerprint("versions", project, dataset_id, filter_text)
        before = self._decode(page_token, fingerprint)["v"] if page_token else None
        rows = await self.store.list_versions(project, dataset_id, size + 1, before, terms)
        token = self._encode({"v": rows[size - 1].version}, fingerprint) if len(rows) > size else ""
        return Page(rows[:size], token)

    async def delete_version(self, name: str) -> None:
        project, dataset_id, version = self.version_of(name)
        prefix = await self.store.delete_version(project, dataset_id, version)
        await audit(self._pool, "dataset_version.delete", name, service=self.settings.service_name)
        await self._delete_bytes(prefix)

    async def preview(self, name: str, split: str, page_size: int, page_token: str) -> preview.PreviewPage:
        version = await self.get_version(name)
        split = split or "train"
        info = next((s for s in version.splits if s.name == split), None)
        if info is None:
            have = ", ".join(s.name for s in version.splits) or "none"
            raise InvalidArgument.field("split", f"no split '{split}' in {name}; it has {have}")
        size = pagination.page_size(page_size, default=20, maximum=500)
        fingerprint = pagination.request_fingerprint("preview", name, split)
        offset = self._decode(page_token, fingerprint)["o"] if page_token else 0
        page = await asyncio.to_thread(
            preview.read_rows, self.objects, self.objects.parse_uri(info.uri), offset, size
        )
        end = offset + len(page.rows)
        token = self._encode({"o": end}, fingerprint) if end < page.total_rows else ""
        return dataclasses.replace(page, next_page_token=token)

    # --- housekeeping -----------------------------------------------------------------

    async def collect_garbage(self) -> int:
        """Deletes the bytes of deleted versions and of uploads whose process died."""
        prefixes = await self.store.stale_prefixes(self.settings.dataset_stale_upload_seconds)
        for prefix in prefixes:
            await self._delete_bytes(prefix)
        return len(prefixes)

    async def _delete_bytes(self, prefix: str) -> None:
        try:
            await self.objects.delete_prefix(prefix + "/")
            await self.store.release_prefix(prefix)
        except Exception:  # the janitor retries: the prefix stays recorded
            log.exception("could not delete objects under %s; will retry", prefix)

    def _encode(self, state: dict, fingerprint: str) -> str:
        return pagination.encode_page_token(self.settings.page_token_secret, state, fingerprint)

    def _decode(self, token: str, fingerprint: str) -> dict:
        return pagination.decode_page_token(self.settings.page_token_secret, token, fingerprint)


def upload_too_large(max_bytes: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"the upload is larger than the maximum of {max_bytes / 2**20:,.0f} MiB; "
        "split the file or ask for a larger limit",
        reason="UPLOAD_TOO_LARGE",
        metadata={"max_bytes": str(max_bytes)},
    )


def _generated_id() -> str:
    return "ds-" + uuid.uuid4().hex[:12]


def _check_text(values: dict[str, str]) -> None:
    violations = [
        FieldViolation(field, f"at most {_MUTABLE[field.split('.')[-1]]:,} characters")
        for field, value in values.items()
        if len(value) > _MUTABLE[field.split(".")[-1]]
    ]
    if violations:
        raise InvalidArgument("some fields are too long", violations)


def _check_labels(labels: dict[str, str]) -> None:
    if len(labels) > 64:
        raise InvalidArgument.field("dataset.labels", "at most 64 labels")
    for key, value in labels.items():
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key) or len(value) > 63:
            raise InvalidArgument.field(
                f"dataset.labels.{key}",
                "keys are 1-63 lowercase letters, digits, '_' or '-' starting with a letter; "
                "values at most 63 characters",
            )


def _checked_options(options: IngestOptions, field: str) -> IngestOptions:
    """File names are base names only, so they can never leave the version's prefix."""
    name = options.file_name
    if name and (not _FILE_NAME.fullmatch(name) or ".." in name or name == "."):
        raise InvalidArgument.field(
            f"{field}.file_name",
            f"'{name[:100]}' is not a plain file name: no folders ('/' or '\\' or '..'), no control "
            "characters, at most 255 characters",
        )
    return options
