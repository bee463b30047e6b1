"""Plain domain types of the evaluation service. Enum values match the protos."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.common.jobs import JobFailure, JobState
from services.common.task import Task

SPLITS = ("train", "validation", "test")


_TRANSITIONS = {
    JobState.QUEUED: {JobState.PREPARING, JobState.CANCELLED, JobState.FAILED},
    JobState.PREPARING: {JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLING},
    JobState.RUNNING: {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLING},
    JobState.CANCELLING: {JobState.CANCELLED, JobState.SUCCEEDED, JobState.FAILED},
}


def can_transition(current: JobState, target: JobState) -> bool:
    """The one place that says which state changes exist."""
    return target in _TRANSITIONS.get(current, set())


class Severity(enum.IntEnum):
    UNSPECIFIED = 0
    INFO = 1
    WARNING = 2
    CRITICAL = 3


class StartFrom(enum.Enum):
    UNSPECIFIED = 0
    TUNED_WEIGHTS = 1
    BASE = 2


@dataclass(frozen=True)
class EvalConfig:
    """Settings of a run, every default filled in (see `resolve_config`)."""

    max_examples: int = 0
    batch_size: int = 32
    max_seq_length: int = 0  # 0: the tuning job's, else the model's context length
    max_new_tokens: int = 128
    temperature: float = 0.0
    sample_count: int = 10
    bootstrap_resamples: int = 1000
    calibration_bins: int = 10
    seed: int = 42


@dataclass(frozen=True)
class ModelRef:
    """What the evaluation measures (exactly one of the three is set)."""

    tuning_job: str = ""
    model_version: str = ""
    base_model: str = ""

    @property
    def kind(self) -> str:
        return "tuning_job" if self.tuning_job else "model_version" if self.model_version else "base_model"

    @property
    def name(self) -> str:
        return self.tuning_job or self.model_version or self.base_model


@dataclass(frozen=True)
class EvaluationRequest:
    """The spec fields of an Evaluation as a caller sends them."""

    model: ModelRef = field(default_factory=ModelRef)
    dataset_version: str = ""
    split: str = ""
    metrics: tuple[str, ...] = ()
    config: EvalConfig = field(default_factory=EvalConfig)
    config_set: frozenset[str] = frozenset()  # config fields the caller set
    baseline_evaluation: str = ""
    display_name: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSpec:
    """Everything a Ray run needs; JSON-serialisable (stored with the evaluation, so a
    restarted service re-submits the same spec)."""

    evaluation_name: str
    run_name: str  # unique per attempt: names the runner actor
    task: Task
    model_uri: str  # s3://… folder to fetch, or "" when `model_path` is local
    model_path: str  # local folder or Hugging Face id (base models)
    base_source: str  # the base an adapter needs ("" otherwise)
    label_names: tuple[str, ...]
    split_uri: str
    split_rows: int
    metrics: tuple[str, ...]
    config: EvalConfig
    max_seq_length: int
    num_workers: int = 1
    init_seed: int = 0  # seeds an untrained classification head (base models) reproducibly
    traceparent: str = ""  # of the request that created it: the run joins that trace


@dataclass(frozen=True)
class Progress:
    examples_done: int = 0
    total_examples: int = 0
    eta_seconds: float | None = None
    message: str = ""

    @property
    def fraction_done(self) -> float:
        return min(1.0, self.examples_done / self.total_examples) if self.total_examples else 0.0


@dataclass(frozen=True)
class MetricValue:
    name: str
    value: float
    higher_is_better: bool
    lower: float | None = None  # 95 % bootstrap interval
    upper: float | None = None


@dataclass(frozen=True)
class ClassScore:
    label: str
    precision: float
    recall: float
    f1: float
    support: int


@dataclass(frozen=True)
class ReliabilityBin:
    lower: float
    upper: float
    mean_confidence: float
    accuracy: float
    count: int


@dataclass(frozen=True)
class Sample:
    row: int
    prompt: str
    generated: str
    reference: str


@dataclass(frozen=True)
class Results:
    example_count: int
    metrics: tuple[MetricValue, ...]
    class_scores: tuple[ClassScore, ...] = ()
    confusion_labels: tuple[str, ...] = ()
    confusion_counts: tuple[int, ...] = ()  # row-major, reference × predicted
    expected_calibration_error: float | None = None
    max_calibration_error: float | None = None
    reliability: tuple[ReliabilityBin, ...] = ()
    samples: tuple[Sample, ...] = ()
    truncated_examples: int = 0
    examples_per_second: float = 0.0
    preparation_seconds: float = 0.0

    def metric(self, name: str) -> MetricValue | None:
        return next((m for m in self.metrics if m.name == name), None)

    def value(self, name: str) -> float | None:
        found = self.metric(name)
        return None if found is None else found.value


@dataclass(frozen=True)
class Evaluation:
    project: str
    evaluation_id: str
    display_name: str
    model: ModelRef
    resolved_model_version: str
    dataset_version: str
    split: str
    metrics: tuple[str, ...]
    config: EvalConfig
    baseline_evaluation: str
    task: Task
    created_by_tuning_job: str
    state: JobState
    progress: Progress
    results: Results | None
    failure: JobFailure | None
    recommendation_count: int
    create_time: datetime
    start_time: datetime | None
    end_time: datetime | None
    update_time: datetime
    labels: dict[str, str]
    etag: str
    creator: str

    @property
    def name(self) -> str:
        return f"projects/{self.project}/evaluations/{self.evaluation_id}"


@dataclass(frozen=True)
class ExampleResult:
    row: int
    input: str
    prediction: str
    reference: str
    score: float | None = None
    correct: bool | None = None
    loss: float | None = None
    label_probabilities: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    truncated: bool = False


@dataclass(frozen=True)
class Evidence:
    description: str
    metric: str = ""
    value: float | None = None
    threshold: float | None = None
    example_rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class ParameterChanges:
    """Hyperparameter overrides by proto field name (`{"lora": {"dropout": 0.1}}`), the
    tuning method and base model to change to, and which weights to start from."""

    hyperparameters: dict[str, Any] = field(default_factory=dict)
    method: int = 0  # mtw.training.v1.TuningMethod; 0 keeps it
    base_model: str = ""
    start_from: StartFrom = StartFrom.BASE


@dataclass(frozen=True)
class Recommendation:
    code: str
    severity: Severity
    title: str
    explanation: str
    evidence: tuple[Evidence, ...] = ()
    changes: ParameterChanges | None = None
    applicable: bool = False
    applied_tuning_jobs: tuple[str, ...] = ()
    create_time: datetime | None = None

    @property
    def recommendation_id(self) -> str:
        return self.code.lower().replace("_", "-")


@dataclass(frozen=True)
class Event:
    """One entry of an evaluation's event log: `state`, `progress` or `log`."""

    sequence: int
    time: datetime
    kind: str
    payload: dict[str, Any]
