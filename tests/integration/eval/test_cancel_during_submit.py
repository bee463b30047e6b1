"""A cancel that reaches an evaluation while its run is still being submitted: the
cluster stops the run, the submit fails because of it, and the evaluation ends
CANCELLED, not FAILED ("the cluster did not accept the run"). On a database of its
own: the evaluation service here would otherwise take over the other modules' queued
evaluations."""

from __future__ import annotations

import asyncio
import secrets

import grpc

from mtw.common.v1 import job_failure_pb2
from mtw.common.v1 import job_state_pb2 as js
from mtw.evaluation.v1 import evaluation_pb2, evaluation_service_pb2_grpc
from mtw.evaluation.v1 import evaluation_service_pb2 as epb
from services.eval_svc import service as eval_service
from services.eval_svc.scheduler import RunStatus
from services.eval_svc.settings import EvaluationSettings
from services.training_svc.scheduler import InMemoryScheduler
from tests.conftest import fresh_database
from tests.integration.slow_start import SlowToStart
from tests.integration.training.service_harness import brown_csv, start_stack, stop_stack
from tests.integration.waiting import wait_for

TERMINAL = {js.JOB_STATE_SUCCEEDED, js.JOB_STATE_FAILED, js.JOB_STATE_CANCELLED}


async def test_a_cancel_during_submit_ends_the_evaluation_cancelled(service_settings, tmp_path):
    cluster = SlowToStart(RunStatus.GONE)
    token = secrets.token_hex(16)
    async with fresh_database() as database_url:
        def settings(cls, **values):  # its own database; every service accepts the others' calls
            return service_settings(cls, **{"database_url": database_url, "internal_token": token, **values})

        stack = await start_stack(settings, InMemoryScheduler(), internal_token=token)
        service = channel = None
        try:
            version = await stack.upload(brown_csv(), "brown.csv")
            service = await eval_service.start(settings(
                EvaluationSettings, s3_bucket=stack.settings.s3_bucket, service_name="evaluation-svc",
                dataset_service_endpoint=f"127.0.0.1:{stack.dataset.port}",
                training_service_endpoint=f"127.0.0.1:{stack.training.port}",
                scheduler_interval_seconds=0.2, model_cache_dir=str(tmp_path)), cluster)
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
            stub = evaluation_service_pb2_grpc.EvaluationServiceStub(channel)
            created = await stub.CreateEvaluation(epb.CreateEvaluationRequest(
                parent="projects/alpha", evaluation=evaluation_pb2.Evaluation(
                    base_model="baseModels/all-minilm-l6-v2", dataset_version=version, split="validation")),
                metadata=stack.auth())
            await asyncio.wait_for(cluster.submitting.wait(), timeout=30)
            await stub.CancelEvaluation(epb.CancelEvaluationRequest(name=created.name), metadata=stack.auth())
            async def ended():
                found = await stub.GetEvaluation(epb.GetEvaluationRequest(name=created.name), metadata=stack.auth())
                return found if found.state in TERMINAL else None

            done = await wait_for(ended, timeout=30)
            assert done.state == js.JOB_STATE_CANCELLED, done.failure
            assert done.failure.category == job_failure_pb2.FAILURE_CATEGORY_CANCELLED_BY_USER
            assert cluster.cancelled == [cluster.submitted[0].run_name]
        finally:
            if channel is not None:
                await channel.close()
            if service is not None:
                await service.stop()
            await stop_stack(stack)
