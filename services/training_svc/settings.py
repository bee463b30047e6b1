"""Settings of the training service (environment variables, read once at start)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, Field

from services.common.settings import ServiceSettings


class TrainingSettings(ServiceSettings):
    service_name: str = "training-svc"
    # Ray cluster to run on ("ray://…" or "host:port"); empty = start a local one in-process.
    ray_address: str = ""
    # Namespace of the detached per-run actors, so a restarted service finds them.
    ray_namespace: str = "mtw"
    # CPUs of the local Ray started when RAY_ADDRESS is empty (0 = all).
    ray_local_num_cpus: int = 0
    # Where GetDatasetVersion is asked (host:port, plaintext on loopback); devstack sets
    # MTW_DATASET_ENDPOINT, which is read too.
    dataset_service_endpoint: str = Field(
        "127.0.0.1:50051", validation_alias=AliasChoices("dataset_service_endpoint", "mtw_dataset_endpoint")
    )
    # Services a SUCCEEDED job's follow-ups call (final evaluation, registration), and the registry
    # a job continuing from a model version asks for its weights; empty =
    # that follow-up is off. devstack sets MTW_EVALUATION_ENDPOINT / MTW_REGISTRY_ENDPOINT.
    evaluation_service_endpoint: str = Field(
        "", validation_alias=AliasChoices("evaluation_service_endpoint", "mtw_evaluation_endpoint"))
    registry_service_endpoint: str = Field(
        "", validation_alias=AliasChoices("registry_service_endpoint", "mtw_registry_endpoint"))
    # First wait before a failed follow-up is tried again; it doubles each time, up to 10 min.
    follow_up_retry_seconds: float = 5.0
    # Jobs of one project in PREPARING/RUNNING/CANCELLING at once; more wait in QUEUED.
    max_concurrent_jobs_per_project: int = 2
    # Jobs of one project waiting in QUEUED; past this CreateTuningJob is RESOURCE_EXHAUSTED.
    max_queued_jobs_per_project: int = 20
    # Jobs running on the cluster at once, all projects together.
    max_running_jobs: int = 4
    # Memory a worker has, for the estimate's "fits" (bytes).
    worker_memory_bytes: int = 4 * 2**30
    # Where built-in models (tiny-gpt2) are built once and cached.
    model_cache_dir: str = ""
    # CPUs each Ray Train worker reserves (torch uses as many threads).
    ray_cpus_per_worker: float = 1.0
    # Worker losses Ray Train absorbs (restoring the last checkpoint) before a job fails.
    training_max_failures: int = 2
    # How often the queue and the Ray runs are looked at when nothing wakes the loop.
    scheduler_interval_seconds: float = 2.0
    # Longest time a throughput calibration may take on the cluster.
    calibration_timeout_seconds: float = 120.0
    # How long an estimate waits for a calibration; past that it answers without a
    # duration while the calibration goes on (the next estimate has it).
    calibration_wait_seconds: float = 20.0

    @property
    def model_cache_path(self) -> Path:
        return Path(self.model_cache_dir) if self.model_cache_dir else Path.home() / ".cache" / "mtw" / "models"
