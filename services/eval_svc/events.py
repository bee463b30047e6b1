"""Evaluation events in PostgreSQL: the writer the Ray runner uses, and the watcher hub.

``PgEvalSink`` runs inside Ray processes (the runner actor and its scoring tasks). It is
synchronous for its caller and talks to PostgreSQL from one private event-loop thread;
every state change and progress report goes through :func:`store.record_event`.

``EventHub`` runs in the service: one connection LISTENs on ``evaluation_events`` and
wakes the watchers of that evaluation, who then read the new rows (the rows are the
truth; a lost notification costs at most the poll interval).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from services.eval_svc import store
from services.eval_svc.domain.model import Event, ExampleResult, Failure, JobState, Results

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
                failure: Failure | None = None) -> list[Event]:
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

    def fail(self, failure: Failure) -> bool:
        return bool(self._record("state", {"state": JobState.FAILED.name, "message": failure.message},
                                 failure=failure))

    def close(self) -> None:
        async def shut() -> None:
            if self._pool is not None:
                await self._pool.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)


class EventHub:
    """Wakes the watchers of an evaluation when one of its events is inserted (LISTEN/NOTIFY)."""

    def __init__(self, database_url: str, poll_seconds: float = 5.0) -> None:
        self.database_url = database_url
        self.poll_seconds = poll_seconds
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._conn: asyncpg.Connection | None = None
        self._keeper: asyncio.Task | None = None

    async def start(self) -> None:
        await self._connect()
        self._keeper = asyncio.create_task(self._keep_listening())

    async def _connect(self) -> None:
        self._conn = await asyncpg.connect(self.database_url)
        await self._conn.add_listener(CHANNEL, self._on_notify)

    async def _keep_listening(self) -> None:
        while True:
            await asyncio.sleep(2)
            if self._conn is None or self._conn.is_closed():
                try:
                    await self._connect()
                    self._wake_all()
                except Exception:  # noqa: BLE001
                    log.warning("event listener cannot reach the database; retrying")

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._keeper
        if self._conn is not None and not self._conn.is_closed():
            await self._conn.close()
        self._wake_all()

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        for event in self._waiters.get(payload.rsplit("/", 1)[0], ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._waiters.values():
            for event in events:
                event.set()

    @contextlib.asynccontextmanager
    async def subscribe(self, project: str, evaluation_id: str) -> AsyncIterator[asyncio.Event]:
        key = f"{project}/{evaluation_id}"
        event = asyncio.Event()
        self._waiters[key].add(event)
        try:
            yield event
        finally:
            self._waiters[key].discard(event)
            if not self._waiters[key]:
                del self._waiters[key]

    async def wait(self, event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), self.poll_seconds)
        event.clear()
