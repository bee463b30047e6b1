"""The SDK's jobs resource (sync and asyncio) against the real training service: create
from a preset with keyword hyperparameters, list, watch live, cancel, resume, estimate."""

from __future__ import annotations

import asyncio

import pytest

import mtw
from mtw.client.jobs import TERMINAL
from mtw.common.v1 import job_state_pb2 as js
from mtw.errors import FailedPrecondition, InvalidArgument, NotFound

from .service_harness import *


def _endpoints(stack) -> dict[str, str]:
    return {"dataset": f"127.0.0.1:{stack.dataset.port}", "training": f"127.0.0.1:{stack.training.port}"}


async def test_async_client_creates_watches_and_cancels_a_job(stack):
    async with mtw.AsyncClient(_endpoints(stack), stack.keys["alpha"], project="alpha") as client:
        models = [m.name async for m in client.jobs.base_models()]
        assert "baseModels/all-minilm-l6-v2" in models
        job = await client.jobs.create("all-minilm-l6-v2", stack.versions["classification"], preset="quick",
                                       hyperparameters={"epochs": 1, "learning_rate": 3e-4, "lora": {"rank": 4}},
                                       display_name="sdk job")
        assert job.resolved_hyperparameters.learning_rate == pytest.approx(3e-4)
        assert job.resolved_hyperparameters.lora.rank == 4
        assert job.name in [j.name async for j in client.jobs.list(limit=50)]

        seen = []

        async def watch():
            async for event in client.jobs.watch(job):
                seen.append(event)

        watcher = asyncio.create_task(watch())
        await stack.wait_for(job.name, {js.JOB_STATE_PREPARING, js.JOB_STATE_RUNNING})
        cancelled = await client.jobs.cancel(job.name)
        assert cancelled.state in (js.JOB_STATE_CANCELLING, js.JOB_STATE_CANCELLED)
        await asyncio.wait_for(watcher, 30)  # the stream ends with the job
        assert seen[-1].state_change.state == js.JOB_STATE_CANCELLED
        assert [e.sequence_number for e in seen] == list(range(1, len(seen) + 1))
        assert (await client.jobs.get(job.name)).state in TERMINAL

        with pytest.raises(InvalidArgument) as bad:
            await client.jobs.create("all-minilm-l6-v2", stack.versions["classification"],
                                     hyperparameters={"learning_rate": 5.0})
        assert "learning_rate" in str(bad.value)


async def test_sync_client_estimate_resume_and_tenancy(stack):
    # The blocking client runs in a thread: the services under test share this event loop.
    await asyncio.to_thread(_sync_client_calls, stack)


def _sync_client_calls(stack) -> None:
    with mtw.Client(_endpoints(stack), stack.keys["alpha"], project="alpha") as client:
        estimate = client.jobs.estimate("all-minilm-l6-v2", stack.versions["classification"], preset="quick")
        assert estimate.total_steps > 0 and estimate.resolved_hyperparameters.epochs > 0
        job = client.jobs.create("all-minilm-l6-v2", stack.versions["classification"], preset="quick")
        assert client.jobs.cancel(job).state in (js.JOB_STATE_CANCELLED, js.JOB_STATE_CANCELLING)
        with pytest.raises(FailedPrecondition, match="checkpoint"):  # cancelled before any checkpoint
            client.jobs.resume(job)
    with mtw.Client(_endpoints(stack), stack.keys["beta"], project="beta") as other, pytest.raises(NotFound):
        other.jobs.get(job.name)
