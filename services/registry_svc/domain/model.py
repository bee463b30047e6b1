"""Plain domain types of the registry. Enum values match the protos."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.common import names
from services.common.task import Task

__all__ = ["AliasAction", "AliasEntry", "ArtifactFile", "Artifacts", "ExportDtype", "ExportState",
           "ExportVerification", "Lineage", "ModelExport", "ModelVersion", "RegisteredModel",
           "Task", "VersionState", "etag"]


class VersionState(enum.Enum):
    """ACTIVE → DELETED, never back."""

    UNSPECIFIED = 0
    ACTIVE = 1
    DELETED = 2


class AliasAction(enum.Enum):
    UNSPECIFIED = 0
    SET = 1
    DELETED = 2
    ROLLED_BACK = 3


class ExportDtype(enum.Enum):
    UNSPECIFIED = 0  # as the base model's weights
    FLOAT32 = 1
    FLOAT16 = 2
    BFLOAT16 = 3


class ExportState(enum.Enum):
    """The subset of mtw.common.v1.JobState an export goes through:
    QUEUED → RUNNING → SUCCEEDED / FAILED."""

    UNSPECIFIED = 0
    QUEUED = 1
    RUNNING = 3
    SUCCEEDED = 4
    FAILED = 5

    @property
    def is_terminal(self) -> bool:
        return self in (ExportState.SUCCEEDED, ExportState.FAILED)


def etag(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class RegisteredModel:
    project: str
    model_id: str
    display_name: str = ""
    description: str = ""
    task: Task = Task.UNSPECIFIED
    tags: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, int] = field(default_factory=dict)  # alias → version number
    latest_version: int | None = None
    version_count: int = 0
    creator: str = ""
    revision: int = 1
    create_time: datetime | None = None
    update_time: datetime | None = None

    @property
    def name(self) -> str:
        return names.build(names.MODEL, project=self.project, model=self.model_id)

    @property
    def etag(self) -> str:
        return etag("model", self.project, self.model_id, self.revision)

    def version_name(self, version: int) -> str:
        return f"{self.name}/versions/{version}"


@dataclass(frozen=True)
class ArtifactFile:
    path: str
    size_bytes: int
    sha256: str


@dataclass(frozen=True)
class Artifacts:
    uri: str
    files: tuple[ArtifactFile, ...] = ()
    size_bytes: int = 0
    merged_uri: str = ""
    model_card_uri: str = ""


@dataclass(frozen=True)
class Lineage:
    """Where a version comes from: a snapshot taken when it was registered."""

    base_model: str
    dataset_version: str
    tuning_job: str
    method: int = 0  # mtw.training.v1.TuningMethod
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # the job's resolved values (proto JSON)
    evaluations: tuple[str, ...] = ()
    parent_model_version: str = ""
    # What the card and the comparison need, captured at registration.
    training_metrics: dict[str, float] = field(default_factory=dict)
    trained_step: int = 0
    trainable_parameter_count: int = 0
    # Base model, data and evaluation facts the model card is written from, so it can be
    # rewritten (new description, new evaluation) without asking the other services again.
    card_facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelVersion:
    project: str
    model_id: str
    version: int
    task: Task
    artifacts: Artifacts
    is_adapter_only: bool
    base_model: str
    lineage: Lineage
    description: str = ""
    label_names: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    model_card: str = ""
    card_time: datetime | None = None
    examples: tuple[str, ...] = ()
    state: VersionState = VersionState.ACTIVE
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    creator: str = ""
    revision: int = 1
    create_time: datetime | None = None
    update_time: datetime | None = None
    delete_time: datetime | None = None

    @property
    def model_name(self) -> str:
        return names.build(names.MODEL, project=self.project, model=self.model_id)

    @property
    def name(self) -> str:
        return f"{self.model_name}/versions/{self.version}"

    @property
    def etag(self) -> str:
        return etag("version", self.project, self.model_id, self.version, self.revision)

    @property
    def is_deleted(self) -> bool:
        return self.state is VersionState.DELETED


@dataclass(frozen=True)
class AliasEntry:
    project: str
    model_id: str
    sequence: int
    alias: str
    action: AliasAction
    version: int | None
    previous_version: int | None
    reason: str
    actor: str
    time: datetime


@dataclass(frozen=True)
class ExportVerification:
    example_count: int = 0
    matching_count: int = 0
    max_abs_difference: float = 0.0
    passed: bool = False


@dataclass(frozen=True)
class ModelExport:
    project: str
    model_id: str
    version: int
    export_id: str
    dtype: ExportDtype
    state: ExportState
    uri: str = ""
    size_bytes: int = 0
    failure: dict[str, str] | None = None  # category, message, hint
    verification: ExportVerification | None = None
    create_time: datetime | None = None
    end_time: datetime | None = None

    @property
    def version_name(self) -> str:
        return names.build(names.MODEL_VERSION, project=self.project, model=self.model_id,
                           version=str(self.version))

    @property
    def name(self) -> str:
        return f"{self.version_name}/exports/{self.export_id}"
