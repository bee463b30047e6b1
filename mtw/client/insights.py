"""``client.insights``: the satisfaction survey, the wizard funnel, experiment variants,
and (admin keys only) the rollout, experiments and the success report.

A model version is given as ``MODEL@N``, ``MODEL/versions/N`` or a full name (a survey
belongs to a numbered version). Results are the service's protobuf messages.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any

from google.protobuf import duration_pb2, field_mask_pb2

from mtw.client import names
from mtw.client.models import version_name
from mtw.client.pagination import iterate_pages
from mtw.client.transport import SyncTransport
from mtw.insights.v1 import (
    experiment_pb2,
    funnel_pb2,
    rollout_config_pb2,
    success_report_pb2,
    survey_response_pb2,
)
from mtw.insights.v1 import insights_service_pb2 as svc
from mtw.insights.v1.insights_service_pb2_grpc import InsightsServiceStub

SERVICE = "insights"

SurveyResponse = survey_response_pb2.SurveyResponse
Experiment = experiment_pb2.Experiment
ExperimentAssignment = experiment_pb2.ExperimentAssignment
RolloutConfig = rollout_config_pb2.RolloutConfig
SuccessReport = success_report_pb2.SuccessReport
WIZARD_STEPS = ("dataset", "training", "evaluation", "save")
FUNNEL_STEPS = ("wizard_started", "dataset_valid", "job_started", "job_succeeded", "evaluation_viewed",
                "model_saved")


def _wizard_step(step: str) -> int:
    if step.lower() not in WIZARD_STEPS:
        raise ValueError(f"unknown wizard step {step!r}: use one of {', '.join(WIZARD_STEPS)}")
    return survey_response_pb2.WizardStep.Value(f"WIZARD_STEP_{step.upper()}")


class InsightsResource:
    """Surveys, funnel events, variants and admin calls (sync). Reached as ``client.insights``."""

    def __init__(self, transport: SyncTransport, project: str) -> None:
        self._t = transport
        self._project = project

    @property
    def _stub(self) -> InsightsServiceStub:
        return self._t.stub(SERVICE, InsightsServiceStub)

    def _call(self, method: Any, request: Any, idempotent: bool = True) -> Any:
        return self._t.call(method, request, idempotent=idempotent)

    def _version(self, ref: Any) -> str:
        name = version_name(ref, self._project)
        if "@" in name:  # MODEL@N → …/versions/N; an alias has no fixed version to rate
            base, ref_ = name.split("@", 1)
            if not ref_.isdigit():
                raise names.InvalidResourceName(f"{ref!r}: a survey needs a version number (MODEL@N), not an alias")
            name = f"{base}/versions/{ref_}"
        return name

    # -- survey

    def answer_survey(self, version: Any, overall: int, *, ease: Mapping[str, int] | None = None,
                      comment: str = "") -> SurveyResponse:
        """Answer a model version's survey (once; ALREADY_EXISTS the second time).
        ``ease`` maps a wizard step (dataset, training, evaluation, save) to 1..5."""
        response = SurveyResponse(overall=overall, comment=comment, step_ease=[
            SurveyResponse.StepEase(step=_wizard_step(step), ease=value) for step, value in (ease or {}).items()])
        return self._call(self._stub.CreateSurveyResponse, svc.CreateSurveyResponseRequest(
            parent=self._version(version), survey_response=response), idempotent=False)

    def skip_survey(self, version: Any) -> SurveyResponse:
        """Record that the survey of this model version was skipped."""
        return self._call(self._stub.CreateSurveyResponse, svc.CreateSurveyResponseRequest(
            parent=self._version(version), survey_response=SurveyResponse(skipped=True)), idempotent=False)

    def get_survey(self, version: Any) -> SurveyResponse:
        return self._call(self._stub.GetSurveyResponse, svc.GetSurveyResponseRequest(
            name=self._version(version) + "/surveyResponse"))

    # -- funnel and variants

    def record_step(self, step: str, *, resource: str = "", duration: timedelta | None = None,
                    failure_category: str = "") -> None:
        """Record a funnel step (wizard_started … model_saved) of the client's project."""
        if step.lower() not in FUNNEL_STEPS:
            raise ValueError(f"unknown funnel step {step!r}: use one of {', '.join(FUNNEL_STEPS)}")
        event = funnel_pb2.FunnelEvent(step=funnel_pb2.FunnelStep.Value(f"FUNNEL_STEP_{step.upper()}"),
                                       resource=resource, failure_category=failure_category)
        if duration is not None:
            event.step_duration.CopyFrom(duration_pb2.Duration(seconds=int(duration.total_seconds())))
        self._call(self._stub.RecordFunnelEvent, svc.RecordFunnelEventRequest(
            parent=f"projects/{self._project}", funnel_event=event), idempotent=False)

    def variant(self, experiment: str) -> ExperimentAssignment:
        """The project's variant of an experiment (and its parameters, e.g. the preset)."""
        return self._call(self._stub.GetExperimentAssignment, svc.GetExperimentAssignmentRequest(
            name=f"projects/{self._project}/experimentAssignments/{experiment}"))

    # -- admin

    def rollout(self) -> RolloutConfig:
        return self._call(self._stub.GetRolloutConfig, svc.GetRolloutConfigRequest(name="rolloutConfig"))

    def set_rollout(self, *, percent: float | None = None, allowed_projects: Sequence[str] | None = None,
                    contact: str | None = None) -> RolloutConfig:
        """Change the fields given; services apply it within seconds."""
        config = RolloutConfig(name="rolloutConfig", rollout_percent=percent or 0,
                               allowed_projects=list(allowed_projects or ()), contact=contact or "")
        given = {"rollout_percent": percent, "allowed_projects": allowed_projects, "contact": contact}
        paths = [field for field, value in given.items() if value is not None]
        return self._call(self._stub.UpdateRolloutConfig, svc.UpdateRolloutConfigRequest(
            rollout_config=config, update_mask=field_mask_pb2.FieldMask(paths=paths)))

    def create_experiment(self, experiment_id: str, variants: Mapping[str, int], *, description: str = "",
                          parameters: Mapping[str, Mapping[str, str]] | None = None) -> Experiment:
        """``variants`` maps variant id → weight; ``parameters`` variant id → its parameters."""
        return self._call(self._stub.CreateExperiment, svc.CreateExperimentRequest(
            experiment_id=experiment_id, experiment=Experiment(description=description, variants=[
                Experiment.Variant(id=v, weight=w, parameters=dict((parameters or {}).get(v, {})))
                for v, w in variants.items()])), idempotent=False)

    def experiments(self, *, filter: str = "", limit: int | None = None) -> Iterator[Experiment]:
        return iterate_pages(lambda token: self._call(self._stub.ListExperiments, svc.ListExperimentsRequest(
            filter=filter, page_token=token)), "experiments", limit=limit)

    def success_report(self) -> SuccessReport:
        return self._call(self._stub.GetSuccessReport, svc.GetSuccessReportRequest(name="successReport"))
