"""Submit one training run to Ray Train and wait for it: ``run_training(spec, …)``."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.common.telemetry import current_traceparent
from services.common.worker_storage import S3Access, fs_path
from services.training_svc.domain.model import Metrics, Output, TrainingSpec
from services.training_svc.trainer.events import EventSink
from services.training_svc.trainer.loop import train_loop_per_worker

# Passed on to the workers (set in their process before transformers is imported).
_FORWARDED_ENV = (
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HOME",
    "TOKENIZERS_PARALLELISM",
)

# Each training worker imports transformers and peft while Ray Train sets it up.
_WARM_UP_HOOK = "services.training_svc.trainer.warm_up.import_training_libraries"


@dataclass(frozen=True)
class TrainingResult:
    output: Output
    metrics: Metrics
    checkpoint_uri: str  # s3://… of the last checkpoint Ray registered ("" if none)
    steps: int
    stopped_early_at: int | None = None


def run_training(
    spec: TrainingSpec,
    *,
    sink_factory: Callable[[], EventSink],
    s3: S3Access,
    max_failures: int = 2,
    cpus_per_worker: float = 1,
    otlp_endpoint: str = "",
) -> TrainingResult:
    """Run ``spec`` on Ray Train (blocking) and return where the model went.

    Callable from a plain driver or from inside a Ray actor/task. Checkpoints land in
    ``s3://{spec.storage_path}/{spec.run_name}/checkpoint-NNNNNNN``; a lost worker
    restarts the worker group from the last of them (up to ``max_failures`` times).
    A worker's exception is re-raised as itself (e.g. ``BadDataError``), not wrapped.
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not ray.is_initialized():
        ray.init(address=os.environ.get("RAY_ADDRESS") or None, include_dashboard=False)
    hp = spec.hyperparameters
    config: dict[str, Any] = {
        "spec": spec,
        "s3": s3,
        "sink_factory": sink_factory,
        "cpus_per_worker": cpus_per_worker,
        "otlp_endpoint": otlp_endpoint,
        "submitted_at": time.time(),
        "traceparent": current_traceparent() or spec.traceparent,
        "env": {k: os.environ[k] for k in _FORWARDED_ENV if k in os.environ},
    }
    trainer = TorchTrainer(
        _entry,
        train_loop_config=config,
        scaling_config=ScalingConfig(
            num_workers=hp.num_workers or 1,
            use_gpu=bool(hp.use_gpu),
            resources_per_worker={"CPU": cpus_per_worker, **({"GPU": 1} if hp.use_gpu else {})},
        ),
        run_config=RunConfig(
            name=spec.run_name,
            storage_path=fs_path(spec.storage_path),
            storage_filesystem=s3.filesystem(),
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            worker_runtime_env={"worker_process_setup_hook": _WARM_UP_HOOK},
        ),
    )
    try:
        result = trainer.fit()
    except Exception as exc:
        raise unwrap_error(exc) from exc
    value = result.return_value or {}
    if value.get("error") is not None:  # a problem no retry would fix (bad data, model won't load)
        raise value["error"]
    if not value:
        raise RuntimeError(f"training run {spec.run_name} finished without a result from rank 0")
    checkpoint_uri = (
        f"s3://{result.checkpoint.path}"
        if result.checkpoint is not None
        else value.get("checkpoint_uri", "")
    )
    return TrainingResult(
        output=value["output"],
        metrics=value["metrics"],
        checkpoint_uri=checkpoint_uri,
        steps=value["steps"],
        stopped_early_at=value.get("stopped_early"),
    )


def _entry(config: dict[str, Any]):
    os.environ.update(config.get("env") or {})
    return train_loop_per_worker(config)


def unwrap_error(exc: BaseException) -> BaseException:
    """Ray Train's ``WorkerGroupError``/``ControllerError`` → the underlying exception
    (rank 0's first), so failure classification sees e.g. ``BadDataError`` or an OOM."""
    seen = 0
    while seen < 10:
        seen += 1
        failures = getattr(exc, "worker_failures", None)
        if failures:
            exc = failures[min(failures)]
            continue
        inner = getattr(exc, "controller_failure", None) or getattr(exc, "_base_exc", None)
        if isinstance(inner, BaseException):
            exc = inner
            continue
        cause = getattr(exc, "cause", None)  # RayTaskError → the user's exception
        if type(exc).__name__.startswith("RayTaskError") and isinstance(cause, BaseException):
            exc = cause
            continue
        break
    return exc
