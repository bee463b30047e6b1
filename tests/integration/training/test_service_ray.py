"""The full training service on a real local Ray (2 CPUs), the real dataset service,
PostgreSQL and the S3 server: jobs that really train, cancel, and a service restart in
the middle of a job. Jobs are kept to tens of steps."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
import pytest_asyncio

from mtw.common.v1 import job_failure_pb2
from mtw.common.v1 import job_state_pb2 as js
from mtw.training.v1 import hyperparameters_pb2 as hp
from mtw.training.v1 import training_service_pb2 as pb
from mtw.training.v1 import tuning_job_pb2

from .service_harness import brown_csv, chat_jsonl, start_stack, stop_stack, text_csv

pytestmark = pytest.mark.slow

R, S, C = js.JOB_STATE_RUNNING, js.JOB_STATE_SUCCEEDED, js.JOB_STATE_CANCELLED
TERMINAL = {js.JOB_STATE_SUCCEEDED, js.JOB_STATE_FAILED, js.JOB_STATE_CANCELLED}


def small(**overrides) -> hp.Hyperparameters:
    values = dict(max_steps=24, per_device_batch_size=8, max_seq_length=64, learning_rate=2e-3,  # noqa: C408
                  eval_interval_steps=12, checkpoint_interval_steps=12, num_workers=1, early_stopping_patience=0,
                  warmup_ratio=0.0)
    values.update(overrides)
    return hp.Hyperparameters(**values)


@pytest.fixture(scope="module")
def otlp_receiver():
    from tests.otlp import OtlpReceiver

    receiver = OtlpReceiver()
    receiver.address = receiver.start()
    yield receiver
    receiver.stop()


@pytest_asyncio.fixture(scope="module")
async def ray_stack(service_settings, ray_cluster, otlp_receiver):
    from services.common.telemetry import setup_telemetry
    from services.training_svc.ray_scheduler import RayScheduler

    # Instrument gRPC before servers and channels exist; the workers export to the receiver.
    setup_telemetry("tests", configure_logs=False)
    s = await start_stack(service_settings, RayScheduler, ray_address=ray_cluster, max_running_jobs=1,
                          otel_exporter_otlp_endpoint=otlp_receiver.address)
    s.versions["classification"] = await s.upload(brown_csv(240), "brown.csv")
    s.versions["causal_lm"] = await s.upload(text_csv(160), "prose.csv")
    s.versions["chat"] = await s.upload(chat_jsonl(160), "chat.jsonl")
    yield s
    await stop_stack(s)


async def _finish(stack, name: str, timeout: float = 240):
    job = await stack.wait_for(name, TERMINAL, timeout=timeout)
    assert job.state == S, f"{name} ended {job.state}: {job.failure}"
    return job


async def _losses(stack, name: str) -> list[float]:
    page = await stack.stub.ListTuningJobEvents(pb.ListTuningJobEventsRequest(parent=name, filter="event:step_metrics"),
                                                metadata=stack.auth())
    return [e.step_metrics.loss for e in page.events]


async def test_classification_lora_lowers_the_loss(ray_stack, otlp_receiver):
    from opentelemetry import trace

    stack = ray_stack
    started = time.monotonic()
    with trace.get_tracer("tests").start_as_current_span("user starts a job") as root:
        job = await stack.create(hyperparameters=small(max_steps=30), display_name="genres")
    trace_id = format(root.get_span_context().trace_id, "032x")
    events = await stack.watch(job.name, timeout=300)
    done = await _finish(stack, job.name)
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "state_change" and events[-1].state_change.state == S
    assert "checkpoint_saved" in kinds and "eval_metrics" in kinds
    losses = await _losses(stack, job.name)
    assert len(losses) >= 2 and min(losses[-3:]) < losses[0], losses
    assert done.output.uri.startswith("s3://") and done.output.is_adapter_only
    keys = [o.key for o in await stack.training.objects.list(done.output.uri.split("/", 3)[3])]
    assert any(k.endswith("adapter_model.safetensors") for k in keys), keys
    assert done.latest_checkpoint.uri and done.restart_count == 0
    print(f"classification job: {time.monotonic() - started:.1f}s, losses {losses[0]:.3f} → {losses[-1]:.3f}")
    # The request's trace reaches the Ray worker: its span joins the same trace.
    worker = [s for s in otlp_receiver.spans if s.name == "training.worker" and s.trace_id == trace_id]
    assert worker, f"no worker span in trace {trace_id}: {[(s.name, s.trace_id) for s in otlp_receiver.spans]}"
    assert worker[0].service == "training-worker" and worker[0].attributes["mtw.job"] == job.name


@pytest.mark.parametrize("kind", ["causal_lm", "chat"])
async def test_generation_jobs_on_tiny_gpt2(ray_stack, kind):
    stack = ray_stack
    job = await stack.create(base_model="baseModels/tiny-gpt2", dataset_version=stack.versions[kind],
                             hyperparameters=small(max_steps=16, eval_interval_steps=8, checkpoint_interval_steps=8))
    assert job.task == (2 if kind == "causal_lm" else 3)
    await _finish(stack, job.name)
    losses = await _losses(stack, job.name)
    assert losses and min(losses[-2:]) < losses[0], losses


async def _wait_running(stack, name: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = await stack.get(name)
        if job.state in TERMINAL:
            raise AssertionError(f"{name} ended early: {job}")
        if job.state == R and job.progress.step > 0:
            return job
        await asyncio.sleep(0.2)
    raise AssertionError(f"{name} did not start training")


async def test_cancel_stops_the_run_and_frees_the_workers(ray_stack):
    import ray

    stack = ray_stack
    job = await stack.create(hyperparameters=small(max_steps=2000, checkpoint_interval_steps=1000))
    await _wait_running(stack, job.name)
    spec = await stack.app.store.get_spec("alpha", job.name.rsplit("/", 1)[1])
    asked = time.monotonic()
    await stack.stub.CancelTuningJob(pb.CancelTuningJobRequest(name=job.name), metadata=stack.auth())
    done = await stack.wait_for(job.name, TERMINAL, timeout=60)
    took = time.monotonic() - asked
    assert done.state == C and done.failure.category == job_failure_pb2.FAILURE_CATEGORY_CANCELLED_BY_USER
    with pytest.raises(ValueError):
        ray.get_actor(spec.run_name, namespace="mtw")
    # The workers die with the runner; Ray Train's cleaner then releases their placement group.
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < 2:
        assert time.monotonic() < deadline, f"CPUs still held after cancel: {ray.available_resources()}"
        await asyncio.sleep(0.5)
    print(f"cancel: CANCELLED {took:.1f}s after the request, CPUs free {time.monotonic() - asked:.1f}s after it")


async def test_service_restart_mid_job_adopts_the_run(ray_stack):
    from services.training_svc.ray_scheduler import RayScheduler

    stack = ray_stack
    job = await stack.create(hyperparameters=small(max_steps=40))
    await _wait_running(stack, job.name)
    scheduler = stack.app.scheduler
    await stack.restart_training(scheduler)
    assert stack.training.reconciled[job.name] == "adopted"
    done = await _finish(stack, job.name)
    assert done.restart_count == 0
    events = await stack.watch(job.name)
    starts = [e for e in events if e.HasField("state_change") and e.state_change.state == js.JOB_STATE_PREPARING]
    assert len(starts) == 1, "the job ran once"
    assert isinstance(stack.app.scheduler, RayScheduler)


async def test_lost_run_continues_from_its_checkpoint(ray_stack):
    """The service is down when the run dies: the next start resumes it from its checkpoint."""
    import ray

    stack = ray_stack
    job = await stack.create(hyperparameters=small(max_steps=60, checkpoint_interval_steps=6, eval_interval_steps=6))
    job_id = job.name.rsplit("/", 1)[1]
    deadline = time.monotonic() + 180
    while (await stack.get(job.name)).latest_checkpoint.step == 0:
        assert time.monotonic() < deadline, "no checkpoint"
        await asyncio.sleep(0.2)
    scheduler = stack.app.scheduler
    spec = await stack.app.store.get_spec("alpha", job_id)
    await stack.training.stop(close_scheduler=False)
    ray.kill(ray.get_actor(spec.run_name, namespace="mtw"), no_restart=True)
    await asyncio.sleep(1)
    await stack.restart_training(scheduler)
    assert stack.training.reconciled[job.name] == "resumed"
    done = await _finish(stack, job.name)
    assert done.restart_count == 1
    with pytest.raises(grpc.aio.AioRpcError):
        await stack.stub.DeleteTuningJob(pb.DeleteTuningJobRequest(name=job.name, etag="stale"), metadata=stack.auth())


async def test_fine_tune_again_resume_a_cancelled_job_then_continue_from_its_weights(ray_stack):
    stack = ray_stack
    first = await stack.create(hyperparameters=small(max_steps=30, checkpoint_interval_steps=6, eval_interval_steps=6))
    deadline = time.monotonic() + 180
    while (await stack.get(first.name)).latest_checkpoint.step == 0:
        assert time.monotonic() < deadline, "no checkpoint"
        await asyncio.sleep(0.2)
    await stack.stub.CancelTuningJob(pb.CancelTuningJobRequest(name=first.name), metadata=stack.auth())
    cancelled = await stack.wait_for(first.name, TERMINAL, timeout=60)
    assert cancelled.state == C

    # Resume exactly: same spec, from the last checkpoint, optimizer state included.
    resumed = await stack.stub.ResumeTuningJob(pb.ResumeTuningJobRequest(name=first.name), metadata=stack.auth())
    at = resumed.lineage.resumed_from_step
    assert resumed.lineage.resumed_from == first.name and at >= cancelled.latest_checkpoint.step > 0
    await _finish(stack, resumed.name)
    steps = [e.step_metrics.step for e in (await stack.stub.ListTuningJobEvents(
        pb.ListTuningJobEventsRequest(parent=resumed.name, filter="event:step_metrics"), metadata=stack.auth())).events]
    assert steps and min(steps) > at and max(steps) == 30, (at, steps)

    # Continue from the trained weights with a fresh schedule: it starts where training left off.
    more = await stack.create(hyperparameters=small(max_steps=6, eval_interval_steps=6, checkpoint_interval_steps=6),
                              lineage=tuning_job_pb2.TuningJobLineage(continued_from_tuning_job=resumed.name))
    await _finish(stack, more.name)
    start_losses, continued_losses = await _losses(stack, first.name), await _losses(stack, more.name)
    assert continued_losses[0] < start_losses[0], (start_losses, continued_losses)


async def test_estimate_measures_throughput_on_the_cluster_once_and_keeps_it(ray_stack):
    stack = ray_stack
    request = pb.EstimateTuningJobRequest(parent="projects/alpha", tuning_job=tuning_job_pb2.TuningJob(
        base_model="baseModels/all-minilm-l6-v2", dataset_version=stack.versions["classification"],
        hyperparameters=small(max_steps=40)))
    deadline = time.monotonic() + 240
    estimate = await stack.stub.EstimateTuningJob(request, metadata=stack.auth())
    while not estimate.HasField("estimated_duration"):  # measured in the background meanwhile
        assert any("being measured" in w for w in estimate.warnings), estimate.warnings
        assert time.monotonic() < deadline, "no calibration"
        await asyncio.sleep(3)
        estimate = await stack.stub.EstimateTuningJob(request, metadata=stack.auth())
    assert estimate.estimated_duration.seconds > 0 and estimate.total_steps == 40
    keys = await stack.app.store.pool.fetchval("SELECT count(*) FROM throughput_calibrations")
    assert keys >= 1


async def test_a_replacement_placement_group_of_a_stopped_run_is_removed_too(ray_stack):
    """A stopped run's controller may still live when its placement group is removed: it
    then starts a new worker group in a new placement group of the same shape, which the
    scheduler removes as well (otherwise it would hold the CPUs for good)."""
    import ray
    from ray.util import placement_group, placement_group_table

    scheduler = ray_stack.app.scheduler
    stopped = placement_group([{"CPU": 1}])
    await asyncio.to_thread(ray.get, stopped.ready(), timeout=30)
    release = asyncio.create_task(scheduler.release(stopped.id.hex()))
    await asyncio.sleep(1)  # what a dying controller does after losing its workers
    replacement = placement_group([{"CPU": 1}])
    await release
    states = await asyncio.to_thread(placement_group_table)
    assert states[stopped.id.hex()]["state"] == "REMOVED"
    assert states[replacement.id.hex()]["state"] == "REMOVED"
