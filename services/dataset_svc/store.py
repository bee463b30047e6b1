"""asyncpg queries for the `dataset` schema. Database errors become domain errors here."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import TypeAdapter

from services.common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from services.common.filtering import Term
from services.dataset_svc.domain.model import (
    DataFormat,
    Dataset,
    DatasetVersion,
    IngestOptions,
    QualityReport,
    SplitInfo,
    Task,
)

SCHEMA = "dataset"
_options_json = TypeAdapter(IngestOptions)
_report_json = TypeAdapter(QualityReport)
_splits_json = TypeAdapter(tuple[SplitInfo, ...])

_DATASET_COLUMNS = """
    d.project, d.dataset_id, d.display_name, d.description, d.labels, d.revision,
    d.create_time, d.update_time,
    (SELECT count(*) FROM dataset_versions v
      WHERE v.project = d.project AND v.dataset_id = d.dataset_id) AS version_count,
    (SELECT coalesce(max(version), 0) FROM dataset_versions v
      WHERE v.project = d.project AND v.dataset_id = d.dataset_id) AS latest_version,
    (SELECT coalesce(sum(stored_bytes), 0)::bigint FROM dataset_versions v
      WHERE v.project = d.project AND v.dataset_id = d.dataset_id) AS size_bytes
"""


@dataclass(frozen=True)
class NewVersion:
    """Everything about a version except its number, which the store assigns."""

    project: str
    dataset_id: str
    object_prefix: str
    options: IngestOptions
    format: DataFormat
    task: Task
    size_bytes: int
    stored_bytes: int
    sha256: str
    raw_key: str
    columns: tuple[str, ...]
    label_names: tuple[str, ...]
    splits: tuple[SplitInfo, ...]
    quality_report: QualityReport
    creator: str


def _etag(row: asyncpg.Record) -> str:
    digest = hashlib.sha256(f"{row['project']}/{row['dataset_id']}/{row['revision']}".encode())
    return digest.hexdigest()[:16]


def _dataset(row: asyncpg.Record) -> Dataset:
    return Dataset(
        project=row["project"],
        dataset_id=row["dataset_id"],
        display_name=row["display_name"],
        description=row["description"],
        labels=dict(row["labels"]),
        version_count=row["version_count"],
        latest_version=row["latest_version"],
        size_bytes=row["size_bytes"],
        create_time=row["create_time"],
        update_time=row["update_time"],
        etag=_etag(row),
    )


def _version(row: asyncpg.Record) -> DatasetVersion:
    return DatasetVersion(
        project=row["project"],
        dataset_id=row["dataset_id"],
        version=row["version"],
        options=_options_json.validate_python(row["options"]),
        format=DataFormat(row["format"]),
        task=Task(row["task"]),
        size_bytes=row["size_bytes"],
        sha256=row["sha256"],
        raw_uri=row["raw_key"],
        columns=tuple(row["columns"]),
        label_names=tuple(row["label_names"]),
        splits=_splits_json.validate_python(row["splits"]),
        quality_report=_report_json.validate_python(row["quality_report"]),
        create_time=row["create_time"],
        creator=row["creator"],
    )


class DatasetStore:
    """Datasets, versions and unreferenced object prefixes of one database pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    # --- datasets ---------------------------------------------------------------

    async def create_dataset(
        self, project: str, dataset_id: str, display_name: str, description: str,
        labels: dict[str, str],
    ) -> Dataset:
        try:
            await self._pool.execute(
                "INSERT INTO datasets (project, dataset_id, display_name, description, labels)"
                " VALUES ($1, $2, $3, $4, $5)",
                project, dataset_id, display_name, description, labels,
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(
                f"dataset 'projects/{project}/datasets/{dataset_id}' already exists; "
                "choose another dataset_id or upload a new version to it",
                reason="DATASET_ALREADY_EXISTS",
            ) from None
        return await self.get_dataset(project, dataset_id)

    async def get_dataset(self, project: str, dataset_id: str) -> Dataset:
        row = await self._pool.fetchrow(
            f"SELECT {_DATASET_COLUMNS} FROM datasets d WHERE d.project = $1 AND d.dataset_id = $2",
            project, dataset_id,
        )
        if row is None:
            raise NotFound.resource("dataset", f"projects/{project}/datasets/{dataset_id}")
        return _dataset(row)

    async def list_datasets(
        self, project: str, limit: int, after: tuple[datetime, str] | None, terms: list[Term],
    ) -> list[Dataset]:
        """Newest first; `limit` rows after the keyset position `after`."""
        where, args = ["d.project = $1"], [project]
        if after is not None:
            args += [after[0], after[1]]
            where.append(f"(d.create_time, d.dataset_id) < (${len(args) - 1}, ${len(args)})")
        for term in terms:
            if term.field == "display_name":
                args.append(term.value)
                where.append(
                    f"position(lower(${len(args)}) in lower(d.display_name)) > 0"
                    if term.op == ":" else
                    f"d.display_name {'=' if term.op == '=' else '<>'} ${len(args)}"
                )
            else:  # labels.KEY
                args += [term.field.removeprefix("labels."), term.value]
                clause = f"d.labels ->> ${len(args) - 1} = ${len(args)}"
                where.append(clause if term.op != "!=" else f"NOT coalesce({clause}, false)")
        args.append(limit)
        rows = await self._pool.fetch(
            f"SELECT {_DATASET_COLUMNS} FROM datasets d WHERE {' AND '.join(where)}"
            f" ORDER BY d.create_time DESC, d.dataset_id DESC LIMIT ${len(args)}",
            *args,
        )
        return [_dataset(r) for r in rows]

    async def update_dataset(
        self, project: str, dataset_id: str, changes: dict[str, Any], etag: str,
    ) -> Dataset:
        async with self._pool.acquire() as conn, conn.transaction():
            current = await self._locked_dataset(conn, project, dataset_id)
            if etag and etag != current.etag:
                raise Aborted(
                    f"dataset '{current.name}' changed since etag {etag} was read; "
                    "get it again and retry", reason="ETAG_MISMATCH",
                )
            sets = [f"{column} = ${i + 3}" for i, column in enumerate(changes)]
            await conn.execute(
                f"UPDATE datasets SET {', '.join(sets + ['revision = revision + 1', 'update_time = now()'])}"
                " WHERE project = $1 AND dataset_id = $2",
                project, dataset_id, *changes.values(),
            )
        return await self.get_dataset(project, dataset_id)

    async def delete_dataset(self, project: str, dataset_id: str, force: bool, etag: str) -> list[str]:
        """Deletes the rows; returns the object prefixes whose bytes the caller must delete."""
        async with self._pool.acquire() as conn, conn.transaction():
            current = await self._locked_dataset(conn, project, dataset_id)
            if etag and etag != current.etag:
                raise Aborted(f"dataset '{current.name}' changed since etag {etag} was read",
                              reason="ETAG_MISMATCH")
            if current.version_count and not force:
                raise FailedPrecondition(
                    f"dataset '{current.name}' has {current.version_count} version(s); "
                    "delete them first or pass force=true to delete everything",
                    reason="DATASET_NOT_EMPTY",
                )
            prefixes = await conn.fetch(
                "SELECT object_prefix FROM dataset_versions WHERE project = $1 AND dataset_id = $2",
                project, dataset_id,
            )
            await self._mark_unreferenced(conn, project, [r["object_prefix"] for r in prefixes])
            await conn.execute(
                "DELETE FROM datasets WHERE project = $1 AND dataset_id = $2", project, dataset_id
            )
        return [r["object_prefix"] for r in prefixes]

    async def _locked_dataset(self, conn: asyncpg.Connection, project: str, dataset_id: str) -> Dataset:
        row = await conn.fetchrow(
            f"SELECT {_DATASET_COLUMNS} FROM datasets d"
            " WHERE d.project = $1 AND d.dataset_id = $2 FOR UPDATE OF d",
            project, dataset_id,
        )
        if row is None:
            raise NotFound.resource("dataset", f"projects/{project}/datasets/{dataset_id}")
        return _dataset(row)

    # --- versions ---------------------------------------------------------------

    async def project_usage(self, project: str) -> int:
        """Bytes stored by all versions of the project."""
        return await self._pool.fetchval(
            "SELECT coalesce(sum(stored_bytes), 0)::bigint FROM dataset_versions WHERE project = $1", project
        )

    async def insert_version(self, new: NewVersion, quota_bytes: int) -> DatasetVersion:
        """Numbers and stores a version, under the project's storage quota."""
        async with self._pool.acquire() as conn, conn.transaction():
            # One writer per project at a time, so two uploads can't both fit the quota.
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('dataset-quota:' || $1))",
                               new.project)
            used = await conn.fetchval(
                "SELECT coalesce(sum(stored_bytes), 0)::bigint FROM dataset_versions WHERE project = $1",
                new.project,
            )
            if used + new.stored_bytes > quota_bytes:
                raise quota_exceeded(new.project, used, new.stored_bytes, quota_bytes)
            version = await conn.fetchval(
                "UPDATE datasets SET next_version = next_version + 1, update_time = now(),"
                " revision = revision + 1 WHERE project = $1 AND dataset_id = $2"
                " RETURNING next_version - 1",
                new.project, new.dataset_id,
            )
            if version is None:
                raise NotFound.resource("dataset", f"projects/{new.project}/datasets/{new.dataset_id}")
            await conn.execute(
                "INSERT INTO dataset_versions (project, dataset_id, version, object_prefix, options,"
                " format, task, size_bytes, stored_bytes, sha256, raw_key, columns, label_names,"
                " splits, quality_report, creator)"
                " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16)",
                new.project, new.dataset_id, version, new.object_prefix,
                _options_json.dump_python(new.options, mode="json"), new.format.value,
                new.task.value, new.size_bytes, new.stored_bytes, new.sha256, new.raw_key,
                list(new.columns), list(new.label_names),
                _splits_json.dump_python(new.splits, mode="json"),
                _report_json.dump_python(new.quality_report, mode="json"), new.creator,
            )
            await conn.execute(
                "DELETE FROM unreferenced_prefixes WHERE object_prefix = $1", new.object_prefix
            )
        return await self.get_version(new.project, new.dataset_id, version)

    async def get_version(self, project: str, dataset_id: str, version: int) -> DatasetVersion:
        row = await self._pool.fetchrow(
            "SELECT * FROM dataset_versions WHERE project = $1 AND dataset_id = $2 AND version = $3",
            project, dataset_id, version,
        )
        if row is None:
            raise NotFound.resource(
                "dataset version", f"projects/{project}/datasets/{dataset_id}/versions/{version}"
            )
        return _version(row)

    async def list_versions(
        self, project: str, dataset_id: str, limit: int, before_version: int | None,
        terms: list[Term],
    ) -> list[DatasetVersion]:
        """Newest first; `limit` rows with version < `before_version`."""
        await self.get_dataset(project, dataset_id)  # NotFound for a missing parent
        where, args = ["project = $1", "dataset_id = $2"], [project, dataset_id]
        if before_version is not None:
            args.append(before_version)
            where.append(f"version < ${len(args)}")
        for term in terms:
            enum = Task if term.field == "task" else DataFormat
            args.append(enum_value(enum, term.value, term.field))
            where.append(f"{term.field} {'<>' if term.op == '!=' else '='} ${len(args)}")
        args.append(limit)
        rows = await self._pool.fetch(
            f"SELECT * FROM dataset_versions WHERE {' AND '.join(where)}"
            f" ORDER BY version DESC LIMIT ${len(args)}",
            *args,
        )
        return [_version(r) for r in rows]

    async def delete_version(self, project: str, dataset_id: str, version: int) -> str:
        """Deletes the row; returns the object prefix whose bytes the caller must delete."""
        async with self._pool.acquire() as conn, conn.transaction():
            prefix = await conn.fetchval(
                "DELETE FROM dataset_versions WHERE project = $1 AND dataset_id = $2"
                " AND version = $3 RETURNING object_prefix",
                project, dataset_id, version,
            )
            if prefix is None:
                raise NotFound.resource(
                    "dataset version", f"projects/{project}/datasets/{dataset_id}/versions/{version}"
                )
            await self._mark_unreferenced(conn, project, [prefix])
            await conn.execute(
                "UPDATE datasets SET update_time = now(), revision = revision + 1"
                " WHERE project = $1 AND dataset_id = $2", project, dataset_id,
            )
        return prefix

    # --- unreferenced object prefixes ---------------------------------------------

    async def claim_upload_prefix(self, project: str, prefix: str) -> None:
        await self._pool.execute(
            "INSERT INTO unreferenced_prefixes (object_prefix, project, reason) VALUES ($1, $2, 'upload')",
            prefix, project,
        )

    async def release_prefix(self, prefix: str) -> None:
        """Forget a prefix once its bytes are gone."""
        await self._pool.execute("DELETE FROM unreferenced_prefixes WHERE object_prefix = $1", prefix)

    async def stale_prefixes(self, upload_age_seconds: int) -> list[str]:
        """Deleted versions' prefixes, and uploads older than `upload_age_seconds` (crashed)."""
        rows = await self._pool.fetch(
            "SELECT object_prefix FROM unreferenced_prefixes WHERE reason = 'delete'"
            " OR since < now() - make_interval(secs => $1)",
            upload_age_seconds,
        )
        return [r["object_prefix"] for r in rows]

    @staticmethod
    async def _mark_unreferenced(conn: asyncpg.Connection, project: str, prefixes: list[str]) -> None:
        await conn.executemany(
            "INSERT INTO unreferenced_prefixes (object_prefix, project, reason) VALUES ($1, $2, 'delete')"
            " ON CONFLICT (object_prefix) DO UPDATE SET reason = 'delete'",
            [(p, project) for p in prefixes],
        )


def quota_exceeded(project: str, used: int, adding: int, quota: int) -> ResourceExhausted:
    return ResourceExhausted(
        f"project '{project}' would store {_mib(used + adding)} of datasets, over its quota of "
        f"{_mib(quota)} ({_mib(used)} used, this upload adds {_mib(adding)}); "
        "delete old versions or ask for a larger quota",
        reason="STORAGE_QUOTA_EXCEEDED",
        metadata={"used_bytes": str(used), "quota_bytes": str(quota), "upload_bytes": str(adding)},
    )


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def enum_value(enum: type, text: str, field: str) -> int:
    """`TASK_CHAT_SFT` / `CHAT_SFT` → enum value, for filters."""
    name = text.upper().removeprefix("TASK_").removeprefix("DATA_FORMAT_")
    try:
        return enum[name].value
    except KeyError:
        choices = ", ".join(m.name for m in enum if m.value)
        msg = f"unknown {field} '{text}'; use one of {choices}"
        raise InvalidArgument(msg, violations=[FieldViolation("filter", msg)]) from None
