"""asyncpg queries for the `training` schema. Database errors become domain errors here.

Every change of a job's state, progress, metrics or checkpoint goes through
:func:`record_event`, which appends the job's next event and folds it into the job row
in one transaction — the service, the Ray runner and the trainer's event sink all
write through it, so the row and its history never disagree.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from pydantic import TypeAdapter

from services.common.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from services.common.filtering import Term
from services.common.jobs import FailureCategory, JobFailure, JobState
from services.training_svc.domain import states
from services.training_svc.domain.model import (
    Checkpoint,
    Hyperparameters,
    JobEvent,
    Lineage,
    Metrics,
    Output,
    Preset,
    Progress,
    Task,
    TrainingSpec,
    TuningJob,
    TuningMethod,
)

SCHEMA = "training"
ACTIVE = (JobState.PREPARING, JobState.RUNNING, JobState.CANCELLING)
KINDS = ("state", "step", "eval", "checkpoint", "log")

hp_json = TypeAdapter(Hyperparameters)
spec_json = TypeAdapter(TrainingSpec)
_lineage_json = TypeAdapter(Lineage)
_progress_json = TypeAdapter(Progress)
_metrics_json = TypeAdapter(Metrics)
_checkpoint_json = TypeAdapter(Checkpoint)
_output_json = TypeAdapter(Output)
failure_json = TypeAdapter(JobFailure)

@dataclass(frozen=True)
class NewJob:
    """A job as CreateTuningJob/ResumeTuningJob made it, before it is stored."""

    project: str
    job_id: str
    display_name: str
    description: str
    base_model: str
    dataset_version: str
    task: Task
    method: TuningMethod
    preset: Preset
    hyperparameters: Hyperparameters
    resolved_hyperparameters: Hyperparameters
    licence_acknowledged: bool
    lineage: Lineage
    skip_final_evaluation: bool
    labels: dict[str, str]
    spec: TrainingSpec
    creator: str
    request_id: str = ""
    register_to_model: str = ""
    total_steps: int = 0
    message: str = "queued"


@dataclass(frozen=True)
class Attempt:
    """What the dispatcher and the reconciler need of a non-final job."""

    project: str
    job_id: str
    state: JobState
    spec: TrainingSpec
    restart_count: int
    latest_checkpoint: Checkpoint | None
    update_time: datetime
    create_time: datetime = field(default_factory=lambda: datetime.now(UTC))


def parse_state(value: Any) -> JobState:
    """JobState, its number, or its name with or without the JOB_STATE_ prefix."""
    if isinstance(value, JobState):
        return value
    if isinstance(value, int):
        return JobState(value)
    return JobState[str(value).upper().removeprefix("JOB_STATE_")]


def _etag(project: str, job_id: str, revision: int) -> str:
    return hashlib.sha256(f"{project}/{job_id}/{revision}".encode()).hexdigest()[:16]


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _job(row: asyncpg.Record) -> TuningJob:
    progress = _progress_json.validate_python(row["progress"] or {})
    if row["start_time"] is not None:
        end = row["end_time"] or datetime.now(UTC)
        progress = Progress(**{**progress.__dict__, "elapsed_seconds": (end - row["start_time"]).total_seconds()})
    return TuningJob(
        project=row["project"],
        job_id=row["job_id"],
        display_name=row["display_name"],
        description=row["description"],
        base_model=row["base_model"],
        dataset_version=row["dataset_version"],
        task=Task(row["task"]),
        method=TuningMethod(row["method"]),
        preset=Preset(row["preset"]),
        hyperparameters=hp_json.validate_python(row["hyperparameters"]),
        resolved_hyperparameters=hp_json.validate_python(row["resolved_hyperparameters"]),
        licence_acknowledged=row["licence_acknowledged"],
        lineage=_lineage_json.validate_python(row["lineage"]),
        skip_final_evaluation=row["skip_final_evaluation"],
        state=JobState(row["state"]),
        progress=progress,
        latest_metrics=_metrics_json.validate_python(row["latest_metrics"] or {}),
        latest_checkpoint=(_checkpoint_json.validate_python(row["latest_checkpoint"])
                           if row["latest_checkpoint"] else None),
        output=_output_json.validate_python(row["output"]) if row["output"] else None,
        failure=failure_json.validate_python(row["failure"]) if row["failure"] else None,
        restart_count=row["restart_count"],
        evaluation=row["evaluation"],
        create_time=row["create_time"],
        start_time=row["start_time"],
        end_time=row["end_time"],
        update_time=row["update_time"],
        labels=dict(row["labels"]),
        etag=_etag(row["project"], row["job_id"], row["revision"]),
        creator=row["creator"],
        register_to_model=row["register_to_model"],
        model_version=row["model_version"],
        follow_up_error=row["follow_up_error"],
    )


def _event(row: asyncpg.Record) -> JobEvent:
    return JobEvent(sequence=row["sequence"], time=row["time"], kind=row["kind"], payload=row["payload"])


def _attempt(row: asyncpg.Record) -> Attempt:
    return Attempt(
        project=row["project"], job_id=row["job_id"], state=JobState(row["state"]),
        spec=spec_json.validate_python(row["spec"]), restart_count=row["restart_count"],
        latest_checkpoint=(_checkpoint_json.validate_python(row["latest_checkpoint"])
                           if row["latest_checkpoint"] else None),
        update_time=row["update_time"], create_time=row["create_time"],
    )


# --- the one writer of job changes ----------------------------------------------------------


async def record_event(
    conn: asyncpg.Connection, project: str, job_id: str, kind: str, payload: dict[str, Any], *,
    output: Output | None = None, failure: JobFailure | None = None,
) -> list[JobEvent]:
    """Append an event and fold it into the job row, atomically. Returns the events stored
    (none when the job has ended or the state change isn't allowed from where it is; two
    when a first step implies PREPARING → RUNNING)."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT state, next_event, progress, latest_metrics, resolved_hyperparameters"
            " FROM tuning_jobs WHERE project = $1 AND job_id = $2 FOR UPDATE",
            project, job_id,
        )
        if row is None or JobState(row["state"]).is_terminal:
            return []
        state = JobState(row["state"])
        seq = row["next_event"]
        progress = dict(row["progress"] or {})
        metrics = dict(row["latest_metrics"] or {})
        sets: dict[str, Any] = {}
        stored: list[tuple[str, dict]] = []

        def change_state(target: JobState, message: str, why: JobFailure | None) -> bool:
            nonlocal state
            if target == state or not states.can_transition(state, target):
                return False
            body: dict[str, Any] = {"previous_state": state.name, "state": target.name, "message": message}
            if why is not None:
                body["failure"] = failure_json.dump_python(why, mode="json")
                sets["failure"] = body["failure"]
            sets["state"] = target.value
            if message:
                progress["message"] = message
            stored.append(("state", body))
            state = target
            return True

        if kind == "state":
            target = parse_state(payload.get("state"))
            if target == JobState.SUCCEEDED and state == JobState.PREPARING:
                change_state(JobState.RUNNING, "training started", None)
            if not change_state(target, str(payload.get("message") or ""), failure):
                return []
            if target == JobState.SUCCEEDED and output is not None:
                sets["output"] = _output_json.dump_python(output, mode="json")
                if output.step:
                    progress["step"] = max(int(progress.get("step") or 0), output.step)
                progress["eta_seconds"] = 0.0
        else:
            body = {k: v for k, v in payload.items() if v is not None}
            if kind in ("step", "eval", "checkpoint") and state == JobState.PREPARING:
                change_state(JobState.RUNNING, "training started", None)
            if kind == "step":
                step = int(body.get("step") or 0)
                progress.update(step=step, epoch=_finite(body.get("epoch")) or 0.0,
                                eta_seconds=_finite(body.get("eta_seconds")))
                if body.get("total_steps"):
                    progress["total_steps"] = int(body["total_steps"])
                metrics.update(step=step, epoch=_finite(body.get("epoch")) or 0.0,
                               train_loss=_finite(body.get("loss")),
                               learning_rate=_finite(body.get("learning_rate")),
                               samples_per_second=_finite(body.get("samples_per_second")))
            elif kind == "eval":
                loss = _finite(body.get("eval_loss", body.get("loss")))
                step = int(body.get("step") or 0)
                best = metrics.get("best_eval_loss")
                is_best = loss is not None and (best is None or loss < best)
                body.setdefault("is_best", is_best)
                if is_best:
                    metrics.update(best_eval_loss=loss, best_eval_step=step)
                    progress["evals_without_improvement"] = 0
                else:
                    progress["evals_without_improvement"] = int(progress.get("evals_without_improvement") or 0) + 1
                body.setdefault("evaluations_without_improvement", progress["evals_without_improvement"])
                metrics.update(eval_step=step, eval_loss=loss,
                               eval_metrics={k: float(v) for k, v in (body.get("metrics") or {}).items()
                                             if _finite(v) is not None})
            elif kind == "checkpoint":
                sets["latest_checkpoint"] = {
                    "step": int(body.get("step") or 0), "epoch": _finite(body.get("epoch")) or 0.0,
                    "uri": str(body.get("uri") or ""), "eval_loss": _finite(body.get("eval_loss")),
                    "create_time": datetime.now(UTC).isoformat(),
                }
            stored.append((kind, body))

        progress.pop("elapsed_seconds", None)
        sets["progress"] = {k: v for k, v in progress.items() if k in _PROGRESS_FIELDS}
        sets["progress"]["evals_without_improvement"] = progress.get("evals_without_improvement", 0)
        sets["latest_metrics"] = metrics
        columns = list(sets)
        assignments = [f"{c} = ${i + 3}" for i, c in enumerate(columns)]
        extra = [f"next_event = next_event + {len(stored)}", "revision = revision + 1", "update_time = now()"]
        if state in ACTIVE:
            extra.append("start_time = coalesce(start_time, now())")
        if state.is_terminal:
            extra.append("end_time = now()")
        await conn.execute(
            f"UPDATE tuning_jobs SET {', '.join(assignments + extra)} WHERE project = $1 AND job_id = $2",
            project, job_id, *(sets[c] for c in columns),
        )
        events = []
        for offset, (event_kind, body) in enumerate(stored):
            time = await conn.fetchval(
                "INSERT INTO job_events (project, job_id, sequence, kind, payload)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING time",
                project, job_id, seq + offset, event_kind, body,
            )
            events.append(JobEvent(seq + offset, time, event_kind, body))
        return events


