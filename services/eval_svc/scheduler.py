"""Where evaluation runs execute: each attempt in a detached, named Ray actor.

The actor (namespace of the settings, name = the attempt's run name, detached) calls
``run_evaluation``, which fans the split out to scoring tasks and records the outcome
itself through :class:`PgEvalSink`. Nothing of a run lives in the service process: a
restarted service finds the actor by name and adopts it. Killing the actor stops the
run; its scoring tasks are owned by it and die with it.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import time
from dataclasses import dataclass

from services.common import ray_cluster
from services.common.telemetry import record_run_duration
from services.eval_svc.domain.model import RunSpec


class RunStatus(enum.Enum):
    RUNNING = "running"
    FINISHED = "finished"  # returned; its outcome is recorded
    GONE = "gone"


@dataclass(frozen=True)
class Run:
    project: str
    evaluation_id: str
    spec: RunSpec
    database_url: str
    cache_dir: str
    cache_bytes: int = 20 * 2**30
    otlp_endpoint: str = ""  # where the workers export their spans ("" = nowhere)

    @property
    def run_name(self) -> str:
        return self.spec.run_name


class EvaluationRunner:
    """Body of the per-attempt actor; threaded so `finished` answers while `run` works."""

    def __init__(self, run: Run, s3) -> None:
        self.run_info, self.s3 = run, s3
        self._started = self._finished = False

    def ready(self) -> bool:
        return True

    def finished(self) -> bool:
        return self._finished

    def run(self) -> str:
        if self._started:  # adopted by a second submit: never score twice
            return "already running"
        self._started = True
        from services.common.jobs import JobState
        from services.eval_svc.events import PgEvalSink
        from services.eval_svc.runner.run import run_evaluation

        run = self.run_info
        factory = functools.partial(PgEvalSink, run.database_url, run.project, run.evaluation_id)
        probe = factory()
        try:
            if probe.state() not in (JobState.PREPARING, JobState.RUNNING):
                return "skipped"  # cancelled or ended before this attempt began
        finally:
            probe.close()
        started, outcome = time.monotonic(), "failed"
        try:
            outcome = run_evaluation(run.spec, sink_factory=factory, s3=self.s3, cache_dir=run.cache_dir,
                                     cache_bytes=run.cache_bytes, runtime_env=ray_cluster.runtime_env(),
                                     otlp_endpoint=run.otlp_endpoint)
            return outcome
        finally:
            self._finished = True
            record_run_duration("evaluation-worker", run.otlp_endpoint, "mtw.evaluation.run.duration",
                                time.monotonic() - started, {"project": run.project, "task": run.spec.task.name,
                                                             "outcome": outcome})
            self._exit_soon()

    def _exit_soon(self) -> None:
        import threading

        import ray

        me = ray.get_runtime_context().current_actor

        def bye() -> None:
            time.sleep(0.5)  # let run()'s reply go out first
            ray.kill(me, no_restart=True)

        threading.Thread(target=bye, daemon=True).start()


class RayEvaluationScheduler:
    """Runs evaluations on the Ray cluster at ``address`` (empty: a local one in-process)."""

    def __init__(self, address: str, namespace: str, s3, local_num_cpus: int = 0) -> None:
        import ray

        self._attached = ray_cluster.attach(address, namespace, local_num_cpus)
        self._ray = ray
        self.namespace = namespace
        self.s3 = s3
        self._actor = ray.remote(EvaluationRunner)

    async def submit(self, run: Run) -> None:
        await asyncio.to_thread(self._submit, run)

    def _submit(self, run: Run) -> None:
        if ray_cluster.named_actor(run.run_name, self.namespace) is not None:
            return  # adopt: the name is the attempt
        handle = self._actor.options(
            name=run.run_name, namespace=self.namespace, lifetime="detached", get_if_exists=True, num_cpus=0,
            max_concurrency=4, max_restarts=0, runtime_env=ray_cluster.runtime_env(),
        ).remote(run, self.s3)
        self._ray.get(handle.ready.remote(), timeout=120)
        handle.run.remote()  # fire and forget: the actor records the outcome itself

    async def cancel(self, run_name: str) -> None:
        await asyncio.to_thread(self._cancel, run_name)

    def _cancel(self, run_name: str, wait: float = 20) -> None:
        handle = ray_cluster.named_actor(run_name, self.namespace)
        if handle is None:
            return
        self._ray.kill(handle, no_restart=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and ray_cluster.named_actor(run_name, self.namespace) is not None:
            time.sleep(0.2)

    async def status(self, run_name: str) -> RunStatus:
        return await asyncio.to_thread(self._status, run_name)

    def _status(self, run_name: str) -> RunStatus:
        from ray.exceptions import GetTimeoutError, RayActorError

        handle = ray_cluster.named_actor(run_name, self.namespace)
        if handle is None:
            return RunStatus.GONE
        try:
            finished = self._ray.get(handle.finished.remote(), timeout=10)
        except RayActorError:
            return RunStatus.GONE
        except GetTimeoutError:
            return RunStatus.RUNNING
        return RunStatus.FINISHED if finished else RunStatus.RUNNING

    async def close(self) -> None:
        """Detaches if this scheduler attached; runs go on (detached actors)."""
        if self._attached and self._ray.is_initialized():
            await asyncio.to_thread(self._ray.shutdown)
