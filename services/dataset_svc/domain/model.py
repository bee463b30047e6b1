"""Plain domain types of the dataset service, shared by parsing, profiling and storage."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

from services.common.task import Task


class DataFormat(enum.Enum):
    """Layout of an uploaded file. Values match `mtw.dataset.v1.DataFormat`."""

    UNSPECIFIED = 0
    CSV = 1
    TSV = 2
    JSONL = 3
    JSON = 4
    PARQUET = 5
    TEXT = 6


class PiiHandling(enum.Enum):
    UNSPECIFIED = 0
    REPORT = 1
    REDACT = 2


class PiiKind(enum.Enum):
    UNSPECIFIED = 0
    EMAIL = 1
    PHONE = 2
    PAYMENT_CARD = 3
    IBAN = 4
    IP_ADDRESS = 5


class Severity(enum.Enum):
    UNSPECIFIED = 0
    INFO = 1
    WARNING = 2


SPLITS = ("train", "validation", "test")

# Canonical columns per task; every canonical table also has `source_row` (int64,
# 1-based row number in the source file, header excluded).
CANONICAL_COLUMNS = {
    Task.SEQUENCE_CLASSIFICATION: ("text", "label"),
    Task.CAUSAL_LM: ("text",),
    Task.CHAT_SFT: ("messages",),  # list<struct<role: string, content: string>>
}


@dataclass(frozen=True)
class ColumnMapping:
    """Canonical field -> source column. Empty strings mean "detect"."""

    text: str = ""
    label: str = ""
    messages: str = ""
    prompt: str = ""
    input: str = ""
    response: str = ""


@dataclass(frozen=True)
class SplitSettings:
    validation_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 42
    split_column: str = ""
    group_column: str = ""
    stratify: bool = True


@dataclass(frozen=True)
class IngestOptions:
    file_name: str = ""
    format: DataFormat = DataFormat.UNSPECIFIED
    task: Task = Task.UNSPECIFIED
    column_mapping: ColumnMapping = field(default_factory=ColumnMapping)
    split: SplitSettings = field(default_factory=SplitSettings)
    pii_handling: PiiHandling = PiiHandling.REPORT
    tokenizer_model: str = ""


@dataclass(frozen=True)
class Issue:
    """One problem found in a file. `line` is the 1-based line (or record number
    for formats without lines, e.g. Parquet row), 0 when it concerns the whole file."""

    line: int
    field: str
    message: str
    code: str = "INVALID"

    @property
    def location(self) -> str:
        """Machine-readable location, `line:N[:field]`, used as the field-violation path."""
        if self.line <= 0:
            return f"file:{self.field}" if self.field else "file"
        return f"line:{self.line}:{self.field}" if self.field else f"line:{self.line}"


# --- quality report -----------------------------------------------------------


@dataclass(frozen=True)
class HistogramBucket:
    lower: int
    upper: int
    count: int


@dataclass(frozen=True)
class LengthHistogram:
    buckets: tuple[HistogramBucket, ...] = ()
    min: int = 0
    max: int = 0
    mean: float = 0.0
    p50: int = 0
    p95: int = 0
    rows_measured: int = 0


@dataclass(frozen=True)
class LabelCount:
    label: str
    count: int
    fraction: float
    split_counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    mapped_to: str = ""
    empty_count: int = 0


@dataclass(frozen=True)
class PiiFinding:
    kind: PiiKind
    match_count: int
    row_count: int
    example_rows: tuple[int, ...] = ()
    redacted: bool = False


@dataclass(frozen=True)
class QualityWarning:
    code: str
    severity: Severity
    message: str
    example_rows: tuple[int, ...] = ()


@dataclass(frozen=True)
class QualityReport:
    row_count: int = 0
    column_count: int = 0
    columns: tuple[ColumnProfile, ...] = ()
    label_distribution: tuple[LabelCount, ...] = ()
    char_length: LengthHistogram = field(default_factory=LengthHistogram)
    token_length: LengthHistogram | None = None
    tokenizer_model: str = ""
    exact_duplicate_rows: int = 0
    near_duplicate_rows: int = 0
    cross_split_duplicate_rows: int = 0
    pii: tuple[PiiFinding, ...] = ()
    warnings: tuple[QualityWarning, ...] = ()
    had_byte_order_mark: bool = False


# --- stored resources -----------------------------------------------------------


@dataclass(frozen=True)
class SplitInfo:
    name: str
    row_count: int
    uri: str


@dataclass(frozen=True)
class Dataset:
    project: str
    dataset_id: str
    display_name: str
    description: str
    labels: dict[str, str]
    version_count: int
    latest_version: int  # 0 when none
    size_bytes: int
    create_time: datetime
    update_time: datetime
    etag: str

    @property
    def name(self) -> str:
        return f"projects/{self.project}/datasets/{self.dataset_id}"


@dataclass(frozen=True)
class DatasetVersion:
    project: str
    dataset_id: str
    version: int
    options: IngestOptions
    format: DataFormat
    task: Task
    size_bytes: int
    sha256: str
    raw_uri: str
    columns: tuple[str, ...]
    label_names: tuple[str, ...]
    splits: tuple[SplitInfo, ...]
    quality_report: QualityReport
    create_time: datetime
    creator: str

    @property
    def name(self) -> str:
        return f"projects/{self.project}/datasets/{self.dataset_id}/versions/{self.version}"
