"""Runs each attempt of a tuning job in a detached, named Ray actor.

The actor (namespace ``mtw``, name = the attempt's run name, ``lifetime="detached"``)
calls the trainer's ``run_training`` — which drives Ray Train — and records the
outcome itself through :class:`PgEventSink`. Nothing of the run lives in the service
process, so a service restart loses nothing: the next start finds the actor by name and
adopts it (``reconcile.py``). Killing the actor stops the run: the Train controller and
its workers are owned by it and die with it, which frees their CPUs.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time

from services.common.ray_cluster import RAY_ENV, WORKER_ENV, attach
from services.common.telemetry import record_run_duration
from services.training_svc.scheduler import Run, RunStatus, ThroughputQuery
from services.training_svc.settings import TrainingSettings

log = logging.getLogger(__name__)



class TrainingRunner:
    """Body of the per-attempt actor. Threaded (max_concurrency > 1) so `finished` answers
    while `run` trains."""

    def __init__(self, run: Run, s3) -> None:
        self.run_info = run
        self.s3 = s3
        self._started = False
        self._finished = False

    def ready(self) -> bool:
        return True

    def finished(self) -> bool:
        return self._finished

    def run(self) -> str:
        if self._started:  # adopted by a second submit: never train twice
            return "already running"
        self._started = True
        from services.common.jobs import JobState
        from services.training_svc.domain.failures import classify
        from services.training_svc.events import PgEventSink
        from services.training_svc.trainer import run_training, unwrap_error

        run = self.run_info
        sink = PgEventSink(run.database_url, run.project, run.job_id)
        outcome = "skipped"
        started = time.monotonic()
        try:
            if sink.state() not in (JobState.PREPARING, JobState.RUNNING):
                return outcome  # cancelled or ended before this attempt began
            try:
                result = run_training(
                    run.spec, sink_factory=functools.partial(PgEventSink, run.database_url, run.project, run.job_id),
                    s3=self.s3, max_failures=run.max_failures, cpus_per_worker=run.cpus_per_worker,
                    otlp_endpoint=run.otlp_endpoint,
                )
            except Exception as exc:
                error = unwrap_error(exc)
                failure = classify(error)
                log.exception("run %s failed: %s", run.run_name, failure.message)
                sink.fail(failure)
                outcome = "failed"
            else:
                sink.succeed(result.output, f"training finished at step {result.steps}")
                outcome = "succeeded"
            return outcome
        finally:
            self._finished = True
            sink.close()
            if outcome != "skipped":
                record_run_duration("training-worker", run.otlp_endpoint, "mtw.training.run.duration",
                                    time.monotonic() - started, {"project": run.project,
                                                                 "task": run.spec.task.name, "outcome": outcome})
            self._exit_soon()

    def _exit_soon(self) -> None:
        # The actor's job is done; free its process (detached actors never exit on their own).
        import threading

        import ray

        me = ray.get_runtime_context().current_actor

        def bye() -> None:
            time.sleep(0.5)  # let run()'s reply go out first
            ray.kill(me, no_restart=True)

        threading.Thread(target=bye, daemon=True).start()


def _measure(query: ThroughputQuery) -> float:
    from services.training_svc.domain.model import Task, TuningMethod
    from services.training_svc.trainer import calibrate

    return float(calibrate.measure_throughput(
        query.model_source, query.is_local, Task[query.task], TuningMethod[query.method], query.max_seq_length,
        query.batch_size, query.fan_in_fan_out,
    ))


# After removing a stopped run's placement group, how long a new one of the same shape is
# taken for a replacement its dying controller started (see RayScheduler._release).
REPLACEMENT_WATCH_SECONDS = 5.0


class RayScheduler:
    """The Scheduler on a Ray cluster (RAY_ADDRESS, else a local one started in-process)."""

    def __init__(self, settings: TrainingSettings) -> None:
        import ray

        from services.training_svc.trainer import S3Access

        self.namespace = settings.ray_namespace
        self._attached = attach(settings.ray_address, self.namespace, settings.ray_local_num_cpus)
        self._ray = ray
        self._actor = ray.remote(TrainingRunner)
        self.s3 = S3Access(endpoint=settings.s3_endpoint, access_key=settings.s3_access_key,
                           secret_key=settings.s3_secret_key, bucket=settings.s3_bucket, secure=settings.s3_secure,
                           region=settings.s3_region)

    def _handle(self, run_name: str):
        try:
            return self._ray.get_actor(run_name, namespace=self.namespace)
        except ValueError:
            return None

    # --- Scheduler -------------------------------------------------------------------

    async def submit(self, run: Run) -> None:
        await asyncio.to_thread(self._submit, run)

    def _submit(self, run: Run) -> None:
        if self._handle(run.run_name) is not None:
            return  # adopt: the name is the attempt, so it is this very run
        handle = self._actor.options(
            name=run.run_name, namespace=self.namespace, lifetime="detached", get_if_exists=True,
            num_cpus=0, max_concurrency=4, max_restarts=0,
            runtime_env={"env_vars": {**WORKER_ENV, **RAY_ENV}},
        ).remote(run, self.s3)
        self._ray.get(handle.ready.remote(), timeout=120)
        handle.run.remote()  # fire and forget: the actor records the outcome itself

    async def cancel(self, run_name: str) -> None:
        await asyncio.to_thread(self._cancel, run_name)

    def _cancel(self, run_name: str, wait: float = 20) -> None:
        handle = self._handle(run_name)
        if handle is None:
            return
        self._ray.kill(handle, no_restart=True)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and self._handle(run_name) is not None:
            time.sleep(0.2)

    async def status(self, run_name: str) -> RunStatus:
        return await asyncio.to_thread(self._status, run_name)

    def _status(self, run_name: str) -> RunStatus:
        from ray.exceptions import GetTimeoutError, RayActorError

        handle = self._handle(run_name)
        if handle is None:
            return RunStatus.GONE
        try:
            finished = self._ray.get(handle.finished.remote(), timeout=10)
        except RayActorError:
            return RunStatus.GONE
        except GetTimeoutError:
            return RunStatus.RUNNING  # busy starting up; it exists
        return RunStatus.FINISHED if finished else RunStatus.RUNNING

    async def release(self, placement_group_id: str) -> None:
        await asyncio.to_thread(self._release, placement_group_id)

    def _release(self, placement_group_id: str) -> None:
        """Removes a stopped run's placement group (Ray Train frees a dead run's only through
        the state API, which may be slow or absent).

        Removing it kills the run's workers. If the run's Ray Train controller is still
        alive then (it dies with the run's runner actor, but not at once), it takes that for
        a worker failure and starts a new worker group in a new placement group, which
        nothing would ever free. So for a few seconds new placement groups of the same
        shape are taken for that replacement and removed too.
        """
        from ray.util import placement_group_table

        known = placement_group_table()
        target = known.get(placement_group_id)
        self._remove_placement_group(placement_group_id)
        if target is None:
            return
        deadline = time.monotonic() + REPLACEMENT_WATCH_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.5)
            for pg_id, info in placement_group_table().items():
                if pg_id not in known and info["bundles"] == target["bundles"] and info["state"] != "REMOVED":
                    log.warning("removing placement group %s, started for the stopped run of %s",
                                pg_id, placement_group_id)
                    self._remove_placement_group(pg_id)
                    known[pg_id] = info

    @staticmethod
    def _remove_placement_group(placement_group_id: str) -> None:
        from ray._raylet import PlacementGroupID
        from ray.util.placement_group import PlacementGroup, remove_placement_group

        try:
            remove_placement_group(PlacementGroup(PlacementGroupID(bytes.fromhex(placement_group_id))))
        except Exception as exc:  # noqa: BLE001 - already removed, or never made: nothing to free
            log.info("placement group %s not removed: %s", placement_group_id, exc)

    async def measure_throughput(self, query: ThroughputQuery, timeout: float) -> float | None:
        return await asyncio.to_thread(self._measure, query, timeout)

    def _measure(self, query: ThroughputQuery, timeout: float) -> float | None:
        from ray.exceptions import GetTimeoutError

        task = self._ray.remote(num_cpus=1, max_retries=0, runtime_env={"env_vars": {**WORKER_ENV, **RAY_ENV}})(
            _measure)
        ref = task.remote(query)
        try:
            return self._ray.get(ref, timeout=timeout)
        except GetTimeoutError:
            self._ray.cancel(ref, force=True)
            return None

    async def has_gpus(self) -> bool:
        resources = await asyncio.to_thread(self._ray.cluster_resources)
        return resources.get("GPU", 0) > 0

    async def close(self) -> None:
        """Detaches from the cluster if this scheduler attached; runs go on (detached actors)."""
        if self._attached and self._ray.is_initialized():
            await asyncio.to_thread(self._ray.shutdown)