_PROGRESS_FIELDS = {f for f in Progress.__dataclass_fields__ if f != "elapsed_seconds"}


class TrainingStore:
    """Tuning jobs, their events and throughput measurements, over one pool."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool

    # --- jobs -------------------------------------------------------------------------

    async def insert_job(self, new: NewJob) -> TuningJob:
        """Stores a QUEUED job with its first event; with a request_id already used, returns that job."""
        if new.request_id:
            existing = await self._pool.fetchval(
                "SELECT job_id FROM tuning_jobs WHERE project = $1 AND request_id = $2"
                " AND create_time > now() - interval '24 hours'",
                new.project, new.request_id,
            )
            if existing:
                return await self.get_job(new.project, existing)
        hp = new.resolved_hyperparameters
        progress = {"total_steps": new.total_steps, "total_epochs": hp.epochs or 0, "message": new.message}
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO tuning_jobs (project, job_id, display_name, description, base_model,"
                    " dataset_version, task, method, preset, hyperparameters, resolved_hyperparameters,"
                    " licence_acknowledged, lineage, skip_final_evaluation, labels, spec, state, progress,"
                    " creator, request_id, register_to_model, next_event)"
                    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,2)",
                    new.project, new.job_id, new.display_name, new.description, new.base_model,
                    new.dataset_version, new.task.value, new.method.value, new.preset.value,
                    hp_json.dump_python(new.hyperparameters, mode="json"),
                    hp_json.dump_python(hp, mode="json"), new.licence_acknowledged,
                    _lineage_json.dump_python(new.lineage, mode="json"), new.skip_final_evaluation,
                    new.labels, spec_json.dump_python(new.spec, mode="json"), JobState.QUEUED.value,
                    progress, new.creator, new.request_id, new.register_to_model,
                )
                await conn.execute(
                    "INSERT INTO job_events (project, job_id, sequence, kind, payload) VALUES ($1, $2, 1, 'state', $3)",
                    new.project, new.job_id,
                    {"previous_state": JobState.UNSPECIFIED.name, "state": JobState.QUEUED.name,
                     "message": new.message},
                )
        except asyncpg.UniqueViolationError as exc:
            if new.request_id and "request" in (exc.constraint_name or ""):
                return await self.insert_job(new)
            raise AlreadyExists(
                f"tuning job 'projects/{new.project}/tuningJobs/{new.job_id}' already exists; "
                "choose another tuning_job_id", reason="TUNING_JOB_ALREADY_EXISTS",
            ) from None
        return await self.get_job(new.project, new.job_id)

    async def get_job(self, project: str, job_id: str) -> TuningJob:
        row = await self._pool.fetchrow(
            "SELECT * FROM tuning_jobs WHERE project = $1 AND job_id = $2", project, job_id
        )
        if row is None:
            raise NotFound.resource("tuning job", f"projects/{project}/tuningJobs/{job_id}")
        return _job(row)

    async def placement_group(self, project: str, job_id: str) -> str:
        """Where the job's current attempt reported its workers ('' if not yet)."""
        return await self._pool.fetchval(
            "SELECT placement_group FROM tuning_jobs WHERE project = $1 AND job_id = $2", project, job_id) or ""

    async def get_spec(self, project: str, job_id: str) -> TrainingSpec:
        value = await self._pool.fetchval(
            "SELECT spec FROM tuning_jobs WHERE project = $1 AND job_id = $2", project, job_id
        )
        if value is None:
            raise NotFound.resource("tuning job", f"projects/{project}/tuningJobs/{job_id}")
        return spec_json.validate_python(value)

    async def list_jobs(
        self, project: str, limit: int, after: tuple[datetime, str] | None, terms: list[Term],
    ) -> list[TuningJob]:
        """Newest first; `limit` rows after the keyset position `after`."""
        where, args = ["project = $1"], [project]
        if after is not None:
            args += [after[0], after[1]]
            where.append(f"(create_time, job_id) < (${len(args) - 1}, ${len(args)})")
        for term in terms:
            negate = term.op == "!="
            if term.field in ("state", "task"):
                args.append(_enum_value(term.field, term.value))
                where.append(f"{term.field} {'<>' if negate else '='} ${len(args)}")
            elif term.field in ("base_model", "dataset_version"):
                args.append(term.value)
                where.append(f"{term.field} {'<>' if negate else '='} ${len(args)}")
            elif term.field == "display_name":
                args.append(term.value)
                where.append(
                    f"position(lower(${len(args)}) in lower(display_name)) > 0" if term.op == ":"
                    else f"display_name {'<>' if negate else '='} ${len(args)}"
                )
            else:  # labels.KEY
                args += [term.field.removeprefix("labels."), term.value]
                clause = f"labels ->> ${len(args) - 1} = ${len(args)}"
                where.append(clause if not negate else f"NOT coalesce({clause}, false)")
        args.append(limit)
        rows = await self._pool.fetch(
            f"SELECT * FROM tuning_jobs WHERE {' AND '.join(where)}"
            f" ORDER BY create_time DESC, job_id DESC LIMIT ${len(args)}",
            *args,
        )
        return [_job(r) for r in rows]

    async def check_etag(self, project: str, job_id: str, etag: str) -> TuningJob:
        job = await self.get_job(project, job_id)
        if etag and etag != job.etag:
            raise Aborted(f"tuning job '{job.name}' changed since etag {etag} was read; get it again and retry",
                          reason="ETAG_MISMATCH")
        return job

    async def delete_job(self, project: str, job_id: str, etag: str) -> TuningJob:
        """Deletes a job that has ended (with its events); returns it so the caller can delete its bytes."""
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM tuning_jobs WHERE project = $1 AND job_id = $2 FOR UPDATE", project, job_id
            )
            if row is None:
                raise NotFound.resource("tuning job", f"projects/{project}/tuningJobs/{job_id}")
            job = _job(row)
            if etag and etag != job.etag:
                raise Aborted(f"tuning job '{job.name}' changed since etag {etag} was read",
                              reason="ETAG_MISMATCH")
            if not job.state.is_terminal:
                raise FailedPrecondition(
                    f"tuning job '{job.name}' is {job.state.name}; cancel it and wait for CANCELLED "
                    "before deleting it", reason="TUNING_JOB_NOT_ENDED",
                )
            await conn.execute("DELETE FROM tuning_jobs WHERE project = $1 AND job_id = $2", project, job_id)
        return job

    # --- events -----------------------------------------------------------------------

    async def record(
        self, project: str, job_id: str, kind: str, payload: dict[str, Any], *,
        output: Output | None = None, failure: JobFailure | None = None,
    ) -> list[JobEvent]:
        async with self._pool.acquire() as conn:
            return await record_event(conn, project, job_id, kind, payload, output=output, failure=failure)

    async def list_events(
        self, project: str, job_id: str, after: int, limit: int, kinds: tuple[str, ...] = (),
    ) -> list[JobEvent]:
        """Oldest first, sequence > after."""
        args: list[Any] = [project, job_id, after, limit]
        kind_clause = ""
        if kinds:
            args.append(list(kinds))
            kind_clause = " AND kind = ANY($5)"
        rows = await self._pool.fetch(
            "SELECT sequence, time, kind, payload FROM job_events WHERE project = $1 AND job_id = $2"
            f" AND sequence > $3{kind_clause} ORDER BY sequence LIMIT $4",
            *args,
        )
        return [_event(r) for r in rows]

    # --- scheduling -------------------------------------------------------------------

    async def project_counts(self, project: str) -> tuple[int, int]:
        """(queued, active) jobs of the project."""
        row = await self._pool.fetchrow(
            "SELECT count(*) FILTER (WHERE state = 1) AS queued,"
            " count(*) FILTER (WHERE state IN (2, 3, 6)) AS active"
            " FROM tuning_jobs WHERE project = $1 AND state IN (1, 2, 3, 6)",
            project,
        )
        return row["queued"], row["active"]

    async def queued(self, limit: int = 1000) -> list[Attempt]:
        rows = await self._pool.fetch(
            "SELECT * FROM tuning_jobs WHERE state = 1 ORDER BY create_time, job_id LIMIT $1", limit
        )
        return [_attempt(r) for r in rows]

    async def active(self) -> list[Attempt]:
        rows = await self._pool.fetch(
            "SELECT * FROM tuning_jobs WHERE state IN (2, 3, 6) ORDER BY create_time, job_id"
        )
        return [_attempt(r) for r in rows]

    async def attempt(self, project: str, job_id: str) -> Attempt:
        row = await self._pool.fetchrow(
            "SELECT * FROM tuning_jobs WHERE project = $1 AND job_id = $2", project, job_id
        )
        if row is None:
            raise NotFound.resource("tuning job", f"projects/{project}/tuningJobs/{job_id}")
        return _attempt(row)

    async def new_attempt(self, project: str, job_id: str, spec: TrainingSpec) -> bool:
        """Records the spec of a restart (new run name, resume checkpoint); False if the job ended."""
        result = await self._pool.execute(
            "UPDATE tuning_jobs SET spec = $3, restart_count = restart_count + 1, revision = revision + 1,"
            " update_time = now() WHERE project = $1 AND job_id = $2 AND state IN (2, 3)",
            project, job_id, spec_json.dump_python(spec, mode="json"),
        )
        return result.endswith(" 1")

    # --- throughput calibrations -----------------------------------------------------

    async def calibration(self, key: str) -> float | None:
        return await self._pool.fetchval(
            "SELECT samples_per_second FROM throughput_calibrations WHERE key = $1", key
        )

    async def save_calibration(self, key: str, samples_per_second: float) -> None:
        await self._pool.execute(
            "INSERT INTO throughput_calibrations (key, samples_per_second) VALUES ($1, $2)"
            " ON CONFLICT (key) DO UPDATE SET samples_per_second = $2, measure_time = now()",
            key, samples_per_second,
        )

    # --- follow-ups of SUCCEEDED jobs (final evaluation, registration) -------------------

    async def pending_follow_ups(self, *, evaluate: bool, register: bool,
                                 limit: int = 20) -> list[tuple[TuningJob, str]]:
        """SUCCEEDED jobs whose final evaluation (if ``evaluate``) or registration (if
        ``register``) is due, each with the traceparent of the request that created it."""
        rows = await self._pool.fetch(
            "SELECT *, coalesce(spec ->> 'traceparent', '') AS traceparent FROM tuning_jobs WHERE state = 4 AND follow_up_after <= now()"
            " AND (($1 AND NOT skip_final_evaluation AND evaluation = '')"
            "      OR ($2 AND register_to_model <> '' AND model_version = ''))"
            " ORDER BY follow_up_after, end_time LIMIT $3", evaluate, register, limit,
        )
        return [(_job(r), r["traceparent"]) for r in rows]

    async def follow_up_done(self, project: str, job_id: str, *, evaluation: str = "", model_version: str = "") -> None:
        """Records what a follow-up made (only fills fields still empty)."""
        await self._pool.execute(
            "UPDATE tuning_jobs SET evaluation = CASE WHEN evaluation = '' THEN $3 ELSE evaluation END,"
            " model_version = CASE WHEN model_version = '' THEN $4 ELSE model_version END,"
            " follow_up_error = '', revision = revision + 1, update_time = now()"
            " WHERE project = $1 AND job_id = $2", project, job_id, evaluation, model_version,
        )

    async def follow_up_failed(self, project: str, job_id: str, error: str, *, final: bool, max_attempts: int,
                               first_backoff_seconds: float, max_backoff_seconds: float) -> int:
        """Notes why a follow-up failed and when to try again (doubling, capped); returns
        the attempts so far. A final failure, or the last attempt, is not retried (the error
        stays visible on the job)."""
        return await self._pool.fetchval(
            "UPDATE tuning_jobs SET follow_up_error = $3, follow_up_attempts = follow_up_attempts + 1,"
            " follow_up_after = CASE WHEN $4 OR follow_up_attempts + 1 >= $5 THEN 'infinity'::timestamptz"
            "   ELSE now() + make_interval(secs => least($6, $7 * 2 ^ least(follow_up_attempts, 10))) END,"
            " revision = revision + 1, update_time = now()"
            " WHERE project = $1 AND job_id = $2 RETURNING follow_up_attempts",
            project, job_id, error, final, max_attempts, max_backoff_seconds, first_backoff_seconds,
        )


def _enum_value(field_name: str, text: str) -> int:
    """`JOB_STATE_RUNNING` / `RUNNING` / `TASK_CHAT_SFT` → the enum's number, for filters."""
    enum, prefix = (JobState, "JOB_STATE_") if field_name == "state" else (Task, "TASK_")
    try:
        return enum[text.upper().removeprefix(prefix)].value
    except KeyError:
        choices = ", ".join(prefix + m.name for m in enum if m.value)
        raise InvalidArgument.field("filter", f"unknown {field_name} '{text}'; use one of {choices}") from None


def cancelled_by_user() -> JobFailure:
    return JobFailure(FailureCategory.CANCELLED_BY_USER, "cancelled at the caller's request",
                      "Resume the job to continue from its last checkpoint.", code="CANCELLED")
