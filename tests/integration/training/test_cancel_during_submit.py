"""A cancel that reaches a job while its run is still being submitted: the cluster
stops the run, the submit fails because of it, and the job ends CANCELLED, not FAILED
("the cluster did not accept the run"). On a database of its own: the training
service here would otherwise take over the other modules' queued jobs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest_asyncio

from mtw.common.v1 import job_failure_pb2
from mtw.common.v1 import job_state_pb2 as js
from mtw.training.v1 import training_service_pb2 as pb
from services.training_svc.scheduler import InMemoryScheduler, RunStatus
from tests.conftest import fresh_database
from tests.integration.slow_start import SlowToStart

from .service_harness import Stack, brown_csv, start_stack, stop_stack

TERMINAL = {js.JOB_STATE_SUCCEEDED, js.JOB_STATE_FAILED, js.JOB_STATE_CANCELLED}


class SlowTraining(SlowToStart, InMemoryScheduler):
    """The training scheduler's other calls as the in-memory one makes them."""


@pytest_asyncio.fixture(scope="module")
async def slow_stack(service_settings) -> AsyncIterator[tuple[Stack, SlowTraining]]:
    scheduler = SlowTraining(RunStatus.GONE)
    async with fresh_database() as database_url:
        def own_database(cls, **overrides):
            return service_settings(cls, database_url=database_url, **overrides)

        stack = await start_stack(own_database, scheduler)
        try:
            stack.versions["classification"] = await stack.upload(brown_csv(), "brown.csv")
            yield stack, scheduler
        finally:
            await stop_stack(stack)


async def test_a_cancel_during_submit_ends_the_job_cancelled(slow_stack):
    stack, scheduler = slow_stack
    job = await stack.create(display_name="cancelled while starting")
    await asyncio.wait_for(scheduler.submitting.wait(), timeout=30)
    assert (await stack.get(job.name)).state == js.JOB_STATE_PREPARING
    await stack.stub.CancelTuningJob(pb.CancelTuningJobRequest(name=job.name), metadata=stack.auth())
    done = await stack.wait_for(job.name, TERMINAL, timeout=30)
    assert done.state == js.JOB_STATE_CANCELLED, done.failure
    assert done.failure.category == job_failure_pb2.FAILURE_CATEGORY_CANCELLED_BY_USER
    assert scheduler.cancelled == [scheduler.submitted[0].run_name]
