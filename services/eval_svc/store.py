"""asyncpg queries for the `evaluation` schema. Database errors become domain errors here.

Every change of an evaluation's state or progress goes through :func:`record_event`,
which appends the next event and folds it into the evaluation row in one transaction —
the service and the Ray runner both write through it, so row and history agree.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
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
from services.common.task import Task
from services.eval_svc.domain.model import (
    EvalConfig,
    Evaluation,
    Event,
    ExampleResult,
    ModelRef,
    Progress,
    Recommendation,
    Results,
    RunSpec,
    can_transition,
)

SCHEMA = "evaluation"
KINDS = ("state", "progress", "log")
ACTIVE = (JobState.PREPARING, JobState.RUNNING, JobState.CANCELLING)

config_json = TypeAdapter(EvalConfig)
spec_json = TypeAdapter(RunSpec)
results_json = TypeAdapter(Results)
failure_json = TypeAdapter(JobFailure)
recommendation_json = TypeAdapter(Recommendation)


@dataclass(frozen=True)
class NewEvaluation:
    project: str
    evaluation_id: str
    display_name: str
    model: ModelRef
    dataset_version: str
    split: str
    metrics: tuple[str, ...]
    config: EvalConfig
    baseline_evaluation: str
    task: Task
    created_by_tuning_job: str
    spec: RunSpec
    creator: str
    labels: dict[str, str]
    request_id: str = ""
    resolved_model_version: str = ""


@dataclass(frozen=True)
class Attempt:
    project: str
    evaluation_id: str
    state: JobState
    spec: RunSpec
    create_time: datetime


def parse_state(value: Any) -> JobState:
    if isinstance(value, JobState):
        return value
    if isinstance(value, int):
        return JobState(value)
    return JobState[str(value).upper().removeprefix("JOB_STATE_")]


def _etag(project: str, evaluation_id: str, revision: int) -> str:
    return hashlib.sha256(f"{project}/{evaluation_id}/{revision}".encode()).hexdigest()[:16]


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _evaluation(row: asyncpg.Record) -> Evaluation:
    progress = dict(row["progress"] or {})
    kind, name = row["model_kind"], row["model_name"]
    return Evaluation(
        project=row["project"], evaluation_id=row["evaluation_id"], display_name=row["display_name"],
        model=ModelRef(**{kind: name}), resolved_model_version=row["resolved_model_version"],
        dataset_version=row["dataset_version"], split=row["split"], metrics=tuple(row["metrics"]),
        config=config_json.validate_python(row["config"]), baseline_evaluation=row["baseline_evaluation"],
        task=Task(row["task"]), created_by_tuning_job=row["created_by_tuning_job"], state=JobState(row["state"]),
        progress=Progress(examples_done=int(progress.get("examples_done") or 0),
                          total_examples=int(progress.get("total_examples") or 0),
                          eta_seconds=_finite(progress.get("eta_seconds")), message=str(progress.get("message") or "")),
        results=results_json.validate_python(row["results"]) if row["results"] else None,
        failure=failure_json.validate_python(row["failure"]) if row["failure"] else None,
        recommendation_count=row["recommendation_count"], create_time=row["create_time"],
        start_time=row["start_time"], end_time=row["end_time"], update_time=row["update_time"],
        labels=dict(row["labels"]), etag=_etag(row["project"], row["evaluation_id"], row["revision"]),
        creator=row["creator"],
    )


def _running_metrics(task: Task, running: dict[str, float]) -> dict[str, float]:
    n = running.get("examples", 0.0)
    out: dict[str, float] = {}
    if task is Task.SEQUENCE_CLASSIFICATION:
        if n:
            out["accuracy"] = running.get("correct", 0.0) / n
            out["log_loss"] = running.get("loss_sum", 0.0) / n
    elif running.get("tokens"):
        loss = running.get("loss_sum", 0.0) / running["tokens"]
        out.update(loss=loss, perplexity=math.exp(min(loss, 50.0)))
    return out


# --- the one writer of evaluation changes -------------------------------------------------


async def record_event(
    conn: asyncpg.Connection, project: str, evaluation_id: str, kind: str, payload: dict[str, Any], *,
    results: Results | None = None, failure: JobFailure | None = None,
) -> list[Event]:
    """Append an event and fold it into the row, atomically. Returns the events stored (none
    when the evaluation has ended or the state change is not allowed from where it is).

    ``progress`` payloads carry deltas (``examples``, ``correct``, ``loss_sum``, ``tokens``)
    from any number of workers; the row keeps the sums and the event the running metrics.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}")
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT state, task, next_event, progress, running, start_time FROM evaluations"
            " WHERE project = $1 AND evaluation_id = $2 FOR UPDATE", project, evaluation_id)
        if row is None or JobState(row["state"]).is_terminal:
            return []
        state = JobState(row["state"])
        progress = dict(row["progress"] or {})
        running = dict(row["running"] or {})
        sets: dict[str, Any] = {}
        stored: list[tuple[str, dict]] = []

        def change_state(target: JobState, message: str, why: JobFailure | None) -> bool:
            nonlocal state
            if target == state or not can_transition(state, target):
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
                change_state(JobState.RUNNING, "scoring examples", None)
            if not change_state(target, str(payload.get("message") or ""), failure):
                return []
            if target == JobState.SUCCEEDED and results is not None:
                sets["results"] = results_json.dump_python(results, mode="json")
                progress["examples_done"] = results.example_count
                progress["eta_seconds"] = 0.0
            if payload.get("total_examples") is not None:
                progress["total_examples"] = int(payload["total_examples"])
        elif kind == "progress":
            if state == JobState.PREPARING:
                change_state(JobState.RUNNING, "scoring examples", None)
            for key in ("examples", "correct", "loss_sum", "tokens"):
                running[key] = running.get(key, 0.0) + float(payload.get(key) or 0.0)
            done = int(running.get("examples", 0))
            total = int(payload.get("total_examples") or progress.get("total_examples") or 0)
            progress.update(examples_done=done, total_examples=total)
            started = row["start_time"] or datetime.now(UTC)
            elapsed = (datetime.now(UTC) - started).total_seconds()
            if done and total:
                progress["eta_seconds"] = max(0.0, elapsed / done * (total - done))
            if payload.get("message"):
                progress["message"] = str(payload["message"])
            sets["running"] = running
            stored.append(("progress", {"examples_done": done, "total_examples": total,
                                        "eta_seconds": progress.get("eta_seconds"),
                                        "message": progress.get("message", ""),
                                        "running_metrics": _running_metrics(Task(row["task"]), running)}))
        else:
            stored.append((kind, {k: v for k, v in payload.items() if v is not None}))
        sets["progress"] = progress
        columns = list(sets)
        assignments = [f"{c} = ${i + 3}" for i, c in enumerate(columns)]
        extra = [f"next_event = next_event + {len(stored)}", "revision = revision + 1", "update_time = now()"]
        if state in ACTIVE:
            extra.append("start_time = coalesce(start_time, now())")
        if state.is_terminal:
            extra.append("end_time = now()")
        await conn.execute(
            f"UPDATE evaluations SET {', '.join(assignments + extra)} WHERE project = $1 AND evaluation_id = $2",
            project, evaluation_id, *(sets[c] for c in columns))
        events = []
        for offset, (event_kind, body) in enumerate(stored):
            time = await conn.fetchval(
                "INSERT INTO evaluation_events (project, evaluation_id, sequence, kind, payload)"
                " VALUES ($1, $2, $3, $4, $5) RETURNING time",
                project, evaluation_id, row["next_event"] + offset, event_kind, body)
            events.append(Event(row["next_event"] + offset, time, event_kind, body))
        return events


