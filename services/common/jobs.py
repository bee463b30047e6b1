"""What every job-running service shares about a job: its state and the category of its
failure. Values match `mtw.common.v1.JobState` and `mtw.common.v1.FailureCategory`;
each service keeps its own transition table (training may put a lost run back in the
queue, an evaluation never goes back)."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class JobState(enum.Enum):
    """queued → preparing → running → succeeded / failed / cancelled (via cancelling)."""

    UNSPECIFIED = 0
    QUEUED = 1
    PREPARING = 2
    RUNNING = 3
    SUCCEEDED = 4
    FAILED = 5
    CANCELLING = 6
    CANCELLED = 7

    @property
    def is_terminal(self) -> bool:
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)


class FailureCategory(enum.Enum):
    UNSPECIFIED = 0
    BAD_DATA = 1
    OUT_OF_MEMORY = 2
    MODEL_ACCESS = 3
    LICENCE = 4
    INFRASTRUCTURE = 5
    CANCELLED_BY_USER = 6
    INTERNAL = 7


@dataclass(frozen=True)
class JobFailure:
    """Why a job ended badly, in a category a person can act on."""

    category: FailureCategory
    message: str  # what happened, in plain words (with the row / setting where it applies)
    hint: str = ""  # what to change
    code: str = "INTERNAL"  # gRPC status code name for `error`
