"""Job events in PostgreSQL: the sink the trainer writes through, and the watcher hub.

``PgEventSink`` runs inside Ray processes (the runner actor and the trainer's rank 0):
it is synchronous for its caller, and talks to PostgreSQL from one private event-loop
thread. Every event goes through :func:`store.record_event`, so the job row follows.

``EventHub`` runs in the service: one connection LISTENs on ``training_job_events``
(the table's insert trigger NOTIFYs ``project/job/sequence``) and wakes the watchers of
that job, who then read the new rows. Notifications only wake; the rows are the truth,
so a lost notification costs at most the fallback poll interval, never an event.
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
from services.training_svc import store
from services.training_svc.domain.model import JobEvent, Output

log = logging.getLogger(__name__)

CHANNEL = "training_job_events"


class PgEventSink:
    """The trainer's EventSink for one job. Picklable as ``functools.partial(PgEventSink, …)``
    (the factory crosses to Ray; the sink itself is built where it is used)."""

    def __init__(self, database_url: str, project: str, job_id: str) -> None:
        self.database_url, self.project, self.job_id = database_url, project, job_id
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pg-event-sink", daemon=True)
        self._thread.start()
        self._pool: asyncpg.Pool | None = None

    async def _get_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            from services.common import db

            self._pool = await db.create_pool(self.database_url, store.SCHEMA, min_size=1, max_size=1)
        return self._pool

    async def _record(self, kind: str, payload: dict, output: Output | None,
                      failure: JobFailure | None) -> list[JobEvent]:
        pool = await self._get_pool()
        async with pool.acquire() as conn:
            return await store.record_event(conn, self.project, self.job_id, kind, payload,
                                            output=output, failure=failure)

    def _call(self, kind: str, payload: dict, output: Output | None = None,
              failure: JobFailure | None = None, attempts: int = 5) -> list[JobEvent]:
        for attempt in range(attempts):
            future = asyncio.run_coroutine_threadsafe(self._record(kind, _plain(payload), output, failure),
                                                      self._loop)
            try:
                return future.result(timeout=30)
            except Exception:
                if attempt == attempts - 1:
                    log.exception("could not record %s event of %s/%s", kind, self.project, self.job_id)
                    return []
                time.sleep(min(2.0, 0.2 * 2**attempt))
        return []

    def emit(self, kind: str, payload: dict) -> None:
        """Record one event (blocking until it is committed, so order is kept)."""
        self._call(kind, payload)

    def succeed(self, output: Output, message: str = "training finished") -> bool:
        return bool(self._call("state", {"state": JobState.SUCCEEDED, "message": message}, output=output))

    def fail(self, failure: JobFailure) -> bool:
        return bool(self._call("state", {"state": JobState.FAILED, "message": failure.message},
                               failure=failure))

    def note_placement_group(self, placement_group_id: str) -> None:
        """Remember where the workers run, so a cancel can release their CPUs itself."""
        async def write() -> None:
            pool = await self._get_pool()
            await pool.execute("UPDATE tuning_jobs SET placement_group = $3 WHERE project = $1 AND job_id = $2",
                               self.project, self.job_id, placement_group_id)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(write(), self._loop).result(timeout=30)

    def state(self) -> JobState | None:
        async def read() -> JobState | None:
            pool = await self._get_pool()
            value = await pool.fetchval("SELECT state FROM tuning_jobs WHERE project = $1 AND job_id = $2",
                                        self.project, self.job_id)
            return None if value is None else JobState(value)

        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(timeout=30)

    def close(self) -> None:
        async def shut() -> None:
            if self._pool is not None:
                await self._pool.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)

    def __reduce__(self):  # a sink that crosses a process boundary reconnects there
        return (PgEventSink, (self.database_url, self.project, self.job_id))


def _plain(value: Any) -> Any:
    """Enums and numpy/torch scalars to JSON-friendly values."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, JobState):
        return value.name
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    if hasattr(value, "value") and hasattr(value, "name") and not isinstance(value, (str, int, float)):
        return value.name
    return value


class EventHub(NotifyHub):
    """Wakes the watchers of a job when one of its events is inserted (LISTEN/NOTIFY)."""

    def __init__(self, database_url: str, poll_seconds: float = 5.0) -> None:
        super().__init__(database_url, CHANNEL, poll_seconds)
