"""Waking watchers of a resource when PostgreSQL says it changed (LISTEN/NOTIFY).

A service's event table has an insert trigger that NOTIFYs ``<channel>`` with
``project/resource/sequence``; one connection per service LISTENs and wakes the
watchers of that resource, who then read the new rows. Notifications only wake: the
rows are the truth, so a lost notification costs at most ``poll_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg

log = logging.getLogger(__name__)


class NotifyHub:
    def __init__(self, database_url: str, channel: str, poll_seconds: float = 5.0) -> None:
        self.database_url = database_url
        self.channel = channel
        self.poll_seconds = poll_seconds
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self._conn: asyncpg.Connection | None = None
        self._keeper: asyncio.Task | None = None

    async def start(self) -> None:
        await self._connect()
        self._keeper = asyncio.create_task(self._keep_listening())

    async def _connect(self) -> None:
        self._conn = await asyncpg.connect(self.database_url)
        await self._conn.add_listener(self.channel, self._on_notify)

    async def _keep_listening(self) -> None:
        # A dropped LISTEN connection is re-opened; watchers poll meanwhile.
        while True:
            await asyncio.sleep(2)
            if self._conn is None or self._conn.is_closed():
                try:
                    await self._connect()
                    self._wake_all()
                except Exception:  # noqa: BLE001
                    log.warning("listener on %s cannot reach the database; retrying", self.channel)

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
    async def subscribe(self, project: str, resource_id: str) -> AsyncIterator[asyncio.Event]:
        """An Event set whenever the resource gets a new event (subscribe before reading,
        so no insert falls between the read and the wait)."""
        key = f"{project}/{resource_id}"
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

    @contextlib.asynccontextmanager
    async def follow(self, project: str, resource_id: str, after: int, *,
                     read: Callable[[int, int], Awaitable[list[Any]]], is_final: Callable[[Any], bool],
                     has_ended: Callable[[], Awaitable[bool]], batch: int = 500) -> AsyncIterator[AsyncIterator[Any]]:
        """``async with hub.follow(...) as events``: a resource's events after sequence
        ``after``, the stored ones, then live ones, until its final event (or, for a
        resource that ended without one, its last). Leaving the block unsubscribes at
        once, also when the reader stops early (a client gone mid-stream).

        ``read(after, limit)`` lists stored events in order (each has ``.sequence``);
        ``has_ended()`` says whether the resource is in a terminal state.
        """
        events = self._follow(project, resource_id, after, read, is_final, has_ended, batch)
        async with contextlib.aclosing(events):
            yield events

    async def _follow(self, project, resource_id, after, read, is_final, has_ended, batch) -> AsyncIterator[Any]:
        async with self.subscribe(project, resource_id) as woken:
            while True:
                events = await read(after, batch)
                for event in events:
                    yield event
                    after = event.sequence
                if events and is_final(events[-1]):
                    return
                if len(events) == batch:
                    continue
                if not events:
                    if await has_ended():
                        if not await read(after, 1):
                            return
                        continue
                    await self.wait(woken)
