"""Settings of the registry service (environment variables, read once at start)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from services.common.settings import ServiceSettings


class RegistrySettings(ServiceSettings):
    service_name: str = "registry-svc"
    # Peers (host:port, plaintext on loopback). devstack sets MTW_<SERVICE>_ENDPOINT.
    training_service_endpoint: str = Field(
        "127.0.0.1:50052", validation_alias=AliasChoices("training_service_endpoint", "mtw_training_endpoint"))
    dataset_service_endpoint: str = Field(
        "127.0.0.1:50051", validation_alias=AliasChoices("dataset_service_endpoint", "mtw_dataset_endpoint"))
    # Empty: evaluations are not linked (the evaluation service is optional).
    evaluation_service_endpoint: str = Field(
        "127.0.0.1:50053", validation_alias=AliasChoices("evaluation_service_endpoint", "mtw_evaluation_endpoint"))
    # Local copies of model folders for Predict and exports (bounded, least recently used out).
    model_cache_dir: str = ""
    model_cache_bytes: int = 10 * 2**30
    # Models kept loaded in memory for Predict, least recently used unloaded first.
    max_loaded_models: int = 2
    # Micro-batching: a batch waits at most this long for more concurrent requests…
    predict_batch_wait_ms: float = 5.0
    # …and holds at most this many inputs.
    predict_max_batch_size: int = 32
    # Threads torch uses per forward pass (0: torch's default).
    predict_torch_threads: int = 0
    # Examples of the dataset version's test split stored with every version; exports
    # must reproduce the version's predictions on them.
    reference_example_count: int = 4
    # Exports running at once in this process.
    max_concurrent_exports: int = 1

    @property
    def model_cache_path(self) -> Path:
        if self.model_cache_dir:
            return Path(self.model_cache_dir)
        return Path.home() / ".cache" / "mtw" / "registry-models"
