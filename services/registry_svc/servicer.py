"""gRPC methods of RegistryService: parse the request, call the app or the predictor,
convert the reply."""

from __future__ import annotations

from google.protobuf import empty_pb2

from mtw.registry.v1 import registry_service_pb2 as pb
from mtw.registry.v1 import registry_service_pb2_grpc
from services.common.auth import current_principal
from services.common.interceptors import bearer_token
from services.registry_svc import convert
from services.registry_svc.app import Caller, RegistryApp
from services.registry_svc.predictor import Predictor


def _caller(context) -> Caller:
    return Caller(current_principal(), bearer_token(context.invocation_metadata()) or "")


class RegistryServicer(registry_service_pb2_grpc.RegistryServiceServicer):
    def __init__(self, app: RegistryApp, predictor: Predictor) -> None:
        self.app = app
        self.predictor = predictor

    # --- registered models

    async def CreateRegisteredModel(self, request: pb.CreateRegisteredModelRequest, context):
        model = await self.app.create_model(_caller(context), request.parent,
                                            convert.model_from_proto(request.registered_model),
                                            request.registered_model_id)
        return convert.model_to_proto(model)

    async def GetRegisteredModel(self, request: pb.GetRegisteredModelRequest, context):
        return convert.model_to_proto(await self.app.get_model(request.name))

    async def ListRegisteredModels(self, request: pb.ListRegisteredModelsRequest, context):
        page = await self.app.list_models(request.parent, request.page_size, request.page_token, request.filter)
        return pb.ListRegisteredModelsResponse(registered_models=[convert.model_to_proto(m) for m in page.items],
                                               next_page_token=page.next_page_token)

    async def UpdateRegisteredModel(self, request: pb.UpdateRegisteredModelRequest, context):
        m = request.registered_model
        model = await self.app.update_model(convert.model_from_proto(m), m.name, m.etag,
                                            list(request.update_mask.paths))
        return convert.model_to_proto(model)

    async def DeleteRegisteredModel(self, request: pb.DeleteRegisteredModelRequest, context):
        await self.app.delete_model(request.name, request.etag, request.force)
        return empty_pb2.Empty()

    # --- versions

    async def CreateModelVersion(self, request: pb.CreateModelVersionRequest, context):
        version = await self.app.create_version(
            _caller(context), request.parent, request.tuning_job, request.description, dict(request.tags),
            list(request.evaluations), request.request_id)
        return convert.version_to_proto(version)

    async def GetModelVersion(self, request: pb.GetModelVersionRequest, context):
        return convert.version_to_proto(await self.app.get_version(request.name))

    async def ListModelVersions(self, request: pb.ListModelVersionsRequest, context):
        page = await self.app.list_versions(request.parent, request.page_size, request.page_token, request.filter)
        return pb.ListModelVersionsResponse(model_versions=[convert.version_to_proto(v) for v in page.items],
                                            next_page_token=page.next_page_token)

    async def UpdateModelVersion(self, request: pb.UpdateModelVersionRequest, context):
        v = request.model_version
        version = await self.app.update_version(v.name, v.description, dict(v.tags), v.etag,
                                                list(request.update_mask.paths))
        return convert.version_to_proto(version)

    async def DeleteModelVersion(self, request: pb.DeleteModelVersionRequest, context):
        return convert.version_to_proto(await self.app.delete_version(request.name, request.etag))

    # --- aliases

    async def SetAlias(self, request: pb.SetAliasRequest, context):
        model = await self.app.set_alias(_caller(context), request.registered_model, request.alias,
                                         request.model_version, request.reason, request.etag)
        return convert.model_to_proto(model)

    async def DeleteAlias(self, request: pb.DeleteAliasRequest, context):
        model = await self.app.delete_alias(_caller(context), request.registered_model, request.alias,
                                            request.reason, request.etag)
        return convert.model_to_proto(model)

    async def RollbackAlias(self, request: pb.RollbackAliasRequest, context):
        model = await self.app.rollback_alias(_caller(context), request.registered_model, request.alias,
                                              request.reason, request.etag)
        return convert.model_to_proto(model)

    async def ListAliasHistory(self, request: pb.ListAliasHistoryRequest, context):
        page = await self.app.alias_history(request.parent, request.page_size, request.page_token, request.filter)
        return pb.ListAliasHistoryResponse(entries=[convert.alias_entry_to_proto(e) for e in page.items],
                                           next_page_token=page.next_page_token)

    # --- card, exports, downloads

    async def GetModelCard(self, request: pb.GetModelCardRequest, context):
        return convert.card_to_proto(await self.app.model_card(request.name))

    async def LinkEvaluation(self, request: pb.LinkEvaluationRequest, context):
        linked = await self.app.link_evaluation(_caller(context), request.parent, request.evaluation)
        return pb.LinkEvaluationResponse(model_versions=[v.name for v in linked])

    async def ExportModelVersion(self, request: pb.ExportModelVersionRequest, context):
        export = await self.app.export(request.name, convert.dtype_from_proto(request.dtype))
        return convert.export_to_proto(export)

    async def GetModelExport(self, request: pb.GetModelExportRequest, context):
        return convert.export_to_proto(await self.app.get_export(request.name))

    async def GetDownloadUrls(self, request: pb.GetDownloadUrlsRequest, context):
        ttl = request.ttl.ToTimedelta().total_seconds() if request.HasField("ttl") else 0
        downloads = await self.app.download_urls(request.name, request.kind == pb.ARTIFACT_KIND_MERGED,
                                                 request.include_archive, ttl)
        return convert.downloads_to_proto(downloads)

    # --- prediction

    async def Predict(self, request: pb.PredictRequest, context):
        answer = await self.predictor.predict(
            _caller(context), request.name, [convert.input_from_proto(i) for i in request.inputs], request.top_k,
            convert.generation_from_proto(request.generation_config))
        return convert.answer_to_proto(answer)

    async def StreamPredict(self, request: pb.StreamPredictRequest, context):
        chunks = self.predictor.stream(_caller(context), request.name, convert.input_from_proto(request.input),
                                       convert.generation_from_proto(request.generation_config))
        async for version, chunk in chunks:
            yield convert.chunk_to_proto(version, chunk)
