"""The tuning-job state machine: every allowed transition, in one place.

    QUEUED ──► PREPARING ──► RUNNING ──► SUCCEEDED
       │           │            │
       │           ▼            ▼
       ├──────► CANCELLING ──► CANCELLED        (any non-final state ──► FAILED)
       └─────────────────────► CANCELLED

A run the service lost (reconciled on restart, no actor left) goes back to QUEUED to
be resumed under the same quota rules as a new job. A cancel is best effort: the run
may still finish or fail before it stops, so CANCELLING may end in any final state.
"""

from __future__ import annotations

from services.common.errors import FailedPrecondition
from services.common.jobs import JobState

S = JobState

ALLOWED: dict[JobState, set[JobState]] = {
    S.QUEUED: {S.PREPARING, S.CANCELLING, S.CANCELLED, S.FAILED},
    S.PREPARING: {S.RUNNING, S.QUEUED, S.CANCELLING, S.CANCELLED, S.FAILED},
    S.RUNNING: {S.SUCCEEDED, S.QUEUED, S.CANCELLING, S.FAILED},
    S.CANCELLING: {S.CANCELLED, S.SUCCEEDED, S.FAILED},
    S.SUCCEEDED: set(),
    S.FAILED: set(),
    S.CANCELLED: set(),
}

# What the caller was trying to do, for the error message.
_VERBS = {
    S.QUEUED: "queued again",
    S.PREPARING: "started",
    S.RUNNING: "started",
    S.SUCCEEDED: "marked succeeded",
    S.FAILED: "marked failed",
    S.CANCELLING: "cancelled",
    S.CANCELLED: "cancelled",
}

RESUMABLE = frozenset({S.FAILED, S.CANCELLED})


def can_transition(current: JobState, target: JobState) -> bool:
    return target in ALLOWED.get(current, set())


def check_transition(current: JobState, target: JobState, name: str) -> None:
    """FailedPrecondition("tuning job 'x' is SUCCEEDED; it cannot be cancelled") unless
    `current → target` is allowed."""
    if not can_transition(current, target):
        raise _precondition(name, current, f"it cannot be {_VERBS.get(target, target.name)}")


def check_cancellable(current: JobState, name: str) -> None:
    check_transition(current, S.CANCELLING, name)


def check_resumable(current: JobState, name: str) -> None:
    """Resume makes a new job from a failed or cancelled one (its last checkpoint)."""
    if current not in RESUMABLE:
        raise _precondition(
            name, current, "only a FAILED or CANCELLED job can be resumed", "JOB_NOT_RESUMABLE"
        )


def check_deletable(current: JobState, name: str) -> None:
    """Only a finished job may be deleted; cancel a live one first."""
    if not current.is_terminal:
        raise _precondition(
            name, current, "cancel it first, or wait for it to finish", "JOB_NOT_FINISHED"
        )


def _precondition(
    name: str, current: JobState, why: str, reason: str = "INVALID_JOB_STATE"
) -> FailedPrecondition:
    return FailedPrecondition(
        f"tuning job '{name}' is {current.name}; {why}",
        reason=reason,
        metadata={"resource_name": name, "state": current.name},
    )