EXAMPLE_COLUMNS = ("project", "evaluation_id", "row", "input", "prediction", "reference", "score", "correct", "loss",
                   "label_probabilities", "metrics", "truncated")


async def insert_examples(conn: asyncpg.Connection, project: str, evaluation_id: str,
                          examples: list[ExampleResult]) -> None:
    """One batch of example results; a row scored again (a re-run attempt) replaces the old one."""
    if not examples:
        return
    records = [(project, evaluation_id, e.row, e.input.replace("\x00", ""), e.prediction.replace("\x00", ""),
                e.reference.replace("\x00", ""), _finite(e.score), e.correct, _finite(e.loss),
                e.label_probabilities, e.metrics, e.truncated) for e in examples]
    columns = ", ".join(EXAMPLE_COLUMNS)
    values = ", ".join(f"${i + 1}" for i in range(len(EXAMPLE_COLUMNS)))
    updates = ", ".join(f"{c} = excluded.{c}" for c in EXAMPLE_COLUMNS[3:])
    # executemany pipelines the rows in one round trip per batch.
    await conn.executemany(
        f"INSERT INTO example_results ({columns}) VALUES ({values})"
        f" ON CONFLICT (project, evaluation_id, row) DO UPDATE SET {updates}", records)


def _example(row: asyncpg.Record) -> ExampleResult:
    return ExampleResult(row=row["row"], input=row["input"], prediction=row["prediction"], reference=row["reference"],
                         score=row["score"], correct=row["correct"], loss=row["loss"],
                         label_probabilities=dict(row["label_probabilities"]), metrics=dict(row["metrics"]),
                         truncated=row["truncated"])


