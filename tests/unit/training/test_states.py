"""The tuning-job state machine."""

from __future__ import annotations

import itertools

import pytest

from services.common.errors import FailedPrecondition
from services.common.jobs import JobState as S
from services.training_svc.domain import states


def test_every_state_has_a_rule_and_final_states_go_nowhere():
    assert set(states.ALLOWED) == set(S) - {S.UNSPECIFIED}
    for state in S:
        if state.is_terminal:
            assert states.ALLOWED[state] == set()


@pytest.mark.parametrize(
    "path",
    [
        [S.QUEUED, S.PREPARING, S.RUNNING, S.SUCCEEDED],
        [S.QUEUED, S.PREPARING, S.RUNNING, S.CANCELLING, S.CANCELLED],
        [S.QUEUED, S.CANCELLED],
        [S.QUEUED, S.PREPARING, S.FAILED],
        [S.QUEUED, S.PREPARING, S.RUNNING, S.QUEUED, S.PREPARING, S.RUNNING, S.FAILED],
        [S.RUNNING, S.CANCELLING, S.SUCCEEDED],  # the run finished before the cancel landed
    ],
)
def test_happy_paths(path):
    for current, target in itertools.pairwise(path):
        states.check_transition(current, target, "projects/p/tuningJobs/j")


def test_succeeded_job_cannot_be_cancelled():
    with pytest.raises(FailedPrecondition) as info:
        states.check_cancellable(S.SUCCEEDED, "projects/p/tuningJobs/j")
    assert (
        info.value.message
        == "tuning job 'projects/p/tuningJobs/j' is SUCCEEDED; it cannot be cancelled"
    )
    assert info.value.reason == "INVALID_JOB_STATE"
    assert info.value.metadata["state"] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("current", "target", "verb"),
    [
        (S.QUEUED, S.RUNNING, "started"),
        (S.QUEUED, S.SUCCEEDED, "marked succeeded"),
        (S.FAILED, S.QUEUED, "queued again"),
        (S.CANCELLED, S.FAILED, "marked failed"),
        (S.CANCELLING, S.RUNNING, "started"),
    ],
)
def test_forbidden_transitions_say_what_was_attempted(current, target, verb):
    assert not states.can_transition(current, target)
    with pytest.raises(FailedPrecondition, match=f"is {current.name}; it cannot be {verb}$"):
        states.check_transition(current, target, "j")


def test_resume_and_delete_rules():
    for state in (S.FAILED, S.CANCELLED):
        states.check_resumable(state, "j")
    with pytest.raises(FailedPrecondition, match="only a FAILED or CANCELLED job can be resumed"):
        states.check_resumable(S.SUCCEEDED, "j")
    for state in (S.SUCCEEDED, S.FAILED, S.CANCELLED):
        states.check_deletable(state, "j")
    with pytest.raises(FailedPrecondition, match="is RUNNING; cancel it first") as info:
        states.check_deletable(S.RUNNING, "j")
    assert info.value.reason == "JOB_NOT_FINISHED"
