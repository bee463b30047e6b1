"""What the training service needs of a registered model version (to continue training
from its weights), asked of the registry over gRPC with the caller's own key."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from mtw.registry.v1 import model_version_pb2, registry_service_pb2, registry_service_pb2_grpc
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from services.training_svc.domain.model import TuningMethod


@dataclass(frozen=True)
class VersionWeights:
    name: str  # canonical projects/{p}/models/{m}/versions/{v}, aliases resolved
    uri: str  # the version's Hugging Face folder (adapter, or full weights)
    base_model: str  # baseModels/{id}
    method: TuningMethod


class ModelVersionClient:
    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self._channel = grpc.aio.insecure_channel(endpoint) if endpoint else None
        self._stub = registry_service_pb2_grpc.RegistryServiceStub(self._channel) if self._channel else None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def weights(self, name: str, api_key: str, field: str) -> VersionWeights:
        if self._stub is None:
            raise FailedPrecondition("continuing from a model version needs the model registry, which this "
                                     "deployment does not have; continue from the tuning job instead",
                                     reason="REGISTRY_UNAVAILABLE")
        try:
            v = await self._stub.GetModelVersion(registry_service_pb2.GetModelVersionRequest(name=name),
                                                 metadata=(("authorization", f"Bearer {api_key}"),), timeout=30)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise NotFound.resource("model version", name) from None
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise InvalidArgument.field(field, f"'{name}' is not a model version: {exc.details()}") from None
            raise Unavailable(f"the model registry did not answer for '{name}' ({exc.code().name}); try again",
                              reason="REGISTRY_UNAVAILABLE") from None
        if v.state != model_version_pb2.MODEL_VERSION_STATE_ACTIVE or not v.artifacts.uri:
            raise FailedPrecondition(f"model version '{v.name}' was deleted; its weights are gone",
                                     reason="MODEL_VERSION_DELETED")
        return VersionWeights(name=v.name, uri=v.artifacts.uri, base_model=v.base_model or v.lineage.base_model,
                              method=TuningMethod(v.lineage.method or TuningMethod.LORA.value))
