"""The training run on Ray Train: data → tokens → HF Trainer (LoRA or full) on Ray
workers, checkpoints in object storage, events to a sink, final HF folder in S3."""

from services.common.worker_storage import S3Access
from services.training_svc.trainer.events import (
    ActorSinkFactory,
    EventCollector,
    EventSink,
    MemorySink,
    NullSink,
)
from services.training_svc.trainer.run import TrainingResult, run_training, unwrap_error

__all__ = [
    "ActorSinkFactory",
    "EventCollector",
    "EventSink",
    "MemorySink",
    "NullSink",
    "S3Access",
    "TrainingResult",
    "run_training",
    "unwrap_error",
]
