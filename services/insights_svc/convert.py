"""proto <-> domain objects of the insights service, in one place."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import timestamp_pb2

from mtw.insights.v1 import (
    experiment_pb2,
    funnel_pb2,
    rollout_config_pb2,
    success_report_pb2,
    survey_response_pb2,
)
from services.common.rollout import RolloutConfig
from services.insights_svc.domain import report as reports
from services.insights_svc.domain.experiments import Assignment, Experiment, Variant
from services.insights_svc.domain.survey import SurveyAnswer

ROLLOUT_NAME = "rolloutConfig"
REPORT_NAME = "successReport"


def _ts(when: datetime | None) -> timestamp_pb2.Timestamp | None:
    if when is None:
        return None
    ts = timestamp_pb2.Timestamp()
    ts.FromDatetime(when)
    return ts


def rollout_to_proto(c: RolloutConfig) -> rollout_config_pb2.RolloutConfig:
    return rollout_config_pb2.RolloutConfig(
        name=ROLLOUT_NAME, rollout_percent=c.percent, allowed_projects=sorted(c.allowed_projects),
        contact=c.contact, update_time=_ts(c.update_time), revision=c.revision)


def experiment_from_proto(experiment_id: str, msg: experiment_pb2.Experiment) -> Experiment:
    return Experiment(experiment_id, tuple(Variant(v.id, v.weight, dict(v.parameters)) for v in msg.variants),
                      msg.description)


def experiment_to_proto(e: Experiment) -> experiment_pb2.Experiment:
    return experiment_pb2.Experiment(
        name=f"experiments/{e.experiment_id}", description=e.description,
        variants=[experiment_pb2.Experiment.Variant(id=v.id, weight=v.weight, parameters=v.parameters)
                  for v in e.variants],
        create_time=_ts(e.create_time))


def assignment_to_proto(a: Assignment) -> experiment_pb2.ExperimentAssignment:
    return experiment_pb2.ExperimentAssignment(
        name=f"projects/{a.project}/experimentAssignments/{a.experiment.experiment_id}",
        experiment=f"experiments/{a.experiment.experiment_id}", variant=a.variant.id,
        parameters=a.variant.parameters, assign_time=_ts(a.assign_time))


def wizard_step_name(step: int) -> str:
    """``WIZARD_STEP_TRAINING`` → ``TRAINING`` (``""`` when unset or unknown)."""
    if step == survey_response_pb2.WIZARD_STEP_UNSPECIFIED:
        return ""
    try:
        return survey_response_pb2.WizardStep.Name(step).removeprefix("WIZARD_STEP_")
    except ValueError:
        return ""


def survey_to_proto(a: SurveyAnswer) -> survey_response_pb2.SurveyResponse:
    return survey_response_pb2.SurveyResponse(
        name=f"projects/{a.project}/models/{a.model}/versions/{a.version}/surveyResponse",
        skipped=a.skipped, overall=a.overall or 0,
        step_ease=[survey_response_pb2.SurveyResponse.StepEase(
            step=survey_response_pb2.WizardStep.Value(f"WIZARD_STEP_{step}"), ease=ease)
            for step, ease in a.step_ease.items()],
        comment=a.comment, variants=a.variants, create_time=_ts(a.create_time))


def funnel_step_name(step: int) -> str:
    if step == funnel_pb2.FUNNEL_STEP_UNSPECIFIED:
        return ""
    try:
        return funnel_pb2.FunnelStep.Name(step).removeprefix("FUNNEL_STEP_")
    except ValueError:
        return ""


def report_to_proto(r: reports.SuccessReport) -> success_report_pb2.SuccessReport:
    M = success_report_pb2.SuccessReport
    return M(
        name=REPORT_NAME, models_created=r.models_created, models_target=r.models_target,
        target_start_time=_ts(r.target_start), target_end_time=_ts(r.target_end),
        models_per_month=[M.PeriodCount(period_start=_ts(month), count=n) for month, n in r.models_per_month],
        models_per_project=r.models_per_project,
        funnel=[M.FunnelStepCount(step=funnel_pb2.FunnelStep.Value(f"FUNNEL_STEP_{f.step}"), projects=f.projects,
                                  events=f.events, drop_off=f.drop_off, mean_step_seconds=f.mean_step_seconds)
                for f in r.funnel],
        failures_by_category=r.failures_by_category,
        satisfaction=[M.Satisfaction(group=s.group, responses=s.responses, skips=s.skips,
                                     mean_overall=s.mean_overall, mean_ease=s.mean_ease,
                                     models_created=s.models_created) for s in r.satisfaction],
        comments=[M.Comment(survey_response=c.survey_response, overall=c.overall or 0, text=c.text,
                            create_time=_ts(c.create_time)) for c in r.comments],
        recorded_funnel=[M.FunnelStepCount(step=funnel_pb2.FunnelStep.Value(f"FUNNEL_STEP_{f.step}"),
                                           projects=f.projects, events=f.events) for f in r.recorded_funnel],
        unavailable_sources=r.unavailable_sources, projects_counted=r.projects_counted,
    )
