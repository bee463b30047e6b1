"""What the training service needs of a registered model version (to continue training
from its weights), asked of the registry over gRPC with the caller's own key."""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from mtw.registry.v1 import model_version_pb2, registry_service_pb2, registry_service_pb2_grpc
from services.common.errors import FailedPrecondition
from services.common.peers import ask, bearer
from services.training_svc.domain.model import TuningMethod


@dataclass(frozen=True)
class VersionWeights:
    name: str  # canonical projects/{p}/models/{m}/versions/{v}, aliases resolved
    uri: str  # the version's Hugging Face folder (adapter, or full weights)
    base_model: str  # baseModels/{id}
    method: TuningMethod


class ModelVersionClient:
    def __init__(self, channel: grpc.aio.Channel | None) -> None:
        """``channel``: to the registry; None where this deployment has none."""
        self._stub = registry_service_pb2_grpc.RegistryServiceStub(channel) if channel else None

    async def weights(self, name: str, api_key: str, field: str) -> VersionWeights:
        if self._stub is None:
            raise FailedPrecondition("continuing from a model version needs the model registry, which this "
                                     "deployment does not have; continue from the tuning job instead",
                                     reason="REGISTRY_UNAVAILABLE")
        v = await ask(self._stub.GetModelVersion(registry_service_pb2.GetModelVersionRequest(name=name),
                                                 metadata=bearer(api_key), timeout=30),
                      service="registry", kind="model version", name=name, field=field)
        if v.state != model_version_pb2.MODEL_VERSION_STATE_ACTIVE or not v.artifacts.uri:
            raise FailedPrecondition(f"model version '{v.name}' was deleted; its weights are gone",
                                     reason="MODEL_VERSION_DELETED")
        return VersionWeights(name=v.name, uri=v.artifacts.uri, base_model=v.base_model or v.lineage.base_model,
                              method=TuningMethod(v.lineage.method or TuningMethod.LORA.value))
