"""Plain domain types of the training service. Enum values match the protos."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.common.jobs import JobFailure, JobState
from services.common.task import Task


class TuningMethod(enum.Enum):
    UNSPECIFIED = 0
    LORA = 1
    FULL = 2


class Preset(enum.Enum):
    UNSPECIFIED = 0
    QUICK = 1
    BALANCED = 2
    THOROUGH = 3
    AUTO = 4
    CUSTOM = 5


class LrScheduler(enum.Enum):
    UNSPECIFIED = 0
    LINEAR = 1
    COSINE = 2
    COSINE_WITH_RESTARTS = 3
    POLYNOMIAL = 4
    CONSTANT = 5
    CONSTANT_WITH_WARMUP = 6
    INVERSE_SQRT = 7


class Precision(enum.Enum):
    UNSPECIFIED = 0
    FP32 = 1
    BF16 = 2
    FP16 = 3


@dataclass(frozen=True)
class LoraSettings:
    rank: int | None = None
    alpha: int | None = None
    dropout: float | None = None
    target_modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hyperparameters:
    """Every field optional: unset (None) takes the preset's value. After
    `presets.resolve(...)` every field is set."""

    epochs: int | None = None
    max_steps: int | None = None  # 0/None: derived from epochs
    learning_rate: float | None = None
    lr_scheduler: LrScheduler = LrScheduler.UNSPECIFIED
    warmup_ratio: float | None = None
    per_device_batch_size: int | None = None
    gradient_accumulation_steps: int | None = None
    max_seq_length: int | None = None
    weight_decay: float | None = None
    seed: int | None = None
    eval_interval_steps: int | None = None
    checkpoint_interval_steps: int | None = None
    early_stopping_patience: int | None = None  # 0: off
    early_stopping_threshold: float | None = None
    num_workers: int | None = None
    use_gpu: bool | None = None
    precision: Precision = Precision.UNSPECIFIED
    gradient_checkpointing: bool | None = None
    max_grad_norm: float | None = None
    lora: LoraSettings = field(default_factory=LoraSettings)


@dataclass(frozen=True)
class BaseModel:
    """An entry of the base-model catalog (`baseModels/{base_model}`)."""

    model_id: str
    display_name: str
    description: str
    source: str  # a Hugging Face id or a local folder path, as the loaders take it
    is_local: bool
    architecture: str  # e.g. "BertModel", "GPT2LMHeadModel"
    supported_tasks: tuple[Task, ...]
    supported_methods: tuple[TuningMethod, ...]
    parameter_count: int
    context_length: int
    size_bytes: int
    licence_name: str
    licence_uri: str
    licence_requires_acknowledgement: bool
    default_lora_target_modules: tuple[str, ...]
    lora_fan_in_fan_out: bool = False  # GPT-2's Conv1D layers need it
    available: bool = True
    # Shape facts for the memory estimate (0 = unknown; the estimate then falls back
    # to rules of thumb from parameter_count).
    hidden_size: int = 0
    num_layers: int = 0
    num_heads: int = 0
    vocab_size: int = 0

    @property
    def name(self) -> str:
        return f"baseModels/{self.model_id}"


@dataclass(frozen=True)
class Lineage:
    resumed_from: str = ""  # tuning job name
    continued_from_tuning_job: str = ""
    continued_from_model_version: str = ""
    branched_from: str = ""
    resumed_from_step: int = 0
    source_evaluation: str = ""
    source_recommendation: str = ""


@dataclass(frozen=True)
class Progress:
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    total_epochs: int = 0
    eta_seconds: float | None = None
    elapsed_seconds: float = 0.0
    message: str = ""


@dataclass(frozen=True)
class Metrics:
    step: int = 0
    epoch: float = 0.0
    train_loss: float | None = None
    learning_rate: float | None = None
    samples_per_second: float | None = None
    eval_step: int = 0
    eval_loss: float | None = None
    eval_metrics: dict[str, float] = field(default_factory=dict)
    best_eval_loss: float | None = None
    best_eval_step: int = 0


@dataclass(frozen=True)
class Checkpoint:
    step: int
    epoch: float
    uri: str
    eval_loss: float | None
    create_time: datetime


@dataclass(frozen=True)
class Output:
    uri: str  # s3://… folder loadable with transformers/peft
    merged_model_uri: str = ""
    is_adapter_only: bool = False
    label_names: tuple[str, ...] = ()
    step: int = 0
    size_bytes: int = 0
    trainable_parameter_count: int = 0


@dataclass(frozen=True)
class TrainingSpec:
    """Everything a Ray training run needs; JSON-serialisable so it crosses to Ray
    and is stored with the job (a restarted service re-submits the same spec)."""

    job_name: str  # projects/{p}/tuningJobs/{j}
    run_name: str  # unique per attempt: Ray's RunConfig(name=…)
    task: Task
    base_model_source: str  # HF id or local folder (catalog-resolved)
    base_model_is_local: bool
    lora_fan_in_fan_out: bool
    method: TuningMethod
    hyperparameters: Hyperparameters  # resolved: every field set
    train_uri: str  # s3://bucket/…/train.parquet (canonical split)
    validation_uri: str  # "" when the version has no validation rows
    label_names: tuple[str, ...]
    output_prefix: str  # object key prefix for the final HF folder
    storage_path: str  # "bucket/prefix" for Ray Train checkpoints
    resume_from_checkpoint: str = ""  # a checkpoint path to restore (optimizer included)
    init_weights_uri: str = ""  # continue training from these weights (adapter or full)
    traceparent: str = ""  # W3C trace context of the request that created the job


@dataclass(frozen=True)
class TuningJob:
    project: str
    job_id: str
    display_name: str
    description: str
    base_model: str  # baseModels/{id}
    dataset_version: str
    task: Task
    method: TuningMethod
    preset: Preset
    hyperparameters: Hyperparameters  # as requested
    resolved_hyperparameters: Hyperparameters
    licence_acknowledged: bool
    lineage: Lineage
    skip_final_evaluation: bool
    state: JobState
    progress: Progress
    latest_metrics: Metrics
    latest_checkpoint: Checkpoint | None
    output: Output | None
    failure: JobFailure | None
    restart_count: int
    evaluation: str
    create_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    update_time: datetime
    labels: dict[str, str]
    etag: str
    creator: str
    register_to_model: str = ""
    model_version: str = ""
    follow_up_error: str = ""

    @property
    def name(self) -> str:
        return f"projects/{self.project}/tuningJobs/{self.job_id}"


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's event log (state change, step metrics, eval metrics,
    checkpoint saved, log message), numbered from 1 in order."""

    sequence: int
    time: datetime
    kind: str  # "state", "step", "eval", "checkpoint", "log"
    payload: dict[str, Any]
