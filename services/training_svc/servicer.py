"""gRPC methods of TuningService: parse the request, call the app, convert the reply."""

from __future__ import annotations

from google.protobuf import empty_pb2

from mtw.training.v1 import training_service_pb2 as pb
from mtw.training.v1 import training_service_pb2_grpc
from services.common.auth import current_principal
from services.common.interceptors import bearer_token
from services.common.telemetry import current_traceparent
from services.training_svc import convert
from services.training_svc.app import TrainingApp


def _api_key(context) -> str:
    return bearer_token(context.invocation_metadata()) or ""


class TuningServicer(training_service_pb2_grpc.TuningServiceServicer):
    def __init__(self, app: TrainingApp) -> None:
        self.app = app

    async def ListBaseModels(self, request: pb.ListBaseModelsRequest, context):
        page = self.app.list_base_models(request.page_size, request.page_token, request.filter)
        return pb.ListBaseModelsResponse(base_models=[convert.base_model_to_proto(b) for b in page.items],
                                         next_page_token=page.next_page_token)

    async def GetBaseModel(self, request: pb.GetBaseModelRequest, context):
        return convert.base_model_to_proto(self.app.get_base_model(request.name))

    async def EstimateTuningJob(self, request: pb.EstimateTuningJobRequest, context):
        result = await self.app.estimate(request.parent, convert.job_request_from_proto(request.tuning_job),
                                         _api_key(context))
        return convert.estimate_to_proto(result)

    async def CreateTuningJob(self, request: pb.CreateTuningJobRequest, context):
        job = await self.app.create(
            current_principal(), request.parent, convert.job_request_from_proto(request.tuning_job),
            request.tuning_job_id, request.request_id, _api_key(context), current_traceparent(),
        )
        return convert.job_to_proto(job)

    async def GetTuningJob(self, request: pb.GetTuningJobRequest, context):
        return convert.job_to_proto(await self.app.get(request.name))

    async def ListTuningJobs(self, request: pb.ListTuningJobsRequest, context):
        page = await self.app.list(request.parent, request.page_size, request.page_token, request.filter)
        return pb.ListTuningJobsResponse(tuning_jobs=[convert.job_to_proto(j) for j in page.items],
                                         next_page_token=page.next_page_token)

    async def CancelTuningJob(self, request: pb.CancelTuningJobRequest, context):
        return convert.job_to_proto(await self.app.cancel(request.name, request.etag))

    async def ResumeTuningJob(self, request: pb.ResumeTuningJobRequest, context):
        overrides, set_fields = convert.hyperparameters_from_proto(request.hyperparameter_overrides)
        job = await self.app.resume(current_principal(), request.name, request.tuning_job_id, overrides,
                                    set_fields, request.request_id)
        return convert.job_to_proto(job)

    async def DeleteTuningJob(self, request: pb.DeleteTuningJobRequest, context):
        await self.app.delete(request.name, request.etag)
        return empty_pb2.Empty()

    async def WatchTuningJob(self, request: pb.WatchTuningJobRequest, context):
        async for event in self.app.watch(request.name, request.after_sequence_number):
            yield convert.event_to_proto(request.name, event)

    async def ListTuningJobEvents(self, request: pb.ListTuningJobEventsRequest, context):
        page = await self.app.list_events(request.parent, request.page_size, request.page_token, request.filter)
        return pb.ListTuningJobEventsResponse(events=[convert.event_to_proto(request.parent, e) for e in page.items],
                                              next_page_token=page.next_page_token)
