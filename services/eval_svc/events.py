"""Evaluation events in PostgreSQL: the writer the Ray runner uses, and the watcher hub.

``PgEvalSink`` runs inside Ray processes (the runner actor and its scoring tasks). It is
synchronous for its caller and talks to PostgreSQL from one private event-loop thread;
every state change and progress report goes through :func:`store.record_event`.

``EventHub`` runs in the service: a :class:`NotifyHub` on ``evaluation_events`` that
wakes the watchers of an evaluation, who then read the new rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

import asyncpg

from services.common.jobs import JobFailure, JobState
from services.common.notify import NotifyHub
from services.eval_svc import store
from services.eval_svc.domain.model import Event, ExampleResult, Results

log = logging.getLogger(__name__)

CHANNEL = "evaluation_events"


class PgEvalSink:
    """Writes one evaluation's events, examples and outcome. Picklable: it reconnects
    wherever it is unpickled."""

    def __init__(self, database_url: str, project: str, evaluation_id: str) -> None:
        self.database_url, self.project, self.evaluation_id = database_url, project, evaluation_id
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-eval-sink", daemon=True)
        self._thread.start()
        self._pool: asyncpg.Pool | None = None

    def __reduce__(self):
        return (PgEvalSink, (self.database_url, self.project, self.evaluation_id))

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            from services.common import db

            self._pool = await db.create_pool(self.database_url, store.SCHEMA, min_size=1, max_size=1)
        return self._pool

    def _run(self, make, attempts: int = 5, timeout: float = 60) -> Any:
        for attempt in range(attempts):
            future = asyncio.run_coroutine_threadsafe(make(), self._loop)
            try:
                return future.result(timeout=timeout)
            except Exception:
                if attempt == attempts - 1:
                    raise
                time.sleep(min(2.0, 0.2 * 2**attempt))
        return None

    def _record(self, kind: str, payload: dict, results: Results | None = None,
                failure: JobFailure | None = None) -> list[Event]:
        async def go() -> list[Event]:
            pool = await self._get_pool()
            async with pool.acquire() as conn:
                return await store.record_event(conn, self.project, self.evaluation_id, kind, payload,
                                                results=results, failure=failure)

        try:
            return self._run(go)
        except Exception:
            log.exception("could not record %s event of %s/%s", kind, self.project, self.evaluation_id)
            return []

    def state(self) -> JobState | None:
        async def go() -> JobState | None:
            pool = await self._get_pool()
            value = await pool.fetchval("SELECT state FROM evaluations WHERE project = $1 AND evaluation_id = $2",
                                        self.project, self.evaluation_id)
            return None if value is None else JobState(value)

        return self._run(go)

    def log(self, message: str, level: str = "INFO", source: str = "runner") -> None:
        self._record("log", {"level": level, "message": message, "source": source})

    def progress(self, **deltas: Any) -> None:
        self._record("progress", deltas)

    def examples(self, examples: list[ExampleResult]) -> None:
        """Stores a batch of example results (raises when it cannot: results must be whole)."""
        async def go() -> None:
            pool = await self._get_pool()
            async with pool.acquire() as conn:
                await store.insert_examples(conn, self.project, self.evaluation_id, examples)

        self._run(go)

    def succeed(self, results: Results, message: str) -> bool:
        return bool(self._record("state", {"state": JobState.SUCCEEDED.name, "message": message}, results=results))

    def fail(self, failure: JobFailure) -> bool:
        return bool(self._record("state", {"state": JobState.FAILED.name, "message": failure.message},
                                 failure=failure))

    def close(self) -> None:
        async def shut() -> None:
            if self._pool is not None:
                await self._pool.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)


class EventHub(NotifyHub):
    """Wakes the watchers of an evaluation when one of its events is inserted."""

    def __init__(self, database_url: str, poll_seconds: float = 5.0) -> None:
        super().__init__(database_url, CHANNEL, poll_seconds)
