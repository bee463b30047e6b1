"""A cluster double for the race between a cancel and a submit: its runs are still
starting when they are cancelled. The submit waits for the runner and fails as Ray's
does when the cancel kills the runner it waited for; the cancel returns a moment later,
as a cluster confirms a stop, so the service handles the failed submit first (the order
that used to end the job FAILED). The training and evaluation services' tests both use
it, each on a database of its own."""

from __future__ import annotations

import asyncio
from typing import Any


class SlowToStart:
    def __init__(self, gone: Any, *args: Any, **kwargs: Any) -> None:
        """``gone``: the scheduler's RunStatus for a run it does not know."""
        super().__init__(*args, **kwargs)
        self.gone = gone
        self.submitting = asyncio.Event()
        self.submitted: list[Any] = []
        self.cancelled: list[str] = []
        self._killed: dict[str, asyncio.Event] = {}

    def _kill_switch(self, run_name: str) -> asyncio.Event:
        return self._killed.setdefault(run_name, asyncio.Event())

    async def submit(self, run: Any) -> None:
        self.submitted.append(run)
        self.submitting.set()
        await self._kill_switch(run.run_name).wait()
        raise RuntimeError("the runner actor died before it was ready")

    async def cancel(self, run_name: str) -> None:
        self.cancelled.append(run_name)
        self._kill_switch(run_name).set()
        await asyncio.sleep(0.5)

    async def status(self, run_name: str) -> Any:
        return self.gone

    async def close(self) -> None:
        pass
