"""The insights use cases: rollout, experiments and assignments, surveys, the funnel, the
success report. No gRPC here: the servicer parses requests and calls these methods."""

from __future__ import annotations

from datetime import datetime

from services.common import names, rollout
from services.common.auth import KeyStore, audit, check_project, require_admin
from services.common.errors import FieldViolation, InvalidArgument, NotFound
from services.common.filtering import parse_filter
from services.insights_svc.domain import report as reports
from services.insights_svc.domain import survey as surveys
from services.insights_svc.domain.experiments import (
    Assignment,
    Experiment,
    check_variants,
    choose_variant,
)
from services.insights_svc.metrics import NO_VARIANT, WizardMetrics
from services.insights_svc.records import ServiceRecords
from services.insights_svc.settings import InsightsSettings
from services.insights_svc.store import InsightsStore

SERVICE = "insights"
ASSIGNMENT = "projects/{project}/experimentAssignments/{experiment}"
SURVEY = "projects/{project}/models/{model}/versions/{version}/surveyResponse"
MAX_ALLOWED_PROJECTS = 10_000


class InsightsApp:
    def __init__(self, settings: InsightsSettings, store: InsightsStore, key_store: KeyStore,
                 metrics: WizardMetrics, records: ServiceRecords) -> None:
        self.records = records
        self.settings = settings
        self.store = store
        self.key_store = key_store
        self.metrics = metrics

    # --- rollout (admin) -----------------------------------------------------------

    async def get_rollout(self) -> rollout.RolloutConfig:
        require_admin()
        return await rollout.read_config(self.store.pool)

    async def update_rollout(self, percent: float | None, allowed: list[str] | None,
                             contact: str | None) -> rollout.RolloutConfig:
        """Change the fields given (None: keep); audited; applies everywhere within the TTL."""
        require_admin()
        bad: list[FieldViolation] = []
        if percent is not None and not 0 <= percent <= 100:
            bad.append(FieldViolation("rollout_config.rollout_percent", "must be 0 to 100"))
        for i, project in enumerate(allowed or ()):
            if not names.valid_id(project):
                bad.append(FieldViolation(f"rollout_config.allowed_projects[{i}]",
                                          f"'{project[:80]}' is not a project id"))
        if allowed is not None and len(allowed) > MAX_ALLOWED_PROJECTS:
            bad.append(FieldViolation("rollout_config.allowed_projects", f"at most {MAX_ALLOWED_PROJECTS}"))
        if contact is not None and len(contact) > 200:
            bad.append(FieldViolation("rollout_config.contact", "at most 200 characters"))
        if bad:
            raise InvalidArgument(f"{bad[0].field}: {bad[0].description}", bad)
        async with self.store.pool.acquire() as conn, conn.transaction():
            current = await rollout.read_config(conn)
            new = await rollout.write_config(
                conn,
                round(percent * 100) if percent is not None else current.percent_bp,
                list(allowed) if allowed is not None else sorted(current.allowed_projects),
                contact if contact is not None else current.contact,
            )
            await audit(conn, "rollout.update", "rolloutConfig", {
                "before": {"percent": current.percent, "allowed_projects": sorted(current.allowed_projects)},
                "after": {"percent": new.percent, "allowed_projects": sorted(new.allowed_projects),
                          "contact": new.contact}}, service=SERVICE)
        self.key_store.rollout.forget()
        return new

    # --- experiments -----------------------------------------------------------------

    async def create_experiment(self, exp: Experiment) -> Experiment:
        require_admin()
        names.check_id(exp.experiment_id, "experiment_id")
        check_variants(list(exp.variants))
        async with self.store.pool.acquire() as conn, conn.transaction():
            created = await self.store.insert_experiment(conn, exp)
            await audit(conn, "experiment.create", f"experiments/{exp.experiment_id}", {
                "variants": {v.id: v.weight for v in exp.variants}}, service=SERVICE)
        return created

    async def list_experiments(self, limit: int, after: tuple[datetime, str] | None,
                               filter_text: str = "") -> list[Experiment]:
        require_admin()
        wanted = {"description": "", "variants": ""}
        for term in parse_filter(filter_text, tuple(wanted)):
            if term.op != ":":
                raise InvalidArgument.field("filter", f"use {term.field}:\"…\" (only ':' is supported)")
            wanted[term.field] = term.value
        return await self.store.list_experiments(limit, after, wanted["description"], wanted["variants"])

    async def assignment(self, name: str) -> Assignment:
        """The project's variant, recorded the first time it is read."""
        parts = names.parse(ASSIGNMENT, name)
        check_project(parts["project"], "experiment assignment", name)
        exp = await self.store.get_experiment(parts["experiment"])
        if exp is None:
            raise NotFound.resource("experiment", f"experiments/{parts['experiment']}")
        variant_id, when = await self.store.record_assignment(
            parts["project"], exp.experiment_id, choose_variant(exp, parts["project"]).id)
        # The recorded variant wins even if the experiment's weights were to change.
        variant = next(v for v in exp.variants if v.id == variant_id)
        return Assignment(parts["project"], exp, variant, when)

    async def _primary_variant(self, project: str) -> str:
        """The variant label of the project's metrics (recorded assignments only)."""
        return (await self.store.project_variants(project)).get(
            self.settings.insights_primary_experiment, NO_VARIANT)

    # --- survey ---------------------------------------------------------------------

    async def answer_survey(self, parent: str, skipped: bool, overall: int,
                            step_ease: list[tuple[str, int]], comment: str) -> surveys.SurveyAnswer:
        """Answer or skip a model version's survey, once (ALREADY_EXISTS the second time)."""
        ref = names.parse_model_version(parent, "parent", allow_alias=False)
        check_project(ref.project, "model version", parent)
        surveys.validate(skipped, overall, step_ease, comment)
        variants = await self.store.project_variants(ref.project)
        answer = surveys.SurveyAnswer(
            ref.project, ref.model, ref.version, skipped, None if skipped else overall,
            dict(step_ease), surveys.masked_comment(comment), variants)
        stored = await self.store.insert_survey(answer)
        self.metrics.survey(ref.project, variants.get(self.settings.insights_primary_experiment, NO_VARIANT),
                            skipped, stored.overall, stored.step_ease)
        return stored

    async def get_survey(self, name: str) -> surveys.SurveyAnswer:
        parts = names.parse(SURVEY, name)
        check_project(parts["project"], "survey response", name)
        found = await self.store.get_survey(parts["project"], parts["model"], parts["version"])
        if found is None:
            raise NotFound.resource("survey response", name)
        return found

    # --- funnel ---------------------------------------------------------------------

    async def record_funnel_event(self, parent: str, step: str, resource: str, seconds: float | None,
                                  failure_category: str) -> None:
        project = names.parse("projects/{project}", parent, "parent")["project"]
        check_project(project, "project", parent)
        bad: list[FieldViolation] = []
        if step not in reports.FUNNEL:
            bad.append(FieldViolation("funnel_event.step", f"must be one of {', '.join(reports.FUNNEL)}"))
        if seconds is not None and seconds < 0:
            bad.append(FieldViolation("funnel_event.step_duration", "must not be negative"))
        if failure_category and not (failure_category.replace("_", "").isalnum()
                                     and failure_category.isupper() and len(failure_category) <= 64):
            bad.append(FieldViolation("funnel_event.failure_category", "must be UPPER_SNAKE_CASE, at most 64"))
        if len(resource) > 1024:
            bad.append(FieldViolation("funnel_event.resource", "at most 1024 characters"))
        if bad:
            raise InvalidArgument(f"{bad[0].field}: {bad[0].description}", bad)
        await self.store.insert_funnel_event(project, step, resource, seconds, failure_category)
        self.metrics.funnel_event(project, await self._primary_variant(project), step, seconds,
                                  failure_category)

    # --- report (admin) -------------------------------------------------------------

    async def success_report(self) -> reports.SuccessReport:
        require_admin()
        start: datetime | None = self.settings.insights_target_start or await self.store.first_model_time()
        end = reports.add_months(start, self.settings.insights_target_months) if start else None
        per_month: dict[datetime, int] = {}
        in_window = 0
        for r in await self.store.models_created(start):
            per_month[r["month"]] = per_month.get(r["month"], 0) + r["n"]
            in_window += r["n"]
        comments = [reports.Comment(SURVEY.format(project=r["project"], model=r["model"], version=r["version"]),
                                    r["overall"], r["comment"], r["create_time"])
                    for r in await self.store.comments()]
        projects = await self.store.project_ids(self.settings.insights_report_max_projects)
        recorded = await self.records.funnel(projects)
        return reports.SuccessReport(
            models_created=in_window,
            models_target=self.settings.insights_models_target,
            target_start=start, target_end=end,
            models_per_month=sorted(per_month.items()),
            models_per_project={r["project"]: r["n"] for r in await self.store.models_per_project_all()},
            funnel=reports.funnel_counts(await self.store.funnel()),
            failures_by_category={r["failure_category"]: r["n"] for r in await self.store.failures()},
            satisfaction=reports.satisfaction_groups(await self.store.satisfaction_groups(),
                                                     await self.store.models_per_variant()),
            comments=comments,
            recorded_funnel=reports.recorded_counts(recorded.steps, recorded.unavailable),
            unavailable_sources=sorted(recorded.unavailable),
            projects_counted=recorded.projects,
        )

