"""asyncpg queries for the `registry` schema. Database errors become domain errors here.

Every change to a registered model — a new version, an alias set, moved or removed, an
update — bumps the model's `revision` under its row lock, so the model's etag changes
with anything a conditional request could depend on, and alias changes are serialised.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from services.common.db import translate_db_errors
from services.common.errors import Aborted, FailedPrecondition, InvalidArgument, NotFound
from services.common.filtering import Term
from services.registry_svc.domain import aliases as alias_rules
from services.registry_svc.domain.model import (
    AliasAction,
    AliasEntry,
    ArtifactFile,
    Artifacts,
    ExportDtype,
    ExportState,
    ExportVerification,
    Lineage,
    ModelExport,
    ModelVersion,
    RegisteredModel,
    Task,
    VersionState,
)

SCHEMA = "registry"

_MODEL_COLUMNS = """
    m.*,
    coalesce((SELECT jsonb_object_agg(a.alias, a.version) FROM aliases a
              WHERE a.project = m.project AND a.model_id = m.model_id), '{}'::jsonb) AS alias_map,
    (SELECT max(v.version) FROM model_versions v
     WHERE v.project = m.project AND v.model_id = m.model_id AND v.state = 1) AS latest_version,
    (SELECT count(*) FROM model_versions v
     WHERE v.project = m.project AND v.model_id = m.model_id AND v.state = 1) AS version_count
"""
_VERSION_COLUMNS = """
    v.*,
    coalesce((SELECT array_agg(a.alias ORDER BY a.alias) FROM aliases a
              WHERE a.project = v.project AND a.model_id = v.model_id AND a.version = v.version),
             '{}') AS alias_names