# Filterable example fields → (column, type)
EXAMPLE_FIELDS = {"reference": ("reference", str), "prediction": ("prediction", str), "correct": ("correct", bool),
                  "truncated": ("truncated", bool), "score": ("score", float), "loss": ("loss", float),
                  "input": ("input", str), "row": ("row", int)}
EXAMPLE_ORDERS = {"loss desc": "loss DESC NULLS LAST, row", "loss": "loss ASC NULLS LAST, row",
                  "score": "score ASC NULLS LAST, row", "score desc": "score DESC NULLS LAST, row", "row": "row"}
_SQL_OPS = {"=": "=", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


def example_where(terms: list[Term], args: list[Any]) -> list[str]:
    """SQL conditions for example filters; values are bound as parameters."""
    where = []
    for term in terms:
        column, kind = EXAMPLE_FIELDS[term.field]
        if term.op == ":":
            if kind is not str:
                raise InvalidArgument.field("filter", f"':' works on text fields only, not {term.field}")
            args.append(term.value)
            where.append(f"position(lower(${len(args)}) in lower({column})) > 0")
            continue
        if kind is bool:
            if term.value.lower() not in ("true", "false") or term.op not in ("=", "!="):
                raise InvalidArgument.field("filter", f"{term.field} takes = or != with true or false")
            args.append(term.value.lower() == "true")
        elif kind is str:
            if term.op not in ("=", "!="):
                raise InvalidArgument.field("filter", f"{term.field} takes =, != or :")
            args.append(term.value)
        else:
            try:
                args.append(kind(term.value))
            except ValueError:
                raise InvalidArgument.field("filter", f"{term.field} needs a number, got '{term.value}'") from None
        where.append(f"{column} {_SQL_OPS[term.op]} ${len(args)}")
    return where


class EvaluationStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- evaluations ------------------------------------------------------------------

    async def insert(self, new: NewEvaluation) -> tuple[Evaluation, bool]:
        """Stores a QUEUED evaluation with its first event; (evaluation, created). With a
        request_id already used in the last 24 hours, returns that evaluation."""
        if new.request_id:
            existing = await self.by_request(new.project, new.request_id)
            if existing is not None:
                return existing, False
        progress = {"total_examples": new.spec.split_rows, "message": "queued"}
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    "INSERT INTO evaluations (project, evaluation_id, display_name, model_kind, model_name,"
                    " resolved_model_version, dataset_version, split, metrics, config, baseline_evaluation, task,"
                    " created_by_tuning_job, state, progress, spec, request_id, creator, labels, next_event)"
                    " VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,2)",
                    new.project, new.evaluation_id, new.display_name, new.model.kind, new.model.name,
                    new.resolved_model_version, new.dataset_version, new.split, list(new.metrics),
                    config_json.dump_python(new.config, mode="json"), new.baseline_evaluation, new.task.value,
                    new.created_by_tuning_job, JobState.QUEUED.value, progress,
                    spec_json.dump_python(new.spec, mode="json"), new.request_id, new.creator, new.labels)
                await conn.execute(
                    "INSERT INTO evaluation_events (project, evaluation_id, sequence, kind, payload)"
                    " VALUES ($1, $2, 1, 'state', $3)", new.project, new.evaluation_id,
                    {"previous_state": JobState.UNSPECIFIED.name, "state": JobState.QUEUED.name, "message": "queued"})
        except asyncpg.UniqueViolationError as exc:
            if new.request_id and "request" in (exc.constraint_name or ""):
                existing = await self.by_request(new.project, new.request_id)
                if existing is not None:
                    return existing, False
            raise AlreadyExists.resource("evaluation", f"projects/{new.project}/evaluations/{new.evaluation_id}") \
                from None
        return await self.get(new.project, new.evaluation_id), True

    async def by_request(self, project: str, request_id: str) -> Evaluation | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM evaluations WHERE project = $1 AND request_id = $2 AND create_time > now() - interval '24 hours'",
            project, request_id)
        return _evaluation(row) if row else None

    async def get(self, project: str, evaluation_id: str) -> Evaluation:
        row = await self.pool.fetchrow("SELECT * FROM evaluations WHERE project = $1 AND evaluation_id = $2",
                                       project, evaluation_id)
        if row is None:
            raise NotFound.resource("evaluation", f"projects/{project}/evaluations/{evaluation_id}")
        return _evaluation(row)

    async def get_spec(self, project: str, evaluation_id: str) -> RunSpec:
        value = await self.pool.fetchval("SELECT spec FROM evaluations WHERE project = $1 AND evaluation_id = $2",
                                         project, evaluation_id)
        if value is None:
            raise NotFound.resource("evaluation", f"projects/{project}/evaluations/{evaluation_id}")
        return spec_json.validate_python(value)

    async def check_etag(self, project: str, evaluation_id: str, etag: str) -> Evaluation:
        evaluation = await self.get(project, evaluation_id)
        if etag and etag != evaluation.etag:
            raise Aborted(f"evaluation '{evaluation.name}' changed since you read it; read it again",
                          reason="ETAG_MISMATCH")
        return evaluation

    async def list(self, project: str, limit: int, offset: int, terms: list[Term]) -> list[Evaluation]:
        args: list[Any] = [project]
        where = ["project = $1"]
        for term in terms:
            negate = term.op == "!="
            if term.field == "state":
                args.append(parse_state(term.value).value if term.value.upper().removeprefix("JOB_STATE_")
                            in JobState.__members__ else _bad_state(term.value))
                clause = f"state = ${len(args)}"
            elif term.field in ("tuning_job", "model_version", "base_model"):
                args.append(term.field)
                args.append(term.value)
                clause = f"(model_kind = ${len(args) - 1} AND model_name = ${len(args)})"
            elif term.field.startswith("labels."):
                args.append(term.field.removeprefix("labels."))
                args.append(term.value)
                clause = f"labels ->> ${len(args) - 1} = ${len(args)}"
            else:
                args.append(term.value)
                clause = f"{term.field} = ${len(args)}"
            where.append(f"NOT coalesce({clause}, false)" if negate else clause)
        args += [limit, offset]
        rows = await self.pool.fetch(
            f"SELECT * FROM evaluations WHERE {' AND '.join(where)} ORDER BY create_time DESC, evaluation_id DESC"
            f" LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
        return [_evaluation(r) for r in rows]

    async def delete(self, project: str, evaluation_id: str, etag: str) -> Evaluation:
        evaluation = await self.check_etag(project, evaluation_id, etag)
        if not evaluation.state.is_terminal:
            raise FailedPrecondition(f"evaluation '{evaluation.name}' is {evaluation.state.name}; cancel it first",
                                     reason="EVALUATION_RUNNING")
        await self.pool.execute("DELETE FROM evaluations WHERE project = $1 AND evaluation_id = $2",
                                project, evaluation_id)
        return evaluation

    async def record(self, project: str, evaluation_id: str, kind: str, payload: dict[str, Any], *,
                     results: Results | None = None, failure: JobFailure | None = None) -> list[Event]:
        async with self.pool.acquire() as conn:
            return await record_event(conn, project, evaluation_id, kind, payload, results=results, failure=failure)

    async def active(self) -> list[Attempt]:
        rows = await self.pool.fetch("SELECT project, evaluation_id, state, spec, create_time FROM evaluations"
                                     " WHERE state IN (2, 3, 6) ORDER BY create_time")
        return [Attempt(r["project"], r["evaluation_id"], JobState(r["state"]), spec_json.validate_python(r["spec"]),
                        r["create_time"]) for r in rows]

    async def queued(self) -> list[Attempt]:
        rows = await self.pool.fetch("SELECT project, evaluation_id, state, spec, create_time FROM evaluations"
                                     " WHERE state = 1 ORDER BY create_time, evaluation_id")
        return [Attempt(r["project"], r["evaluation_id"], JobState(r["state"]), spec_json.validate_python(r["spec"]),
                        r["create_time"]) for r in rows]

    async def queued_count(self, project: str) -> int:
        return await self.pool.fetchval("SELECT count(*) FROM evaluations WHERE project = $1 AND state = 1", project)

    async def set_spec(self, project: str, evaluation_id: str, spec: RunSpec) -> None:
        await self.pool.execute("UPDATE evaluations SET spec = $3 WHERE project = $1 AND evaluation_id = $2",
                                project, evaluation_id, spec_json.dump_python(spec, mode="json"))

    async def reusable_baseline(self, project: str, base_model: str, dataset_version: str, split: str,
                                config: EvalConfig, metrics: tuple[str, ...]) -> Evaluation | None:
        """A base-model evaluation of the same data and settings that has not failed."""
        row = await self.pool.fetchrow(
            "SELECT * FROM evaluations WHERE project = $1 AND model_kind = 'base_model' AND model_name = $2"
            " AND dataset_version = $3 AND split = $4 AND config = $5 AND metrics = $6 AND state IN (1, 2, 3, 4)"
            " ORDER BY create_time DESC LIMIT 1",
            project, base_model, dataset_version, split, config_json.dump_python(config, mode="json"), list(metrics))
        return _evaluation(row) if row else None

    async def list_events(self, project: str, evaluation_id: str, after: int, limit: int) -> list[Event]:
        rows = await self.pool.fetch(
            "SELECT sequence, time, kind, payload FROM evaluation_events WHERE project = $1 AND evaluation_id = $2"
            " AND sequence > $3 ORDER BY sequence LIMIT $4", project, evaluation_id, after, limit)
        return [Event(r["sequence"], r["time"], r["kind"], r["payload"]) for r in rows]

    # --- example results ----------------------------------------------------------------

    async def list_examples(self, project: str, evaluation_id: str, terms: list[Term], order: str, limit: int,
                            offset: int) -> tuple[list[ExampleResult], int]:
        args: list[Any] = [project, evaluation_id]
        where = ["project = $1", "evaluation_id = $2", *example_where(terms, args)]
        clause = " AND ".join(where)
        total = await self.pool.fetchval(f"SELECT count(*) FROM example_results WHERE {clause}", *args)
        rows = await self.pool.fetch(
            f"SELECT * FROM example_results WHERE {clause} ORDER BY {EXAMPLE_ORDERS[order]}"
            f" LIMIT {int(limit)} OFFSET {int(offset)}", *args)
        return [_example(r) for r in rows], int(total)

    async def example_outcomes(self, project: str, evaluation_id: str) -> dict[int, tuple[bool | None, float | None,
                                                                                           float | None]]:
        """row → (correct, score, loss): what comparisons need of every example."""
        rows = await self.pool.fetch("SELECT row, correct, score, loss FROM example_results"
                                     " WHERE project = $1 AND evaluation_id = $2", project, evaluation_id)
        return {r["row"]: (r["correct"], r["score"], r["loss"]) for r in rows}

    async def examples_by_rows(self, project: str, evaluation_id: str, rows: list[int]) -> dict[int, ExampleResult]:
        found = await self.pool.fetch("SELECT * FROM example_results WHERE project = $1 AND evaluation_id = $2"
                                      " AND row = ANY($3::bigint[])", project, evaluation_id, rows)
        return {r["row"]: _example(r) for r in found}

    async def confused_rows(self, project: str, evaluation_id: str, reference: str, prediction: str,
                            limit: int = 10) -> list[int]:
        rows = await self.pool.fetch(
            "SELECT row FROM example_results WHERE project = $1 AND evaluation_id = $2 AND reference = $3"
            " AND prediction = $4 ORDER BY loss DESC NULLS LAST, row LIMIT $5",
            project, evaluation_id, reference, prediction, limit)
        return [r["row"] for r in rows]

    # --- recommendations ----------------------------------------------------------------

    async def pending_recommendations(self) -> list[Evaluation]:
        rows = await self.pool.fetch("SELECT * FROM evaluations WHERE state = 4 AND NOT recommendations_done"
                                     " ORDER BY update_time LIMIT 20")
        return [_evaluation(r) for r in rows]

    async def pending_registry_links(self) -> list[Evaluation]:
        """Ended evaluations of a tuned model that the registry has not been told of."""
        rows = await self.pool.fetch(
            "SELECT * FROM evaluations WHERE NOT registry_linked AND model_kind <> 'base_model'"
            " AND state IN (4, 5, 7) ORDER BY update_time LIMIT 20")
        return [_evaluation(r) for r in rows]

    async def mark_registry_linked(self, project: str, evaluation_id: str) -> None:
        await self.pool.execute("UPDATE evaluations SET registry_linked = true WHERE project = $1"
                                " AND evaluation_id = $2", project, evaluation_id)

    async def save_recommendations(self, project: str, evaluation_id: str, recs: list[Recommendation]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM recommendations WHERE project = $1 AND evaluation_id = $2",
                               project, evaluation_id)
            for rec in recs:
                body = recommendation_json.dump_python(rec, mode="json")
                await conn.execute(
                    "INSERT INTO recommendations (project, evaluation_id, recommendation_id, code, severity, title,"
                    " explanation, evidence, changes, applicable) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
                    project, evaluation_id, rec.recommendation_id, rec.code, int(rec.severity), rec.title,
                    rec.explanation, body["evidence"], body["changes"], rec.applicable)
            await conn.execute(
                "UPDATE evaluations SET recommendations_done = true, recommendation_count = $3, revision = revision + 1,"
                " update_time = now() WHERE project = $1 AND evaluation_id = $2", project, evaluation_id, len(recs))

    async def reopen_recommendations(self, project: str, baseline_name: str) -> None:
        """Evaluations compared with this baseline are judged again once it has ended."""
        await self.pool.execute("UPDATE evaluations SET recommendations_done = false WHERE project = $1"
                                " AND baseline_evaluation = $2 AND state = 4", project, baseline_name)

    async def list_recommendations(self, project: str, evaluation_id: str) -> list[Recommendation]:
        rows = await self.pool.fetch("SELECT * FROM recommendations WHERE project = $1 AND evaluation_id = $2"
                                     " ORDER BY severity DESC, recommendation_id", project, evaluation_id)
        return [_recommendation(r) for r in rows]

    async def get_recommendation(self, project: str, evaluation_id: str, recommendation_id: str) -> Recommendation:
        row = await self.pool.fetchrow("SELECT * FROM recommendations WHERE project = $1 AND evaluation_id = $2"
                                       " AND recommendation_id = $3", project, evaluation_id, recommendation_id)
        if row is None:
            raise NotFound.resource(
                "recommendation", f"projects/{project}/evaluations/{evaluation_id}/recommendations/{recommendation_id}")
        return _recommendation(row)

    async def add_applied_job(self, project: str, evaluation_id: str, recommendation_id: str, job: str) -> None:
        await self.pool.execute(
            "UPDATE recommendations SET applied_tuning_jobs = applied_tuning_jobs || to_jsonb($4::text)"
            " WHERE project = $1 AND evaluation_id = $2 AND recommendation_id = $3"
            " AND NOT applied_tuning_jobs ? $4", project, evaluation_id, recommendation_id, job)


def _recommendation(row: asyncpg.Record) -> Recommendation:
    return recommendation_json.validate_python({
        "code": row["code"], "severity": row["severity"], "title": row["title"], "explanation": row["explanation"],
        "evidence": row["evidence"], "changes": row["changes"], "applicable": row["applicable"],
        "applied_tuning_jobs": row["applied_tuning_jobs"], "create_time": row["create_time"]})


def _bad_state(text: str) -> int:
    choices = ", ".join("JOB_STATE_" + s.name for s in JobState if s.value)
    raise InvalidArgument.field("filter", f"unknown state '{text}'; use one of {choices}")


def cancelled_by_user() -> JobFailure:
    return JobFailure(FailureCategory.CANCELLED_BY_USER, "cancelled at the caller's request",
                   "Create the evaluation again to run it.", code="CANCELLED")
