"""gRPC methods of InsightsService: parse the request, call InsightsApp, convert. Thin."""

from __future__ import annotations

from datetime import datetime

from google.protobuf import empty_pb2

from mtw.insights.v1 import insights_service_pb2 as pb
from mtw.insights.v1 import insights_service_pb2_grpc
from services.common import pagination
from services.common.errors import FieldViolation, InvalidArgument
from services.insights_svc import convert
from services.insights_svc.app import InsightsApp

ROLLOUT_FIELDS = ("rollout_percent", "allowed_projects", "contact")


def _check_singleton(name: str, expected: str) -> None:
    if name != expected:
        raise InvalidArgument.field("name", f"expected '{expected}', got '{name[:80]}'")


class InsightsServicer(insights_service_pb2_grpc.InsightsServiceServicer):
    def __init__(self, app: InsightsApp) -> None:
        self.app = app

    async def GetRolloutConfig(self, request, context):
        _check_singleton(request.name, convert.ROLLOUT_NAME)
        return convert.rollout_to_proto(await self.app.get_rollout())

    async def UpdateRolloutConfig(self, request, context):
        paths = list(request.update_mask.paths)
        bad = [FieldViolation("update_mask", f"'{p}' cannot be updated (only {', '.join(ROLLOUT_FIELDS)})")
               for p in paths if p not in ROLLOUT_FIELDS]
        if not paths:
            bad.append(FieldViolation("update_mask", f"name the fields to change: {', '.join(ROLLOUT_FIELDS)}"))
        if bad:
            raise InvalidArgument(f"update_mask: {bad[0].description}", bad)
        if request.rollout_config.name not in ("", convert.ROLLOUT_NAME):
            raise InvalidArgument.field("rollout_config.name", f"expected '{convert.ROLLOUT_NAME}'")
        c = request.rollout_config
        config = await self.app.update_rollout(
            c.rollout_percent if "rollout_percent" in paths else None,
            list(c.allowed_projects) if "allowed_projects" in paths else None,
            c.contact if "contact" in paths else None)
        return convert.rollout_to_proto(config)

    async def CreateExperiment(self, request, context):
        exp = convert.experiment_from_proto(request.experiment_id, request.experiment)
        return convert.experiment_to_proto(await self.app.create_experiment(exp))

    async def ListExperiments(self, request, context):
        size = pagination.page_size(request.page_size)
        secret = self.app.settings.page_token_secret
        fingerprint = pagination.request_fingerprint("experiments", request.filter)
        after = None
        if request.page_token:
            state = pagination.decode_page_token(secret, request.page_token, fingerprint)
            after = (datetime.fromisoformat(state["t"]), state["id"])
        items = await self.app.list_experiments(size + 1, after, request.filter)
        token = ""
        if len(items) > size:
            items = items[:size]
            last = items[-1]
            token = pagination.encode_page_token(
                secret, {"t": last.create_time.isoformat(), "id": last.experiment_id}, fingerprint)
        return pb.ListExperimentsResponse(experiments=[convert.experiment_to_proto(e) for e in items],
                                          next_page_token=token)

    async def GetExperimentAssignment(self, request, context):
        return convert.assignment_to_proto(await self.app.assignment(request.name))

    async def CreateSurveyResponse(self, request, context):
        r = request.survey_response
        ease = [(convert.wizard_step_name(e.step), e.ease) for e in r.step_ease]
        answer = await self.app.answer_survey(request.parent, r.skipped, r.overall, ease, r.comment)
        return convert.survey_to_proto(answer)

    async def GetSurveyResponse(self, request, context):
        return convert.survey_to_proto(await self.app.get_survey(request.name))

    async def RecordFunnelEvent(self, request, context):
        e = request.funnel_event
        seconds = e.step_duration.ToTimedelta().total_seconds() if e.HasField("step_duration") else None
        await self.app.record_funnel_event(request.parent, convert.funnel_step_name(e.step), e.resource,
                                           seconds, e.failure_category)
        return empty_pb2.Empty()

    async def GetSuccessReport(self, request, context):
        _check_singleton(request.name, convert.REPORT_NAME)
        return convert.report_to_proto(await self.app.success_report())
