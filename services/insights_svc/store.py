"""asyncpg queries for the ``insights`` schema (and nothing else)."""

from __future__ import annotations

from typing import Any

import asyncpg

from services.common.db import translate_db_errors
from services.insights_svc.domain.experiments import Experiment, Variant
from services.insights_svc.domain.survey import SurveyAnswer

SCHEMA = "insights"


def _experiment(row) -> Experiment:
    return Experiment(
        row["experiment_id"],
        tuple(Variant(v["id"], v["weight"], dict(v.get("parameters") or {})) for v in row["variants"]),
        row["description"], row["create_time"])


def _survey(row) -> SurveyAnswer:
    return SurveyAnswer(row["project"], row["model"], row["version"], row["skipped"], row["overall"],
                        dict(row["step_ease"]), row["comment"], dict(row["variants"]), row["create_time"])


class InsightsStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # --- experiments -------------------------------------------------------------

    async def insert_experiment(self, conn: asyncpg.Connection, exp: Experiment) -> Experiment:
        variants = [{"id": v.id, "weight": v.weight, "parameters": v.parameters} for v in exp.variants]
        with translate_db_errors("experiment", f"experiments/{exp.experiment_id}"):
            row = await conn.fetchrow(
                "INSERT INTO experiments (experiment_id, description, variants) VALUES ($1, $2, $3) "
                "RETURNING *", exp.experiment_id, exp.description, variants)
        return _experiment(row)

    async def get_experiment(self, experiment_id: str) -> Experiment | None:
        row = await self.pool.fetchrow("SELECT * FROM experiments WHERE experiment_id = $1", experiment_id)
        return _experiment(row) if row else None

    async def list_experiments(self, limit: int, after: tuple[Any, str] | None,
                               description_has: str = "", variant: str = "") -> list[Experiment]:
        """Newest first, keyset-paged on (create_time, experiment_id)."""
        rows = await self.pool.fetch(
            "SELECT * FROM experiments WHERE ($2::timestamptz IS NULL OR (create_time, experiment_id) < ($2, $3)) "
            "AND ($4 = '' OR strpos(lower(description), lower($4)) > 0) "
            "AND ($5 = '' OR variants @> jsonb_build_array(jsonb_build_object('id', $5::text))) "
            "ORDER BY create_time DESC, experiment_id DESC LIMIT $1",
            limit, after[0] if after else None, after[1] if after else "", description_has, variant)
        return [_experiment(r) for r in rows]

    async def record_assignment(self, project: str, experiment_id: str, variant: str) -> tuple[str, Any]:
        """Record the variant unless one is recorded already; returns the recorded (variant, time)."""
        row = await self.pool.fetchrow(
            "WITH ins AS (INSERT INTO assignments (project, experiment_id, variant) VALUES ($1, $2, $3) "
            "ON CONFLICT (project, experiment_id) DO NOTHING RETURNING variant, assign_time) "
            "SELECT variant, assign_time FROM ins UNION ALL "
            "SELECT variant, assign_time FROM assignments WHERE project = $1 AND experiment_id = $2 "
            "LIMIT 1", project, experiment_id, variant)
        return row["variant"], row["assign_time"]

    async def project_variants(self, project: str) -> dict[str, str]:
        rows = await self.pool.fetch(
            "SELECT experiment_id, variant FROM assignments WHERE project = $1", project)
        return {r["experiment_id"]: r["variant"] for r in rows}

    # --- survey ------------------------------------------------------------------

    async def insert_survey(self, a: SurveyAnswer) -> SurveyAnswer:
        name = f"projects/{a.project}/models/{a.model}/versions/{a.version}/surveyResponse"
        with translate_db_errors("survey response", name):
            row = await self.pool.fetchrow(
                "INSERT INTO survey_responses (project, model, version, skipped, overall, step_ease, "
                "comment, variants) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
                a.project, a.model, a.version, a.skipped, a.overall, a.step_ease, a.comment, a.variants)
        return _survey(row)

    async def get_survey(self, project: str, model: str, version: str) -> SurveyAnswer | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM survey_responses WHERE project = $1 AND model = $2 AND version = $3",
            project, model, version)
        return _survey(row) if row else None

    # --- funnel ------------------------------------------------------------------

    async def insert_funnel_event(self, project: str, step: str, resource: str,
                                  seconds: float | None, failure_category: str) -> None:
        await self.pool.execute(
            "INSERT INTO funnel_events (project, step, resource, step_seconds, failure_category) "
            "VALUES ($1, $2, $3, $4, $5)", project, step, resource, seconds, failure_category)

    # --- report ------------------------------------------------------------------

    async def models_created(self, since) -> list[asyncpg.Record]:
        """MODEL_SAVED events since ``since`` (None: all), per project and month."""
        return await self.pool.fetch(
            "SELECT project, date_trunc('month', event_time) AS month, count(*) AS n, min(event_time) AS first "
            "FROM funnel_events WHERE step = 'MODEL_SAVED' AND failure_category = '' "
            "AND ($1::timestamptz IS NULL OR event_time >= $1) GROUP BY project, month ORDER BY month", since)

    async def first_model_time(self):
        return await self.pool.fetchval(
            "SELECT min(event_time) FROM funnel_events WHERE step = 'MODEL_SAVED' AND failure_category = ''")

    async def funnel(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT step, count(DISTINCT project) AS projects, count(*) AS events, avg(step_seconds) AS seconds "
            "FROM funnel_events WHERE failure_category = '' GROUP BY step")

    async def failures(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT failure_category, count(*) AS n FROM funnel_events WHERE failure_category <> '' "
            "GROUP BY failure_category")

    async def satisfaction_groups(self) -> list[asyncpg.Record]:
        """Survey counts and score sums per (month, experiment, variant); a response counts once
        per experiment its project is in, and once with experiment NULL."""
        return await self.pool.fetch(
            "WITH s AS (SELECT project, skipped, overall, step_ease, "
            "  to_char(create_time AT TIME ZONE 'UTC', 'YYYY-MM') AS month FROM survey_responses), "
            "g AS (SELECT s.*, NULL::text AS experiment_id, NULL::text AS variant FROM s UNION ALL "
            "  SELECT s.*, a.experiment_id, a.variant FROM s JOIN assignments a USING (project)) "
            "SELECT month, experiment_id, variant, count(*) FILTER (WHERE NOT skipped) AS responses, "
            "count(*) FILTER (WHERE skipped) AS skips, coalesce(sum(overall), 0) AS overall_sum, "
            "jsonb_agg(step_ease) FILTER (WHERE NOT skipped) AS eases "
            "FROM g GROUP BY month, experiment_id, variant")

    async def models_per_variant(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT a.experiment_id, a.variant, count(*) AS n FROM funnel_events f "
            "JOIN assignments a USING (project) WHERE f.step = 'MODEL_SAVED' AND f.failure_category = '' "
            "GROUP BY a.experiment_id, a.variant")

    async def models_per_project_all(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT project, count(*) AS n FROM funnel_events WHERE step = 'MODEL_SAVED' "
            "AND failure_category = '' GROUP BY project")

    async def project_ids(self, limit: int) -> list[str]:
        """Projects to ask the other services about (iam is the shared schema every service reads)."""
        rows = await self.pool.fetch("SELECT project_id FROM iam.projects ORDER BY project_id LIMIT $1", limit)
        return [r["project_id"] for r in rows]

    async def comments(self, limit: int = 100) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT project, model, version, overall, comment, create_time FROM survey_responses "
            "WHERE comment <> '' ORDER BY create_time DESC LIMIT $1", limit)
