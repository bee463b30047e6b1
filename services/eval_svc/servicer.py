"""gRPC methods of EvaluationService: parse the request, call the app, convert the reply."""

from __future__ import annotations

from google.protobuf import empty_pb2

from mtw.evaluation.v1 import evaluation_service_pb2 as pb
from mtw.evaluation.v1 import evaluation_service_pb2_grpc
from services.common.auth import current_principal
from services.common.errors import InvalidArgument
from services.common.interceptors import bearer_token
from services.eval_svc import convert
from services.eval_svc.app import EvaluationApp


def _api_key(context) -> str:
    return bearer_token(context.invocation_metadata()) or ""


class EvaluationServicer(evaluation_service_pb2_grpc.EvaluationServiceServicer):
    def __init__(self, app: EvaluationApp) -> None:
        self.app = app

    async def CreateEvaluation(self, request: pb.CreateEvaluationRequest, context):
        if not request.HasField("evaluation"):
            raise InvalidArgument.field("evaluation", "required")
        evaluation = await self.app.create(current_principal(), request.parent,
                                           convert.request_from_proto(request.evaluation), request.evaluation_id,
                                           request.request_id, _api_key(context))
        return convert.evaluation_to_proto(evaluation)

    async def GetEvaluation(self, request: pb.GetEvaluationRequest, context):
        return convert.evaluation_to_proto(*await self.app.get(request.name))

    async def ListEvaluations(self, request: pb.ListEvaluationsRequest, context):
        page = await self.app.list(request.parent, request.page_size, request.page_token, request.filter)
        return pb.ListEvaluationsResponse(evaluations=[convert.evaluation_to_proto(e, b) for e, b in page.items],
                                          next_page_token=page.next_page_token)

    async def CancelEvaluation(self, request: pb.CancelEvaluationRequest, context):
        return convert.evaluation_to_proto(await self.app.cancel(request.name, request.etag))

    async def DeleteEvaluation(self, request: pb.DeleteEvaluationRequest, context):
        await self.app.delete(request.name, request.etag)
        return empty_pb2.Empty()

    async def WatchEvaluation(self, request: pb.WatchEvaluationRequest, context):
        async for event in self.app.watch(request.name, request.after_sequence_number):
            yield convert.event_to_proto(request.name, event)

    async def ListExampleResults(self, request: pb.ListExampleResultsRequest, context):
        page = await self.app.list_examples(request.parent, request.page_size, request.page_token, request.filter,
                                            request.order_by)
        return pb.ListExampleResultsResponse(
            example_results=[convert.example_to_proto(request.parent, x) for x in page.items],
            next_page_token=page.next_page_token, total_size=page.total_size)

    async def ListRecommendations(self, request: pb.ListRecommendationsRequest, context):
        page = await self.app.list_recommendations(request.parent, request.page_size, request.page_token,
                                                   request.filter)
        return pb.ListRecommendationsResponse(
            recommendations=[convert.recommendation_to_proto(e, r) for e, r in page.items],
            next_page_token=page.next_page_token)

    async def GetRecommendation(self, request: pb.GetRecommendationRequest, context):
        return convert.recommendation_to_proto(*await self.app.get_recommendation(request.name))

    async def ApplyRecommendation(self, request: pb.ApplyRecommendationRequest, context):
        return await self.app.apply(current_principal(), request.name, request.tuning_job_id, request.display_name,
                                    request.licence_acknowledged, request.request_id, _api_key(context))

    async def CompareEvaluations(self, request: pb.CompareEvaluationsRequest, context):
        comparison = await self.app.compare(list(request.evaluations), request.parent, request.page_size,
                                            request.page_token, request.filter)
        return convert.comparison_to_proto(comparison)
