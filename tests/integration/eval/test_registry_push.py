"""The evaluation service tells the registry of every ended evaluation of a tuned model
(LinkEvaluation). While the registry cannot be reached or fails, the pushes back off
and are retried; a link the registry refuses for good (NOT_FOUND, INVALID_ARGUMENT,
FAILED_PRECONDITION, PERMISSION_DENIED) is dropped, so the evaluations behind it still
go through.

The evaluation side is the real EvaluationApp on its own PostgreSQL database; the
registry is a real gRPC server on loopback whose answers each test scripts.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import grpc
import pytest
import pytest_asyncio

from mtw.registry.v1 import registry_service_pb2, registry_service_pb2_grpc
from services.common import db
from services.common.jobs import JobState
from services.eval_svc.app import EvaluationApp
from services.eval_svc.domain.model import EvalConfig, ModelRef, RunSpec, Task
from services.eval_svc.service import MIGRATIONS
from services.eval_svc.settings import EvaluationSettings
from services.eval_svc.store import SCHEMA, EvaluationStore, NewEvaluation
from tests.conftest import fresh_database
from tests.integration.waiting import wait_for

PROJECT = "alpha"
RETRY_SECONDS = 1.0


class ScriptedRegistry(registry_service_pb2_grpc.RegistryServiceServicer):
    """LinkEvaluation answers OK unless the evaluation is scripted to fail with a status."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fail: dict[str, grpc.StatusCode] = {}

    async def LinkEvaluation(self, request, context):
        self.calls.append(request.evaluation)
        code = self.fail.get(request.evaluation)
        if code is not None:
            await context.abort(code, f"scripted {code.name}")
        version = f"projects/{PROJECT}/models/m/versions/{len(self.calls)}"
        return registry_service_pb2.LinkEvaluationResponse(model_versions=[version])


class Registry:
    """A scripted registry that can be started late on a port fixed in advance."""

    def __init__(self) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.servicer = ScriptedRegistry()
        self.server: grpc.aio.Server | None = None

    async def start(self) -> None:
        self.server = grpc.aio.server()
        registry_service_pb2_grpc.add_RegistryServiceServicer_to_server(self.servicer, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(None)


@pytest_asyncio.fixture
async def registry() -> AsyncIterator[Registry]:
    running = Registry()
    yield running
    await running.stop()


@pytest_asyncio.fixture
async def app(registry: Registry) -> AsyncIterator[EvaluationApp]:
    async with fresh_database() as url:
        pool = await db.create_pool(url, SCHEMA)
        try:
            await db.migrate(pool, SCHEMA, MIGRATIONS)
            settings = EvaluationSettings(database_url=url, registry_service_endpoint=f"127.0.0.1:{registry.port}",
                                          registry_retry_seconds=RETRY_SECONDS, internal_token="push-test-token")
            evaluations = EvaluationApp(settings, EvaluationStore(pool), scheduler=None, hub=None)
            try:
                yield evaluations
            finally:
                await evaluations.peers.close()
        finally:
            await pool.close()


async def ended(app: EvaluationApp, evaluation_id: str, state: JobState = JobState.SUCCEEDED) -> str:
    """Stores an ended evaluation of a tuning job's output; returns its name."""
    name = f"projects/{PROJECT}/evaluations/{evaluation_id}"
    spec = RunSpec(evaluation_name=name, run_name=f"{evaluation_id}-1", task=Task.SEQUENCE_CLASSIFICATION,
                   model_uri="s3://mtw/job/output", model_path="", base_source="base", label_names=("a", "b"),
                   split_uri="s3://mtw/data/test.parquet", split_rows=10, metrics=("accuracy",),
                   config=EvalConfig(), max_seq_length=64)
    await app.store.insert(NewEvaluation(
        project=PROJECT, evaluation_id=evaluation_id, display_name="", dataset_version="projects/alpha/datasets/d/versions/1",
        model=ModelRef(tuning_job=f"projects/{PROJECT}/tuningJobs/job-1"), split="test", metrics=("accuracy",),
        config=EvalConfig(), baseline_evaluation="", task=Task.SEQUENCE_CLASSIFICATION,
        created_by_tuning_job="", spec=spec, creator="test", labels={}))
    # One statement per evaluation: the pushes go in the order the evaluations ended.
    await app.store.pool.execute("UPDATE evaluations SET state = $3, update_time = clock_timestamp()"
                                 " WHERE project = $1 AND evaluation_id = $2", PROJECT, evaluation_id, state.value)
    return name


async def pending(app: EvaluationApp) -> list[str]:
    return [e.name for e in await app.store.pending_registry_links()]


async def test_pushes_back_off_while_the_registry_is_away_then_go_through(app, registry):
    first = await ended(app, "ev-first")
    cancelled = await ended(app, "ev-cancelled", JobState.CANCELLED)

    await app.push_registry_links()  # nothing listens on the registry's port yet
    assert await pending(app) == [first, cancelled]

    await registry.start()
    await app.push_registry_links()  # inside the back-off: not even tried
    assert registry.servicer.calls == []
    assert await pending(app) == [first, cancelled]

    async def linked() -> bool:
        await app.push_registry_links()
        return not await pending(app)

    await wait_for(linked, timeout=30, interval=RETRY_SECONDS / 4)
    assert registry.servicer.calls[:2] == [first, cancelled]


async def test_a_refused_link_is_dropped_and_the_ones_behind_it_still_go_through(app, registry):
    await registry.start()
    gone = await ended(app, "ev-version-deleted")
    malformed = await ended(app, "ev-refused")
    behind = await ended(app, "ev-behind")
    registry.servicer.fail = {gone: grpc.StatusCode.NOT_FOUND, malformed: grpc.StatusCode.FAILED_PRECONDITION}

    await app.push_registry_links()

    assert registry.servicer.calls == [gone, malformed, behind]
    assert await pending(app) == []
    await app.push_registry_links()  # dropped links are not asked again
    assert registry.servicer.calls == [gone, malformed, behind]


@pytest.mark.parametrize("code", [grpc.StatusCode.INTERNAL, grpc.StatusCode.UNAVAILABLE])
async def test_a_failing_registry_holds_the_links_back_and_they_are_retried(app, registry, code):
    await registry.start()
    failing = await ended(app, "ev-failing")
    behind = await ended(app, "ev-waiting")
    registry.servicer.fail = {failing: code}

    await app.push_registry_links()
    assert registry.servicer.calls == [failing]  # the pass stops at the first failure
    assert await pending(app) == [failing, behind]

    registry.servicer.fail = {}
    await app.push_registry_links()  # inside the back-off: not asked again yet
    assert registry.servicer.calls == [failing]
    await asyncio.sleep(RETRY_SECONDS)
    await app.push_registry_links()
    assert registry.servicer.calls == [failing, failing, behind]
    assert await pending(app) == []
