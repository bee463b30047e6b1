"""Evaluation integration fixtures: the real dataset, training and evaluation services on
one real local Ray head, PostgreSQL and the S3 server, with the internal token set so
the services can call each other on a project's behalf (as devstack runs them)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest_asyncio

from mtw.evaluation.v1 import evaluation_pb2, evaluation_service_pb2_grpc
from mtw.evaluation.v1 import evaluation_service_pb2 as epb
from tests.integration.training.service_harness import Stack, start_stack, stop_stack

INTERNAL_TOKEN = "eval-test-" + secrets.token_hex(16)
TERMINAL = {4, 5, 7}


@dataclass
class EvalStack:
    stack: Stack
    service: object  # RunningEvaluationService
    stub: evaluation_service_pb2_grpc.EvaluationServiceStub
    channel: grpc.aio.Channel
    versions: dict[str, str] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)

    def auth(self, project: str = "alpha"):
        return self.stack.auth(project)

    async def create(self, project: str = "alpha", metadata=None, request_id: str = "", evaluation_id: str = "",
                     **fields) -> evaluation_pb2.Evaluation:
        config = fields.pop("config", None)
        evaluation = evaluation_pb2.Evaluation(**fields)
        if config is not None:
            evaluation.config.CopyFrom(config)
        return await self.stub.CreateEvaluation(
            epb.CreateEvaluationRequest(parent=f"projects/{project}", evaluation=evaluation, request_id=request_id,
                                        evaluation_id=evaluation_id),
            metadata=metadata or self.auth(project))

    async def get(self, name: str, project: str = "alpha") -> evaluation_pb2.Evaluation:
        return await self.stub.GetEvaluation(epb.GetEvaluationRequest(name=name), metadata=self.auth(project))

    async def wait(self, name: str, states=TERMINAL, timeout: float = 180) -> evaluation_pb2.Evaluation:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            evaluation = await self.get(name)
            if evaluation.state in states:
                return evaluation
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{name} stayed in state {evaluation.state}: {evaluation}")
            await asyncio.sleep(0.2)

    async def examples(self, parent: str, filter: str = "", page_size: int = 50, order_by: str = ""):
        out, token = [], ""
        while True:
            page = await self.stub.ListExampleResults(epb.ListExampleResultsRequest(
                parent=parent, filter=filter, page_size=page_size, page_token=token, order_by=order_by),
                metadata=self.auth())
            out.extend(page.example_results)
            token = page.next_page_token
            if not token:
                return out, page.total_size


@pytest_asyncio.fixture(scope="module")
async def eval_stack(service_settings, ray_cluster, tmp_path_factory) -> AsyncIterator[EvalStack]:
    from services.eval_svc import service as eval_service
    from services.eval_svc.settings import EvaluationSettings
    from services.training_svc.ray_scheduler import RayScheduler

    def with_token(cls, **values):  # every service accepts the others' calls
        return service_settings(cls, **{"internal_token": INTERNAL_TOKEN, **values})

    stack = await start_stack(with_token, RayScheduler, ray_address=ray_cluster, max_running_jobs=1,
                              internal_token=INTERNAL_TOKEN)
    settings = with_token(
        EvaluationSettings, s3_bucket=stack.settings.s3_bucket, service_name="evaluation-svc",
        dataset_service_endpoint=f"127.0.0.1:{stack.dataset.port}",
        training_service_endpoint=f"127.0.0.1:{stack.training.port}",
        ray_address=ray_cluster, scheduler_interval_seconds=0.2,
        model_cache_dir=str(tmp_path_factory.mktemp("eval-models")))
    service = await eval_service.start(settings)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{service.port}")
    s = EvalStack(stack, service, evaluation_service_pb2_grpc.EvaluationServiceStub(channel), channel)
    yield s
    # The service a test restarted, not the first one: a service left running would go
    # on polling Ray after the stack below detaches from it.
    await s.channel.close()
    await s.service.stop()
    await stop_stack(stack)


def uuid5(name: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, name))
