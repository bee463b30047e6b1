"""Makes the database agree with the cluster, at start and then on every scheduling pass.

For every job that is PREPARING, RUNNING or CANCELLING:

- its run still exists → adopt it (the run records its own events and outcome); a
  CANCELLING job's run is stopped again;
- its run is gone and the job has not ended → CANCELLING becomes CANCELLED; otherwise
  the job continues, as the same job, from its latest checkpoint in a new run (new run
  name, restart_count + 1), or fails with a reason when there is no checkpoint or the
  restart budget is spent.

A run is only started when no run of the job exists, and run names are unique per
attempt, so a job never runs twice.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING

from services.common.jobs import FailureCategory, JobFailure, JobState
from services.training_svc.scheduler import RunStatus
from services.training_svc.store import cancelled_by_user

if TYPE_CHECKING:
    from services.training_svc.app import TrainingApp

log = logging.getLogger(__name__)


async def reconcile(app: TrainingApp) -> dict[str, str]:
    """One pass over the non-final jobs; returns job name → what was done (for logs and tests)."""
    from services.training_svc.app import run_name

    done: dict[str, str] = {}
    for attempt in await app.store.active():
        name = attempt.spec.job_name
        status = await app.scheduler.status(attempt.spec.run_name)
        if status == RunStatus.RUNNING:
            if attempt.state == JobState.CANCELLING:
                await app.scheduler.cancel(attempt.spec.run_name)
                await app.release_workers(attempt.project, attempt.job_id)
                await app.store.record(attempt.project, attempt.job_id, "state", {
                    "state": JobState.CANCELLED, "message": "cancelled; the workers were stopped"},
                    failure=cancelled_by_user())
                done[name] = "cancelled"
            else:
                done[name] = "adopted"
            continue
        # The run has returned or is gone: it may have recorded its outcome just now.
        current = await app.store.attempt(attempt.project, attempt.job_id)
        if current.state.is_terminal or current.spec.run_name != attempt.spec.run_name:
            continue
        await app.release_workers(attempt.project, attempt.job_id)  # a lost run's workers hold CPUs
        if current.state == JobState.CANCELLING:
            await app.store.record(attempt.project, attempt.job_id, "state", {
                "state": JobState.CANCELLED, "message": "cancelled; the run had already stopped"},
                failure=cancelled_by_user())
            done[name] = "cancelled"
            continue
        checkpoint = current.latest_checkpoint
        budget = app.settings.training_max_failures
        if checkpoint is not None and current.restart_count < budget:
            spec = dataclasses.replace(current.spec, run_name=run_name(attempt.project, attempt.job_id),
                                       resume_from_checkpoint=checkpoint.uri)
            if not await app.store.new_attempt(attempt.project, attempt.job_id, spec):
                continue
            await app.store.record(attempt.project, attempt.job_id, "log", {
                "level": "WARNING", "source": "controller",
                "message": f"the run was lost; continuing from the checkpoint of step {checkpoint.step}"})
            await app.submit(attempt.project, attempt.job_id, spec)
            log.warning("resumed %s from step %d after its run was lost", name, checkpoint.step)
            done[name] = "resumed"
            continue
        reason = ("before it saved a checkpoint" if checkpoint is None
                  else f"and it was already restarted {current.restart_count} times")
        message = f"the training run was lost (the service or the cluster restarted) {reason}"
        await app.store.record(attempt.project, attempt.job_id, "state", {"state": JobState.FAILED,
                               "message": message}, failure=JobFailure(
            FailureCategory.INFRASTRUCTURE, message,
            "Create the job again" + ("" if checkpoint is None else ", or resume it from its last checkpoint")
            + "; if it keeps happening, tell the operators.", code="UNAVAILABLE"))
        log.warning("failed %s: %s", name, message)
        done[name] = "failed"
    return done