"""


def _model(row: asyncpg.Record) -> RegisteredModel:
    return RegisteredModel(
        project=row["project"], model_id=row["model_id"], display_name=row["display_name"],
        description=row["description"], task=Task(row["task"]), tags=dict(row["tags"]),
        aliases={k: int(v) for k, v in (row["alias_map"] or {}).items()},
        latest_version=row["latest_version"], version_count=int(row["version_count"] or 0),
        creator=row["creator"], revision=row["revision"], create_time=row["create_time"],
        update_time=row["update_time"],
    )


def _artifacts(value: dict[str, Any]) -> Artifacts:
    return Artifacts(
        uri=value.get("uri", ""), size_bytes=int(value.get("size_bytes", 0)),
        files=tuple(ArtifactFile(f["path"], int(f["size_bytes"]), f["sha256"]) for f in value.get("files", [])),
        merged_uri=value.get("merged_uri", ""), model_card_uri=value.get("model_card_uri", ""),
    )


def _lineage(value: dict[str, Any]) -> Lineage:
    known = {f.name for f in dataclasses.fields(Lineage)}
    values = {k: v for k, v in value.items() if k in known}
    values["evaluations"] = tuple(values.get("evaluations", ()))
    return Lineage(**values)


def _version(row: asyncpg.Record) -> ModelVersion:
    return ModelVersion(
        project=row["project"], model_id=row["model_id"], version=row["version"], task=Task(row["task"]),
        artifacts=_artifacts(row["artifacts"]), is_adapter_only=row["is_adapter_only"],
        base_model=row["base_model"], lineage=_lineage(row["lineage"]), description=row["description"],
        label_names=tuple(row["label_names"]), metrics={k: float(v) for k, v in row["metrics"].items()},
        model_card=row["model_card"], card_time=row["card_time"], examples=tuple(row["examples"]),
        state=VersionState(row["state"]), aliases=tuple(row["alias_names"] or ()), tags=dict(row["tags"]),
        creator=row["creator"], revision=row["revision"], create_time=row["create_time"],
        update_time=row["update_time"], delete_time=row["delete_time"],
    )


def _entry(row: asyncpg.Record) -> AliasEntry:
    return AliasEntry(
        project=row["project"], model_id=row["model_id"], sequence=row["sequence"], alias=row["alias"],
        action=AliasAction(row["action"]), version=row["version"], previous_version=row["previous_version"],
        reason=row["reason"], actor=row["actor"], time=row["time"],
    )


def _export(row: asyncpg.Record) -> ModelExport:
    verification = row["verification"]
    return ModelExport(
        project=row["project"], model_id=row["model_id"], version=row["version"], export_id=row["export_id"],
        dtype=ExportDtype(row["dtype"]), state=ExportState(row["state"]), uri=row["uri"],
        size_bytes=row["size_bytes"], failure=row["failure"],
        verification=ExportVerification(**verification) if verification else None,
        create_time=row["create_time"], end_time=row["end_time"],
    )


def artifacts_json(a: Artifacts) -> dict[str, Any]:
    return dataclasses.asdict(a)


def lineage_json(lineage: Lineage) -> dict[str, Any]:
    out = dataclasses.asdict(lineage)
    out["evaluations"] = list(lineage.evaluations)
    return out


def _model_not_found(project: str, model_id: str) -> NotFound:
    return NotFound.resource("registered model", f"projects/{project}/models/{model_id}")


def _version_not_found(project: str, model_id: str, version: int | str) -> NotFound:
    return NotFound.resource("model version", f"projects/{project}/models/{model_id}/versions/{version}")


def _check_etag(kind: str, name: str, current: str, given: str) -> None:
    if given and given != current:
        raise Aborted(f"{kind} '{name}' changed since etag {given} was read; get it again and retry",
                      reason="ETAG_MISMATCH", metadata={"resource_name": name})


@dataclass(frozen=True)
class NewVersion:
    """A version as CreateModelVersion made it, before it has a number."""

    project: str
    model_id: str
    task: Task
    artifacts: Artifacts
    is_adapter_only: bool
    base_model: str
    lineage: Lineage
    description: str
    label_names: tuple[str, ...]
    metrics: dict[str, float]
    examples: tuple[str, ...]
    tags: dict[str, str]
    creator: str
    request_id: str
    model_card: str = ""


class RegistryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- registered models ---------------------------------------------------------

    async def insert_model(self, model: RegisteredModel) -> RegisteredModel:
        with translate_db_errors("registered model", model.name):
            await self.pool.execute(
                "INSERT INTO registered_models (project, model_id, display_name, description, task, tags, creator)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7)",
                model.project, model.model_id, model.display_name, model.description, model.task.value,
                model.tags, model.creator,
            )
        return await self.get_model(model.project, model.model_id)

    async def get_model(self, project: str, model_id: str, conn: Any = None) -> RegisteredModel:
        row = await (conn or self.pool).fetchrow(
            f"SELECT {_MODEL_COLUMNS} FROM registered_models m WHERE m.project = $1 AND m.model_id = $2",
            project, model_id,
        )
        if row is None:
            raise _model_not_found(project, model_id)
        return _model(row)

    async def list_models(self, project: str, limit: int, after: tuple[datetime, str] | None,
                          terms: list[Term]) -> list[RegisteredModel]:
        """Most recently updated first."""
        where, args = ["m.project = $1"], [project]
        if after is not None:
            args += [after[0], after[1]]
            where.append(f"(m.update_time, m.model_id) < (${len(args) - 1}, ${len(args)})")
        for term in terms:
            negate = term.op == "!="
            if term.field == "display_name":
                args.append(term.value)
                clause = (f"position(lower(${len(args)}) in lower(m.display_name)) > 0" if term.op == ":"
                          else f"m.display_name = ${len(args)}")
            elif term.field == "task":
                args.append(_enum_value(Task, "TASK_", term.value))
                clause = f"m.task = ${len(args)}"
            elif term.field == "aliases":
                args.append(term.value)
                clause = (f"EXISTS (SELECT 1 FROM aliases a WHERE a.project = m.project"
                          f" AND a.model_id = m.model_id AND a.alias = ${len(args)})")
            else:  # tags.KEY
                args += [term.field.removeprefix("tags."), term.value]
                clause = f"coalesce(m.tags ->> ${len(args) - 1} = ${len(args)}, false)"
            where.append(f"NOT ({clause})" if negate else clause)
        args.append(limit)
        rows = await self.pool.fetch(
            f"SELECT {_MODEL_COLUMNS} FROM registered_models m WHERE {' AND '.join(where)}"
            f" ORDER BY m.update_time DESC, m.model_id DESC LIMIT ${len(args)}", *args,
        )
        return [_model(r) for r in rows]

    async def update_model(self, project: str, model_id: str, changes: dict[str, Any], etag: str) -> RegisteredModel:
        async with self.pool.acquire() as conn, conn.transaction():
            model = await self._lock_model(conn, project, model_id, etag)
            if "task" in changes and changes["task"] != model.task.value and model.latest_version is not None:
                raise FailedPrecondition(
                    f"registered model '{model.name}' has versions of {model.task.name}; its task cannot change",
                    reason="TASK_FIXED_BY_VERSIONS")
            if changes:
                sets = ", ".join(f"{col} = ${i + 3}" for i, col in enumerate(changes))
                await conn.execute(
                    f"UPDATE registered_models SET {sets}, revision = revision + 1, update_time = now()"
                    " WHERE project = $1 AND model_id = $2", project, model_id, *changes.values())
            return await self.get_model(project, model_id, conn)

    async def _lock_model(self, conn: asyncpg.Connection, project: str, model_id: str,
                          etag: str = "") -> RegisteredModel:
        found = await conn.fetchval(
            "SELECT 1 FROM registered_models WHERE project = $1 AND model_id = $2 FOR UPDATE", project, model_id)
        if not found:
            raise _model_not_found(project, model_id)
        model = await self.get_model(project, model_id, conn)
        _check_etag("registered model", model.name, model.etag, etag)
        return model

    async def delete_model(self, project: str, model_id: str, etag: str, force: bool) -> list[ModelVersion]:
        """Deletes the model with its versions, aliases and history; returns the versions
        (so the caller deletes their bytes). FailedPrecondition with active versions unless forced."""
        async with self.pool.acquire() as conn, conn.transaction():
            model = await self._lock_model(conn, project, model_id, etag)
            if model.version_count and not force:
                raise FailedPrecondition(
                    f"registered model '{model.name}' has {model.version_count} active version(s); delete them "
                    "first or set force=true to delete every version and its files",
                    reason="MODEL_HAS_VERSIONS", metadata={"version_count": str(model.version_count)})
            rows = await conn.fetch(
                f"SELECT {_VERSION_COLUMNS} FROM model_versions v WHERE v.project = $1 AND v.model_id = $2",
                project, model_id)
            await conn.execute("DELETE FROM aliases WHERE project = $1 AND model_id = $2", project, model_id)
            await conn.execute("DELETE FROM registered_models WHERE project = $1 AND model_id = $2",
                               project, model_id)
        return [_version(r) for r in rows]

    # --- versions --------------------------------------------------------------------

    async def version_for_request(self, project: str, model_id: str, request_id: str) -> ModelVersion | None:
        if not request_id:
            return None
        row = await self.pool.fetchrow(
            f"SELECT {_VERSION_COLUMNS} FROM model_versions v"
            " WHERE v.project = $1 AND v.model_id = $2 AND v.request_id = $3", project, model_id, request_id)
        return _version(row) if row else None

    async def next_version_number(self, project: str, model_id: str) -> int:
        """Reserves a version number (numbers are never reused, even when creation fails)."""
        number = await self.pool.fetchval(
            "UPDATE registered_models SET next_version = next_version + 1 WHERE project = $1 AND model_id = $2"
            " RETURNING next_version - 1", project, model_id)
        if number is None:
            raise _model_not_found(project, model_id)
        return number

    async def insert_version(self, new: NewVersion, number: int) -> ModelVersion:
        async with self.pool.acquire() as conn, conn.transaction():
            model = await self._lock_model(conn, new.project, new.model_id)
            if model.task not in (Task.UNSPECIFIED, new.task):
                raise FailedPrecondition(
                    f"registered model '{model.name}' holds {model.task.name} models, and this one does "
                    f"{new.task.name}; register it under another model", reason="TASK_MISMATCH")
            with translate_db_errors("model version", model.version_name(number)):
                await conn.execute(
                    "INSERT INTO model_versions (project, model_id, version, description, task, label_names,"
                    " artifacts, is_adapter_only, base_model, lineage, metrics, examples, tags, creator, request_id,"
                    " model_card) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
                    new.project, new.model_id, number, new.description, new.task.value, list(new.label_names),
                    artifacts_json(new.artifacts), new.is_adapter_only, new.base_model, lineage_json(new.lineage),
                    new.metrics, list(new.examples), new.tags, new.creator, new.request_id, new.model_card,
                )
            await conn.execute(
                "UPDATE registered_models SET task = $3, revision = revision + 1, update_time = now()"
                " WHERE project = $1 AND model_id = $2", new.project, new.model_id, new.task.value)
            return await self.get_version(new.project, new.model_id, number, conn)

    async def get_version(self, project: str, model_id: str, version: int, conn: Any = None) -> ModelVersion:
        row = await (conn or self.pool).fetchrow(
            f"SELECT {_VERSION_COLUMNS} FROM model_versions v"
            " WHERE v.project = $1 AND v.model_id = $2 AND v.version = $3", project, model_id, version)
        if row is None:
            if not await (conn or self.pool).fetchval(
                    "SELECT 1 FROM registered_models WHERE project = $1 AND model_id = $2", project, model_id):
                raise _model_not_found(project, model_id)
            raise _version_not_found(project, model_id, version)
        return _version(row)

    async def versions_made_by(self, project: str, tuning_job: str) -> list[ModelVersion]:
        """The live versions registered from ``tuning_job``, in any of the project's models."""
        rows = await self.pool.fetch(
            f"SELECT {_VERSION_COLUMNS} FROM model_versions v WHERE v.project = $1"
            " AND v.lineage ->> 'tuning_job' = $2 AND v.state = 1 ORDER BY v.model_id, v.version", project, tuning_job)
        return [_version(r) for r in rows]

    @contextlib.asynccontextmanager
    async def version_lock(self, version: ModelVersion) -> AsyncIterator[None]:
        """Serialises rewrites of one version's lineage and card, each made from what it
        read inside the block. An advisory lock, so the writes may use other connections."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"model-version:{version.name}")
            yield

    async def alias_target(self, project: str, model_id: str, alias: str) -> int:
        version = await self.pool.fetchval(
            "SELECT version FROM aliases WHERE project = $1 AND model_id = $2 AND alias = $3",
            project, model_id, alias)
        if version is None:
            model = await self.get_model(project, model_id)  # NotFound for the model first
            known = ", ".join(sorted(model.aliases)) or "none yet"
            raise NotFound(f"registered model '{model.name}' has no alias '{alias}' (its aliases: {known})",
                           reason="ALIAS_NOT_FOUND", metadata={"resource_name": f"{model.name}@{alias}"})
        return version

    async def list_versions(self, project: str, model_id: str, limit: int, before: int | None,
                            terms: list[Term]) -> list[ModelVersion]:
        """Newest first; deleted versions only when a `state` term asks for them."""
        where, args = ["v.project = $1", "v.model_id = $2"], [project, model_id]
        if before is not None:
            args.append(before)
            where.append(f"v.version < ${len(args)}")
        if not any(t.field == "state" for t in terms):
            where.append("v.state = 1")
        for term in terms:
            negate = term.op == "!="
            if term.field == "state":
                args.append(_enum_value(VersionState, "MODEL_VERSION_STATE_", term.value))
                clause = f"v.state = ${len(args)}"
            elif term.field == "aliases":
                args.append(term.value)
                clause = (f"EXISTS (SELECT 1 FROM aliases a WHERE a.project = v.project AND a.model_id ="
                          f" v.model_id AND a.version = v.version AND a.alias = ${len(args)})")
            elif term.field in ("lineage.tuning_job", "lineage.dataset_version", "lineage.base_model"):
                args.append(term.value)
                clause = f"v.lineage ->> '{term.field.removeprefix('lineage.')}' = ${len(args)}"
            else:  # tags.KEY
                args += [term.field.removeprefix("tags."), term.value]
                clause = f"coalesce(v.tags ->> ${len(args) - 1} = ${len(args)}, false)"
            where.append(f"NOT ({clause})" if negate else clause)
        args.append(limit)
        rows = await self.pool.fetch(
            f"SELECT {_VERSION_COLUMNS} FROM model_versions v WHERE {' AND '.join(where)}"
            f" ORDER BY v.version DESC LIMIT ${len(args)}", *args)
        return [_version(r) for r in rows]

    async def update_version(self, project: str, model_id: str, version: int, changes: dict[str, Any],
                             etag: str) -> ModelVersion:
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock_model(conn, project, model_id)
            current = await self.get_version(project, model_id, version, conn)
            _check_etag("model version", current.name, current.etag, etag)
            if changes:
                sets = ", ".join(f"{col} = ${i + 4}" for i, col in enumerate(changes))
                await conn.execute(
                    f"UPDATE model_versions SET {sets}, revision = revision + 1, update_time = now()"
                    " WHERE project = $1 AND model_id = $2 AND version = $3",
                    project, model_id, version, *changes.values())
            return await self.get_version(project, model_id, version, conn)

    async def mark_deleted(self, project: str, model_id: str, version: int, etag: str) -> ModelVersion:
        """The version becomes a tombstone (its bytes are the caller's to delete).
        FailedPrecondition while an alias points at it."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock_model(conn, project, model_id)
            current = await self.get_version(project, model_id, version, conn)
            _check_etag("model version", current.name, current.etag, etag)
            if current.is_deleted:
                return current
            if current.aliases:
                shown = ", ".join(current.aliases)
                raise FailedPrecondition(
                    f"model version '{current.name}' is what alias(es) {shown} point at; move or delete "
                    "the alias(es) first", reason="VERSION_HAS_ALIASES", metadata={"aliases": shown})
            await conn.execute(
                "UPDATE model_versions SET state = $4, revision = revision + 1, update_time = now(),"
                " delete_time = now() WHERE project = $1 AND model_id = $2 AND version = $3",
                project, model_id, version, VersionState.DELETED.value)
            await conn.execute("UPDATE registered_models SET revision = revision + 1, update_time = now()"
                               " WHERE project = $1 AND model_id = $2", project, model_id)
            return await self.get_version(project, model_id, version, conn)

    async def set_artifacts(self, project: str, model_id: str, version: int, artifacts: Artifacts) -> None:
        await self.pool.execute(
            "UPDATE model_versions SET artifacts = $4, update_time = now()"
            " WHERE project = $1 AND model_id = $2 AND version = $3",
            project, model_id, version, artifacts_json(artifacts))

    async def set_card(self, project: str, model_id: str, version: int, card: str, lineage: Lineage,
                       metrics: dict[str, float]) -> None:
        await self.pool.execute(
            "UPDATE model_versions SET model_card = $4, lineage = $5, metrics = $6, card_time = now()"
            " WHERE project = $1 AND model_id = $2 AND version = $3",
            project, model_id, version, card, lineage_json(lineage), metrics)

    # --- aliases ---------------------------------------------------------------------

    async def change_alias(self, project: str, model_id: str, alias: str, action: AliasAction,
                           version: int | None, reason: str, actor: str, etag: str) -> RegisteredModel:
        """Set (version given), delete (None) or roll back an alias, and record it in the history."""
        async with self.pool.acquire() as conn, conn.transaction():
            model = await self._lock_model(conn, project, model_id, etag)
            previous = model.aliases.get(alias)
            if action is AliasAction.ROLLED_BACK:
                history = await conn.fetch(
                    "SELECT action, version FROM alias_history WHERE project = $1 AND model_id = $2"
                    " AND alias = $3 ORDER BY sequence", project, model_id, alias)
                version = alias_rules.rollback_target(
                    model.name, alias, [(AliasAction(r["action"]), r["version"]) for r in history])
            if action is AliasAction.DELETED:
                if previous is None:
                    await self.alias_target(project, model_id, alias)  # raises NotFound with the known aliases
                await conn.execute("DELETE FROM aliases WHERE project = $1 AND model_id = $2 AND alias = $3",
                                   project, model_id, alias)
            else:
                assert version is not None
                target = await self.get_version(project, model_id, version, conn)
                if target.is_deleted:
                    raise FailedPrecondition(
                        f"model version '{target.name}' is deleted; an alias can only point at an active version",
                        reason="VERSION_DELETED")
                if previous == version and action is AliasAction.SET:
                    return model  # already there: nothing to record
                await conn.execute(
                    "INSERT INTO aliases (project, model_id, alias, version) VALUES ($1, $2, $3, $4)"
                    " ON CONFLICT (project, model_id, alias) DO UPDATE SET version = EXCLUDED.version",
                    project, model_id, alias, version)
            await conn.execute(
                "INSERT INTO alias_history (project, model_id, alias, action, version, previous_version, reason,"
                " actor) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                project, model_id, alias, action.value, version if action is not AliasAction.DELETED else None,
                previous, reason, actor)
            await conn.execute("UPDATE registered_models SET revision = revision + 1, update_time = now()"
                               " WHERE project = $1 AND model_id = $2", project, model_id)
            return await self.get_model(project, model_id, conn)

    async def list_alias_history(self, project: str, model_id: str, limit: int, before: int | None,
                                 terms: list[Term]) -> list[AliasEntry]:
        """Newest first."""
        await self.get_model(project, model_id)
        where, args = ["project = $1", "model_id = $2"], [project, model_id]
        if before is not None:
            args.append(before)
            where.append(f"sequence < ${len(args)}")
        for term in terms:
            if term.field == "alias":
                args.append(term.value)
                where.append(f"alias {'<>' if term.op == '!=' else '='} ${len(args)}")
            elif term.field == "action":
                args.append(_enum_value(AliasAction, "ALIAS_ACTION_", term.value))
                where.append(f"action {'<>' if term.op == '!=' else '='} ${len(args)}")
            else:  # time
                args.append(_timestamp(term.value))
                op = {":": "=", "!=": "<>"}.get(term.op, term.op)
                where.append(f"time {op} ${len(args)}")
        args.append(limit)
        rows = await self.pool.fetch(
            f"SELECT * FROM alias_history WHERE {' AND '.join(where)} ORDER BY sequence DESC LIMIT ${len(args)}",
            *args)
        return [_entry(r) for r in rows]

    # --- exports ---------------------------------------------------------------------

    async def insert_export(self, export: ModelExport) -> tuple[ModelExport, bool]:
        """Stores a QUEUED export, or returns the live one with the same dtype; True when new."""
        async with self.pool.acquire() as conn, conn.transaction():
            await self._lock_model(conn, export.project, export.model_id)
            row = await conn.fetchrow(
                "SELECT * FROM model_exports WHERE project = $1 AND model_id = $2 AND version = $3 AND dtype = $4"
                " AND state IN (1, 2, 3, 4)", export.project, export.model_id, export.version, export.dtype.value)
            if row is not None:
                return _export(row), False
            await conn.execute(
                "INSERT INTO model_exports (project, model_id, version, export_id, dtype, state)"
                " VALUES ($1, $2, $3, $4, $5, $6)", export.project, export.model_id, export.version,
                export.export_id, export.dtype.value, export.state.value)
            return await self.get_export(export.project, export.model_id, export.version, export.export_id,
                                         conn), True

    async def get_export(self, project: str, model_id: str, version: int, export_id: str,
                         conn: Any = None) -> ModelExport:
        row = await (conn or self.pool).fetchrow(
            "SELECT * FROM model_exports WHERE project = $1 AND model_id = $2 AND version = $3 AND export_id = $4",
            project, model_id, version, export_id)
        if row is None:
            raise NotFound.resource(
                "model export", f"projects/{project}/models/{model_id}/versions/{version}/exports/{export_id}")
        return _export(row)

    async def unfinished_exports(self) -> list[ModelExport]:
        rows = await self.pool.fetch("SELECT * FROM model_exports WHERE state IN (1, 2, 3) ORDER BY create_time")
        return [_export(r) for r in rows]

    async def finish_export(self, export: ModelExport, state: ExportState, *, uri: str = "", size_bytes: int = 0,
                            failure: dict[str, str] | None = None,
                            verification: ExportVerification | None = None) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE model_exports SET state = $5, uri = $6, size_bytes = $7, failure = $8, verification = $9,"
                " end_time = now() WHERE project = $1 AND model_id = $2 AND version = $3 AND export_id = $4",
                export.project, export.model_id, export.version, export.export_id, state.value, uri, size_bytes,
                failure, dataclasses.asdict(verification) if verification else None)
            if state is ExportState.SUCCEEDED:
                await conn.execute(
                    "UPDATE model_versions SET artifacts = jsonb_set(artifacts, '{merged_uri}', to_jsonb($4::text)),"
                    " update_time = now() WHERE project = $1 AND model_id = $2 AND version = $3",
                    export.project, export.model_id, export.version, uri)

    async def mark_export_running(self, export: ModelExport) -> None:
        await self.pool.execute(
            "UPDATE model_exports SET state = $5 WHERE project = $1 AND model_id = $2 AND version = $3"
            " AND export_id = $4", export.project, export.model_id, export.version, export.export_id,
            ExportState.RUNNING.value)

    async def fail_exports_of(self, project: str, model_id: str, version: int, message: str) -> None:
        await self.pool.execute(
            "UPDATE model_exports SET state = $4, end_time = now(), failure = $5"
            " WHERE project = $1 AND model_id = $2 AND version = $3 AND state IN (1, 2, 3)",
            project, model_id, version, ExportState.FAILED.value,
            {"category": "CANCELLED_BY_USER", "message": message, "hint": ""})


def _enum_value(enum_cls: Any, prefix: str, value: str) -> int:
    text = value.strip().upper()
    if text.isdigit():
        number = int(text)
        if number in {m.value for m in enum_cls}:
            return number
    member = getattr(enum_cls, text.removeprefix(prefix), None)
    if member is None or member.value == 0:
        choices = ", ".join(prefix + m.name for m in enum_cls if m.value)
        raise InvalidArgument.field("filter", f"unknown value '{value}'; use one of {choices}")
    return member.value


def _timestamp(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidArgument.field("filter", f"'{value}' is not a time; use RFC 3339, e.g. "
                                    "2025-01-01T00:00:00Z") from None
