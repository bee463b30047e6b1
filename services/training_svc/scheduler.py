"""Where training runs execute, behind one small interface.

The app decides *what* runs (queue, quotas, state machine); a Scheduler only starts a
run, stops it and says whether it still exists. ``RayScheduler`` (``ray_scheduler.py``)
runs each attempt in a detached named Ray actor; ``InMemoryScheduler`` runs a scripted
coroutine in the service's loop, for tests that need no cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from services.training_svc.domain.model import TrainingSpec


class RunStatus(enum.Enum):
    RUNNING = "running"  # the run exists and is working (or waiting for workers)
    FINISHED = "finished"  # the run exists but has returned; its outcome is recorded
    GONE = "gone"  # no such run (never started, ended and cleaned up, or lost)


@dataclass(frozen=True)
class Run:
    """One attempt of a job, as handed to a scheduler."""

    project: str
    job_id: str
    spec: TrainingSpec
    database_url: str  # where the run records its events and outcome
    max_failures: int = 2
    cpus_per_worker: float = 1.0
    otlp_endpoint: str = ""  # where the workers export their spans ("" = nowhere)

    @property
    def run_name(self) -> str:
        return self.spec.run_name


@dataclass(frozen=True)
class ThroughputQuery:
    """What a calibration measures: samples/s of a few real steps on synthetic data."""

    model_source: str
    is_local: bool
    task: str
    method: str
    max_seq_length: int
    batch_size: int
    fan_in_fan_out: bool

    @property
    def key(self) -> str:
        return "|".join(str(v) for v in (self.model_source, self.task, self.method,
                                         self.max_seq_length, self.batch_size))


class Scheduler(Protocol):
    async def submit(self, run: Run) -> None:
        """Start the run; a run of that name that already exists is adopted, never doubled."""

    async def cancel(self, run_name: str) -> None:
        """Stop the run and free its resources (no-op when it is gone)."""

    async def status(self, run_name: str) -> RunStatus: ...

    async def release(self, placement_group_id: str) -> None:
        """Free a stopped or lost run's reserved resources (no-op when already free)."""

    async def measure_throughput(self, query: ThroughputQuery, timeout: float) -> float | None:
        """Samples/s measured on the cluster, or None when it can't be measured."""

    async def close(self) -> None: ...


Script = Callable[[Run], Awaitable[None]]


class InMemoryScheduler:
    """Runs ``script(run)`` as a task of the current loop (default: wait until cancelled)."""

    def __init__(self, script: Script | None = None) -> None:
        self.script = script or _wait_forever
        self.tasks: dict[str, asyncio.Task] = {}
        self.submitted: list[Run] = []
        self.cancelled: list[str] = []
        self.released: list[str] = []

    async def submit(self, run: Run) -> None:
        if run.run_name in self.tasks:
            return
        self.submitted.append(run)
        self.tasks[run.run_name] = asyncio.create_task(self.script(run))

    async def cancel(self, run_name: str) -> None:
        self.cancelled.append(run_name)
        task = self.tasks.pop(run_name, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    async def status(self, run_name: str) -> RunStatus:
        task = self.tasks.get(run_name)
        if task is None:
            return RunStatus.GONE
        return RunStatus.FINISHED if task.done() else RunStatus.RUNNING

    async def measure_throughput(self, query: ThroughputQuery, timeout: float) -> float | None:
        return None

    async def release(self, placement_group_id: str) -> None:
        self.released.append(placement_group_id)

    def forget(self, run_name: str) -> None:
        """Drop a run as if the cluster had lost it (for reconcile tests)."""
        task = self.tasks.pop(run_name, None)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        for name in list(self.tasks):
            await self.cancel(name)


async def _wait_forever(run: Run) -> None:
    await asyncio.Event().wait()
