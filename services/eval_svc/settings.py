"""Settings of the evaluation service (environment variables, read once at start)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from services.common.settings import ServiceSettings


class EvaluationSettings(ServiceSettings):
    service_name: str = "evaluation-svc"
    # Ray cluster ("ray://…" or "host:port"); empty = a local one started in-process.
    ray_address: str = ""
    ray_namespace: str = "mtw"
    ray_local_num_cpus: int = 0
    # Other services (host:port, plaintext on loopback); devstack sets MTW_*_ENDPOINT.
    dataset_service_endpoint: str = Field(
        "127.0.0.1:50051", validation_alias=AliasChoices("dataset_service_endpoint", "mtw_dataset_endpoint"))
    training_service_endpoint: str = Field(
        "127.0.0.1:50052", validation_alias=AliasChoices("training_service_endpoint", "mtw_training_endpoint"))
    # The model registry, to evaluate registered model versions; empty = none deployed.
    registry_service_endpoint: str = Field(
        "", validation_alias=AliasChoices("registry_service_endpoint", "mtw_registry_endpoint"))
    # Scoring workers (Ray tasks of one CPU) per evaluation.
    evaluation_num_workers: int = 1
    # Evaluations running at once: all projects, and per project; more wait in QUEUED.
    max_running_evaluations: int = 4
    max_concurrent_evaluations_per_project: int = 2
    # Evaluations of one project waiting in QUEUED; past this CreateEvaluation is RESOURCE_EXHAUSTED.
    max_queued_evaluations_per_project: int = 50
    # Local copies of models fetched from object storage (on every Ray node), bounded.
    model_cache_dir: str = ""
    model_cache_bytes: int = 20 * 2**30
    # How often queued evaluations, runs and follow-ups are looked at when nothing wakes the loop.
    scheduler_interval_seconds: float = 2.0
    # After the registry could not be told of an ended evaluation, wait this long before trying again.
    registry_retry_seconds: float = 30.0

    @property
    def model_cache_path(self) -> Path:
        return Path(self.model_cache_dir) if self.model_cache_dir else Path.home() / ".cache" / "mtw" / "eval-models"
