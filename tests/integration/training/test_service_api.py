"""The training service's API over gRPC with an in-memory scheduler: catalog, estimate,
validation with field-level messages, the licence gate, tenancy, queueing, cancel,
resume, delete and the event stream (watch, reconnect, list)."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import pytest
from google.rpc import error_details_pb2

from mtw.common.v1 import job_failure_pb2
from mtw.common.v1 import job_state_pb2 as js
from mtw.training.v1 import hyperparameters_pb2 as hp
from mtw.training.v1 import training_service_pb2 as pb
from mtw.training.v1 import tuning_job_pb2
from services.common.interceptors import error_details
from services.common.jobs import JobState

from .service_harness import *

Q, P, R, S, F, CG, C = (js.JOB_STATE_QUEUED, js.JOB_STATE_PREPARING, js.JOB_STATE_RUNNING, js.JOB_STATE_SUCCEEDED,
                        js.JOB_STATE_FAILED, js.JOB_STATE_CANCELLING, js.JOB_STATE_CANCELLED)


def _violations(err: grpc.aio.AioRpcError) -> dict[str, str]:
    details = error_details(err)
    bad = next((d for d in details if isinstance(d, error_details_pb2.BadRequest)), None)
    assert bad is not None, f"no BadRequest in {details}"
    return {v.field: v.description for v in bad.field_violations}


async def test_catalog(stack):
    models = await stack.stub.ListBaseModels(pb.ListBaseModelsRequest(), metadata=stack.auth())
    names = [m.name for m in models.base_models]
    assert {"baseModels/all-minilm-l6-v2", "baseModels/tiny-gpt2", "baseModels/tiny-gpt2-restricted"} <= set(names)
    chat = await stack.stub.ListBaseModels(pb.ListBaseModelsRequest(filter="supported_tasks:TASK_CHAT_SFT"),
                                           metadata=stack.auth())
    assert "baseModels/all-minilm-l6-v2" not in [m.name for m in chat.base_models]
    minilm = await stack.stub.GetBaseModel(pb.GetBaseModelRequest(name="baseModels/all-minilm-l6-v2"),
                                           metadata=stack.auth())
    assert minilm.parameter_count > 1_000_000 and minilm.context_length >= 128
    assert list(minilm.default_lora_target_modules)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.GetBaseModel(pb.GetBaseModelRequest(name="baseModels/nope"), metadata=stack.auth())
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_estimate(stack):
    response = await stack.stub.EstimateTuningJob(pb.EstimateTuningJobRequest(
        parent="projects/alpha", tuning_job=tuning_job_pb2.TuningJob(
            base_model="baseModels/all-minilm-l6-v2", dataset_version=stack.versions["classification"],
            preset=hp.PRESET_QUICK)), metadata=stack.auth())
    assert response.train_examples > 100
    assert response.total_steps > 0 and response.peak_memory_bytes > 0
    assert response.resolved_hyperparameters.HasField("learning_rate")
    assert response.method == hp.TUNING_METHOD_LORA
    assert not response.licence_acknowledgement_required


async def test_bad_parameters_are_named_field_by_field(stack):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.create(base_model="baseModels/no-such-model", hyperparameters=hp.Hyperparameters(
            learning_rate=5.0, epochs=0))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    fields = _violations(err.value)
    assert "tuning_job.base_model" in fields and "no-such-model" in fields["tuning_job.base_model"]
    assert "tuning_job.hyperparameters.learning_rate" in fields
    assert "tuning_job.hyperparameters.epochs" in fields

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.create(dataset_version="")
    assert "tuning_job.dataset_version" in _violations(err.value)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.create(hyperparameters=hp.Hyperparameters(max_seq_length=100_000))
    assert "tuning_job.hyperparameters.max_seq_length" in _violations(err.value)

    # A model that can't do the data's task.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.create(dataset_version=stack.versions["causal_lm"])
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "CAUSAL_LM" in err.value.details()


async def test_licence_gate(stack):
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.create(base_model="baseModels/tiny-gpt2-restricted", dataset_version=stack.versions["causal_lm"])
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "licence_acknowledged" in err.value.details()
    info = next(d for d in error_details(err.value) if isinstance(d, error_details_pb2.ErrorInfo))
    assert info.reason == "LICENCE_NOT_ACKNOWLEDGED"
    job = await stack.create(base_model="baseModels/tiny-gpt2-restricted", dataset_version=stack.versions["causal_lm"],
                             licence_acknowledged=True)
    assert job.state == Q and job.task == 2
    await stack.stub.CancelTuningJob(pb.CancelTuningJobRequest(name=job.name), metadata=stack.auth())


async def test_create_get_list_cancel_delete(stack):
    job = await stack.create(tuning_job_id=f"job-{uuid.uuid4().hex[:6]}", display_name="genres",
                             labels={"team": "a"}, preset=hp.PRESET_QUICK)
    assert job.state == Q and job.resolved_hyperparameters.HasField("epochs")
    assert job.creator.startswith("projects/alpha/apiKeys/")
    running = await stack.wait_for(job.name, {P})
    assert running.start_time.seconds > 0
    listed = await stack.stub.ListTuningJobs(pb.ListTuningJobsRequest(
        parent="projects/alpha", filter='state=JOB_STATE_PREPARING AND labels.team="a"'), metadata=stack.auth())
    assert job.name in [j.name for j in listed.tuning_jobs]

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.DeleteTuningJob(pb.DeleteTuningJobRequest(name=job.name), metadata=stack.auth())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION

    cancelling = await stack.stub.CancelTuningJob(pb.CancelTuningJobRequest(name=job.name), metadata=stack.auth())
    assert cancelling.state in (CG, C)
    done = await stack.wait_for(job.name, {C})
    assert done.failure.category == job_failure_pb2.FAILURE_CATEGORY_CANCELLED_BY_USER
    assert done.end_time.seconds > 0
    assert any(r.endswith(job.name.rsplit("/", 1)[1] + "-" + r.rsplit("-", 1)[1])
               for r in stack.app.scheduler.cancelled) or stack.app.scheduler.cancelled

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.CancelTuningJob(pb.CancelTuningJobRequest(name=job.name), metadata=stack.auth())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "CANCELLED" in err.value.details()

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.ResumeTuningJob(pb.ResumeTuningJobRequest(name=job.name), metadata=stack.auth())
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # no checkpoint

    await stack.stub.DeleteTuningJob(pb.DeleteTuningJobRequest(name=job.name), metadata=stack.auth())
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.get(job.name)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_another_projects_job_is_not_found(stack):
    job = await stack.create(preset=hp.PRESET_QUICK)
    beta, stub = stack.auth("beta"), stack.stub
    calls = {
        "GetTuningJob": stub.GetTuningJob(pb.GetTuningJobRequest(name=job.name), metadata=beta),
        "ListTuningJobs": stub.ListTuningJobs(pb.ListTuningJobsRequest(parent="projects/alpha"), metadata=beta),
        "CancelTuningJob": stub.CancelTuningJob(pb.CancelTuningJobRequest(name=job.name), metadata=beta),
        "ResumeTuningJob": stub.ResumeTuningJob(pb.ResumeTuningJobRequest(name=job.name), metadata=beta),
        "DeleteTuningJob": stub.DeleteTuningJob(pb.DeleteTuningJobRequest(name=job.name), metadata=beta),
        "ListTuningJobEvents": stub.ListTuningJobEvents(pb.ListTuningJobEventsRequest(parent=job.name),
                                                        metadata=beta),
        "CreateTuningJob": stub.CreateTuningJob(pb.CreateTuningJobRequest(
            parent="projects/alpha", tuning_job=tuning_job_pb2.TuningJob(
                base_model="baseModels/all-minilm-l6-v2", dataset_version=stack.versions["classification"])),
            metadata=beta),
        "EstimateTuningJob": stub.EstimateTuningJob(pb.EstimateTuningJobRequest(
            parent="projects/alpha", tuning_job=tuning_job_pb2.TuningJob(
                base_model="baseModels/all-minilm-l6-v2", dataset_version=stack.versions["classification"])),
            metadata=beta),
    }
    for rpc, call in calls.items():
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        assert err.value.code() == grpc.StatusCode.NOT_FOUND, rpc
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.WatchTuningJob(pb.WatchTuningJobRequest(name=job.name), metadata=beta).read()
    assert err.value.code() == grpc.StatusCode.NOT_FOUND

    # Beta's own job may not train on alpha's data either.
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.create(project="beta")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    still = await stack.get(job.name)
    assert still.state in (Q, P)
    await stub.CancelTuningJob(pb.CancelTuningJobRequest(name=job.name), metadata=stack.auth())


async def _scripted(stack, script) -> tuple[str, object]:
    """Runs one job whose 'training' is `script(run, sink)`; returns its name."""
    from services.training_svc.events import PgEventSink

    async def run(r):
        sink = PgEventSink(r.database_url, r.project, r.job_id)
        try:
            await script(r, sink)
        finally:
            sink.close()

    previous, stack.app.scheduler.script = stack.app.scheduler.script, run
    try:
        job = await stack.create(preset=hp.PRESET_QUICK)
        await stack.wait_for(job.name, {P, R, S, F})
    finally:
        stack.app.scheduler.script = previous
    return job.name


async def test_watch_from_the_start_and_after_a_reconnect(stack):
    gate = asyncio.Event()

    async def script(run, sink):
        emit = lambda kind, payload: asyncio.to_thread(sink.emit, kind, payload)
        await emit("state", {"state": "RUNNING", "message": "2 workers started"})
        for step in range(1, 11):
            await emit("step", {"step": step, "epoch": step / 10, "loss": 2.0 / step, "learning_rate": 1e-4,
                                "samples_per_second": 50.0, "eta_seconds": 10 - step, "total_steps": 10})
            if step == 5:
                await emit("eval", {"step": 5, "epoch": 0.5, "eval_loss": 0.9, "metrics": {"accuracy": 0.7}})
                await emit("checkpoint", {"step": 5, "epoch": 0.5, "uri": "s3://b/ckpt-5", "eval_loss": 0.9})
                await gate.wait()
        await emit("log", {"level": "INFO", "message": "saving the model"})
        from services.training_svc.domain.model import Output
        await asyncio.to_thread(sink.succeed, Output(uri="s3://b/out", is_adapter_only=True, step=10))

    name = await _scripted(stack, script)
    # A watcher that drops after a few events and reconnects from the last one it saw.
    first = await stack.watch(name, limit=4)
    assert [e.sequence_number for e in first] == [1, 2, 3, 4]
    gate.set()
    rest = await stack.watch(name, after=first[-1].sequence_number)
    events = first + rest
    numbers = [e.sequence_number for e in events]
    assert numbers == list(range(1, len(numbers) + 1)), "no gaps, no repeats"
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds.count("step_metrics") == 10 and "eval_metrics" in kinds and "checkpoint_saved" in kinds
    states = [e.state_change.state for e in events if e.HasField("state_change")]
    assert states == [Q, P, R, S]
    assert events[-1].state_change.state == S

    job = await stack.get(name)
    assert job.state == S and job.output.uri == "s3://b/out"
    assert job.progress.step == 10 and job.latest_metrics.train_loss == pytest.approx(0.2)
    assert job.latest_checkpoint.step == 5 and job.latest_metrics.best_eval_loss == pytest.approx(0.9)
    assert job.latest_metrics.eval_metrics["accuracy"] == pytest.approx(0.7)

    # Stored history pages the same events; a filter picks the loss curve.
    page = await stack.stub.ListTuningJobEvents(pb.ListTuningJobEventsRequest(parent=name, page_size=5),
                                                metadata=stack.auth())
    assert [e.sequence_number for e in page.events] == [1, 2, 3, 4, 5] and page.next_page_token
    page2 = await stack.stub.ListTuningJobEvents(pb.ListTuningJobEventsRequest(
        parent=name, page_size=5, page_token=page.next_page_token), metadata=stack.auth())
    assert page2.events[0].sequence_number == 6
    steps = await stack.stub.ListTuningJobEvents(pb.ListTuningJobEventsRequest(
        parent=name, filter="event:step_metrics"), metadata=stack.auth())
    assert [e.step_metrics.step for e in steps.events] == list(range(1, 11))

    # A watch of a finished job replays and ends.
    assert len(await stack.watch(name)) == len(events)


async def test_watch_is_live(stack):
    """An event written while a watcher waits reaches it well under a second later."""
    release = asyncio.Event()

    async def script(run, sink):
        await release.wait()
        await asyncio.to_thread(sink.emit, "step", {"step": 1, "loss": 1.0, "total_steps": 1})

    name = await _scripted(stack, script)
    seen = []
    loop = asyncio.get_running_loop()

    async def follow():
        call = stack.stub.WatchTuningJob(pb.WatchTuningJobRequest(name=name, after_sequence_number=2),
                                         metadata=stack.auth())
        async for event in call:
            seen.append((loop.time(), event))
            if event.HasField("step_metrics"):
                call.cancel()
                return

    watcher = asyncio.create_task(follow())
    await asyncio.sleep(0.5)
    sent = loop.time()
    release.set()
    await asyncio.wait_for(watcher, 10)
    at, event = seen[-1]
    assert event.HasField("step_metrics")
    assert at - sent < 1.0
    await stack.stub.CancelTuningJob(pb.CancelTuningJobRequest(name=name), metadata=stack.auth())


async def test_resume_and_reconcile(stack):
    async def script(run, sink):
        await asyncio.to_thread(sink.emit, "step", {"step": 3, "loss": 1.0, "total_steps": 10})
        await asyncio.to_thread(sink.emit, "checkpoint", {"step": 3, "epoch": 0.3, "uri": "s3://b/ckpt-3"})
        await asyncio.Event().wait()

    with_checkpoint = await _scripted(stack, script)
    await stack.wait_for(with_checkpoint, {R})
    for _ in range(50):
        if (await stack.get(with_checkpoint)).latest_checkpoint.step == 3:
            break
        await asyncio.sleep(0.1)
    without = (await stack.create(preset=hp.PRESET_QUICK)).name
    await stack.wait_for(without, {P})

    # The service restarts and the cluster has lost both runs.
    await stack.restart_training()
    assert stack.training.reconciled[with_checkpoint] == "resumed"
    assert stack.training.reconciled[without] == "failed"
    resumed = await stack.get(with_checkpoint)
    assert resumed.restart_count == 1 and resumed.state == R
    run = stack.app.scheduler.submitted[-1]
    assert run.spec.resume_from_checkpoint == "s3://b/ckpt-3" and run.job_id == with_checkpoint.rsplit("/", 1)[1]
    failed = await stack.get(without)
    assert failed.state == F and failed.failure.category == job_failure_pb2.FAILURE_CATEGORY_INFRASTRUCTURE
    assert "checkpoint" in failed.failure.error.message

    # A restart that finds the run alive adopts it and starts nothing.
    scheduler = stack.app.scheduler
    before = len(scheduler.submitted)
    await stack.restart_training(scheduler)
    assert stack.training.reconciled[with_checkpoint] == "adopted"
    assert len(scheduler.submitted) == before

    # Cancel, then resume: a new job continuing from the checkpoint, pointing back.
    await stack.stub.CancelTuningJob(pb.CancelTuningJobRequest(name=with_checkpoint), metadata=stack.auth())
    await stack.wait_for(with_checkpoint, {C})
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.ResumeTuningJob(pb.ResumeTuningJobRequest(
            name=with_checkpoint, hyperparameter_overrides=hp.Hyperparameters(learning_rate=0.1)),
            metadata=stack.auth())
    assert "hyperparameter_overrides.learning_rate" in _violations(err.value)
    again = await stack.stub.ResumeTuningJob(pb.ResumeTuningJobRequest(
        name=with_checkpoint, hyperparameter_overrides=hp.Hyperparameters(per_device_batch_size=4)),
        metadata=stack.auth())
    assert again.lineage.resumed_from == with_checkpoint and again.lineage.resumed_from_step == 3
    assert again.resolved_hyperparameters.per_device_batch_size == 4
    await stack.wait_for(again.name, {P})
    assert stack.app.scheduler.submitted[-1].spec.resume_from_checkpoint == "s3://b/ckpt-3"
    await stack.stub.CancelTuningJob(pb.CancelTuningJobRequest(name=again.name), metadata=stack.auth())


async def test_per_project_limit_queues_fairly(stack):
    await stack.restart_training(max_concurrent_jobs_per_project=1)
    beta_version = await stack.upload(brown_csv(60), "b.csv", project="beta")
    a1 = await stack.create(preset=hp.PRESET_QUICK)
    a2 = await stack.create(preset=hp.PRESET_QUICK)
    b1 = await stack.create(project="beta", dataset_version=beta_version, preset=hp.PRESET_QUICK)
    await stack.wait_for(a1.name, {P})
    b1_now = await stack.stub.GetTuningJob(pb.GetTuningJobRequest(name=b1.name), metadata=stack.auth("beta"))
    for _ in range(50):
        if b1_now.state == P:
            break
        await asyncio.sleep(0.1)
        b1_now = await stack.stub.GetTuningJob(pb.GetTuningJobRequest(name=b1.name), metadata=stack.auth("beta"))
    assert b1_now.state == P, "beta does not wait behind alpha's queue"
    await asyncio.sleep(0.5)
    assert (await stack.get(a2.name)).state == Q, "alpha's second job waits for its first"
    await stack.stub.CancelTuningJob(pb.CancelTuningJobRequest(name=a1.name), metadata=stack.auth())
    await stack.wait_for(a2.name, {P})
    for name, project in ((a2.name, "alpha"), (b1.name, "beta")):
        await stack.stub.CancelTuningJob(pb.CancelTuningJobRequest(name=name), metadata=stack.auth(project))


async def test_state_transitions_are_checked_in_the_store(stack):
    """A late 'RUNNING' from a worker can't pull a CANCELLING job back."""
    job = await stack.create(preset=hp.PRESET_QUICK)
    await stack.wait_for(job.name, {P})
    project, job_id = "alpha", job.name.rsplit("/", 1)[1]
    store = stack.app.store
    await store.record(project, job_id, "state", {"state": JobState.CANCELLING, "message": "x"})
    assert await store.record(project, job_id, "state", {"state": "RUNNING"}) == []
    assert (await stack.get(job.name)).state == CG
    await stack.wait_for(job.name, {C})  # the reconciler finishes the cancel
