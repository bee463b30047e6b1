"""The registry under test, with everything real around it: the dataset service, the
training service on a local Ray head (jobs of ~16 steps: MiniLM LoRA on Brown-corpus
genres, tiny GPT-2 LoRA on prose and on chatterbot conversations), PostgreSQL, the S3 server, and the registry service
itself on a loopback port. The classification job registers itself (the training
service calls CreateModelVersion as a service); the generation and chat jobs are
registered by the tests. The evaluation service measures registered versions. Built once for the
whole package.
"""

from __future__ import annotations

import socket
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest_asyncio

from mtw.common.v1 import job_state_pb2 as js
from mtw.evaluation.v1 import evaluation_service_pb2_grpc
from mtw.registry.v1 import registry_service_pb2 as rpb
from mtw.registry.v1 import registry_service_pb2_grpc
from mtw.training.v1 import hyperparameters_pb2 as hp
from services.eval_svc import service as eval_service
from services.eval_svc.settings import EvaluationSettings
from services.registry_svc import service as registry_service
from services.registry_svc.settings import RegistrySettings
from tests.integration.training.service_harness import (
    Stack,
    brown_csv,
    chat_jsonl,
    start_stack,
    stop_stack,
    text_csv,
)

TOKEN = "internal-token-for-the-registry-tests"
CLASSIFIER_MODEL = "projects/alpha/models/genres"
TERMINAL = {js.JOB_STATE_SUCCEEDED, js.JOB_STATE_FAILED, js.JOB_STATE_CANCELLED}


def small(**overrides) -> hp.Hyperparameters:
    values = dict(max_steps=16, per_device_batch_size=8, max_seq_length=64, learning_rate=3e-3,  # noqa: C408
                  eval_interval_steps=16, checkpoint_interval_steps=16, num_workers=1, early_stopping_patience=0,
                  warmup_ratio=0.0)
    values.update(overrides)
    return hp.Hyperparameters(**values)


@dataclass
class Registry:
    stack: Stack
    running: registry_service.RunningRegistryService
    stub: registry_service_pb2_grpc.RegistryServiceStub
    channel: grpc.aio.Channel
    classifier_job: str
    generator_job: str
    chat_job: str
    evaluations: evaluation_service_pb2_grpc.EvaluationServiceStub
    evaluation_endpoint: str

    def auth(self, project: str = "alpha") -> tuple[tuple[str, str], ...]:
        return self.stack.auth(project)

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.running.port}"

    @property
    def key(self) -> str:
        return self.stack.keys["alpha"]

    async def register(self, job: str, model: str, **fields) -> object:
        return await self.stub.CreateModelVersion(
            rpb.CreateModelVersionRequest(parent=model, tuning_job=job, **fields), metadata=self.auth())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest_asyncio.fixture(scope="package")
async def registry(service_settings, ray_cluster) -> AsyncIterator[Registry]:
    from services.training_svc.ray_scheduler import RayScheduler

    port = _free_port()  # the training service must know where the registry will be
    stack = await start_stack(service_settings, RayScheduler, ray_address=ray_cluster, max_running_jobs=2,
                              internal_token=TOKEN, registry_service_endpoint=f"127.0.0.1:{port}",
                              follow_up_retry_seconds=0.5)
    cache = tempfile.TemporaryDirectory(prefix="registry-cache-")
    running = evaluations = None
    try:
        stack.versions["classification"] = await stack.upload(brown_csv(160), "brown.csv")
        stack.versions["causal_lm"] = await stack.upload(text_csv(120), "prose.csv")
        stack.versions["chat"] = await stack.upload(chat_jsonl(120), "chat.jsonl")
        classifier = await stack.create(hyperparameters=small(), display_name="genres", skip_final_evaluation=True,
                                        register_to_model=CLASSIFIER_MODEL)
        generator = await stack.create(base_model="baseModels/tiny-gpt2",
                                       dataset_version=stack.versions["causal_lm"], skip_final_evaluation=True,
                                       hyperparameters=small(max_seq_length=48), display_name="prose")
        assistant = await stack.create(base_model="baseModels/tiny-gpt2", dataset_version=stack.versions["chat"],
                                       skip_final_evaluation=True, hyperparameters=small(), display_name="assistant")
        evaluations = await eval_service.start(service_settings(
            EvaluationSettings, s3_bucket=stack.settings.s3_bucket, service_name="evaluation-svc",
            dataset_service_endpoint=f"127.0.0.1:{stack.dataset.port}",
            training_service_endpoint=f"127.0.0.1:{stack.training.port}", registry_service_endpoint=f"127.0.0.1:{port}",
            ray_address=ray_cluster, scheduler_interval_seconds=0.2, internal_token=TOKEN,
            model_cache_dir=f"{cache.name}/evaluation"))
        settings = service_settings(
            RegistrySettings, s3_bucket=stack.settings.s3_bucket, grpc_port=port, service_name="registry-svc",
            training_service_endpoint=f"127.0.0.1:{stack.training.port}",
            dataset_service_endpoint=f"127.0.0.1:{stack.dataset.port}",
            evaluation_service_endpoint=f"127.0.0.1:{evaluations.port}",
            internal_token=TOKEN, model_cache_dir=cache.name, predict_batch_wait_ms=20, max_loaded_models=2)
        running = await registry_service.start(settings)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
        evaluation_channel = grpc.aio.insecure_channel(f"127.0.0.1:{evaluations.port}")
        for job in (classifier, generator, assistant):
            done = await stack.wait_for(job.name, TERMINAL, timeout=420)
            assert done.state == js.JOB_STATE_SUCCEEDED, f"{job.name}: {done.failure}"
        yield Registry(stack, running, registry_service_pb2_grpc.RegistryServiceStub(channel), channel,
                       classifier.name, generator.name, assistant.name,
                       evaluation_service_pb2_grpc.EvaluationServiceStub(evaluation_channel),
                       f"127.0.0.1:{evaluations.port}")
        await channel.close()
        await evaluation_channel.close()
    finally:
        if running is not None:
            await running.stop()
        if evaluations is not None:
            await evaluations.stop()
        await stop_stack(stack)
        cache.cleanup()
