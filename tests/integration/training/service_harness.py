"""The training service under test: a real dataset service and a real training service on
loopback ports, over the run's PostgreSQL and S3 server, sharing one bucket. The
scheduler is chosen per test module (in-memory here, Ray in the Ray tests).

Import the fixtures into a test module: ``from .service_harness import *``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import pytest_asyncio

from mtw.dataset.v1 import dataset_pb2, dataset_service_pb2_grpc, dataset_version_pb2
from mtw.dataset.v1 import dataset_service_pb2 as dpb
from mtw.training.v1 import training_service_pb2 as pb
from mtw.training.v1 import training_service_pb2_grpc, tuning_job_pb2
from services.common.auth import KeyStore
from services.dataset_svc import service as dataset_service
from services.dataset_svc.settings import DatasetSettings
from services.training_svc import service as training_service
from services.training_svc.scheduler import InMemoryScheduler, Scheduler
from services.training_svc.settings import TrainingSettings

SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
TERMINAL = {4, 5, 7}


def brown_csv(rows: int = 200, labels: tuple[str, ...] = ("government", "fiction_romance"), max_chars: int = 300) -> bytes:
    """A few genres of the Brown corpus as text,label CSV (short texts keep jobs quick)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    taken = {label: 0 for label in labels}
    with open(SHARED_DATA / "brown_genres.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["label"] in taken and taken[row["label"]] < rows // len(labels):
                writer.writerow([row["text"][:max_chars], row["label"]])
                taken[row["label"]] += 1
    return out.getvalue().encode()


def text_csv(rows: int = 120, max_chars: int = 300) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text"])
    with open(SHARED_DATA / "brown_genres.csv", newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i >= rows:
                break
            writer.writerow([row["text"][:max_chars]])
    return out.getvalue().encode()


def chat_jsonl(rows: int = 120) -> bytes:
    lines = []
    with open(SHARED_DATA / "chatterbot_qa_en.jsonl") as f:
        for i, line in enumerate(f):
            if i >= rows:
                break
            lines.append(line.strip())
    return ("\n".join(lines) + "\n").encode()


@dataclass
class Stack:
    dataset: dataset_service.RunningDatasetService
    training: training_service.RunningTrainingService
    dataset_stub: dataset_service_pb2_grpc.DatasetServiceStub
    stub: training_service_pb2_grpc.TuningServiceStub
    channels: list[grpc.aio.Channel]
    keys: dict[str, str]
    settings: TrainingSettings
    versions: dict[str, str] = field(default_factory=dict)  # kind → version name (project alpha)

    def auth(self, project: str = "alpha") -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.keys[project]}"),)

    @property
    def app(self):
        return self.training.app

    async def upload(self, data: bytes, file_name: str, project: str = "alpha") -> str:
        dataset = await self.dataset_stub.CreateDataset(
            dpb.CreateDatasetRequest(parent=f"projects/{project}", dataset_id=f"ds-{uuid.uuid4().hex[:8]}",
                                     dataset=dataset_pb2.Dataset()), metadata=self.auth(project))

        async def messages():
            yield dpb.UploadDatasetVersionRequest(header=dpb.UploadHeader(
                parent=dataset.name, options=dataset_version_pb2.IngestOptions(file_name=file_name)))
            yield dpb.UploadDatasetVersionRequest(chunk=data)

        version = await self.dataset_stub.UploadDatasetVersion(messages(), metadata=self.auth(project))
        return version.name

    async def create(self, project: str = "alpha", **fields) -> tuning_job_pb2.TuningJob:
        job_id = fields.pop("tuning_job_id", "")
        fields.setdefault("base_model", "baseModels/all-minilm-l6-v2")
        fields.setdefault("dataset_version", self.versions.get("classification", ""))
        return await self.stub.CreateTuningJob(
            pb.CreateTuningJobRequest(parent=f"projects/{project}", tuning_job=tuning_job_pb2.TuningJob(**fields),
                                      tuning_job_id=job_id),
            metadata=self.auth(project))

    async def get(self, name: str, project: str = "alpha") -> tuning_job_pb2.TuningJob:
        return await self.stub.GetTuningJob(pb.GetTuningJobRequest(name=name), metadata=self.auth(project))

    async def wait_for(self, name: str, states: set[int], timeout: float = 30) -> tuning_job_pb2.TuningJob:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            job = await self.get(name)
            if job.state in states:
                return job
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{name} stayed in state {job.state}: {job}")
            await asyncio.sleep(0.1)

    async def watch(self, name: str, after: int = 0, limit: int | None = None, timeout: float = 60) -> list:
        events = []
        call = self.stub.WatchTuningJob(pb.WatchTuningJobRequest(name=name, after_sequence_number=after),
                                        metadata=self.auth())

        async def read():
            async for event in call:
                events.append(event)
                if limit is not None and len(events) >= limit:
                    call.cancel()
                    return

        await asyncio.wait_for(read(), timeout)
        return events

    async def restart_training(self, scheduler: Scheduler | None = None, **overrides) -> None:
        """Stops the training service (runs go on in the scheduler) and starts a new one."""
        await self.training.stop(close_scheduler=False)
        settings = self.settings.model_copy(update=overrides) if overrides else self.settings
        self.training = await training_service.start(settings, scheduler or InMemoryScheduler())
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{self.training.port}")
        self.channels.append(channel)
        self.stub = training_service_pb2_grpc.TuningServiceStub(channel)


def training_settings(service_settings, dataset_port: int, bucket: str, **overrides) -> TrainingSettings:
    values = dict(  # noqa: C408 - reads like settings
        s3_bucket=bucket, dataset_service_endpoint=f"127.0.0.1:{dataset_port}", service_name="training-svc",
        scheduler_interval_seconds=0.2, max_concurrent_jobs_per_project=2, max_running_jobs=4,
    )
    return service_settings(TrainingSettings, **{**values, **overrides})


async def start_stack(service_settings, scheduler: Scheduler | Callable[[TrainingSettings], Scheduler],
                      **overrides) -> Stack:
    """`scheduler`: an instance, or a class/factory called with the training settings."""
    bucket = f"mtw-test-{uuid.uuid4().hex[:8]}"
    # The dataset service takes the same internal token, so services can call it for a project.
    dataset = await dataset_service.start(service_settings(DatasetSettings, s3_bucket=bucket, service_name="dataset-svc",
                                                           internal_token=overrides.get("internal_token", "")))
    keys = KeyStore(dataset.pool)
    api_keys = {}
    for project in ("alpha", "beta"):
        await keys.create_project(project)
        api_keys[project] = await keys.create_api_key(project)
    settings = training_settings(service_settings, dataset.port, bucket, **overrides)
    if isinstance(scheduler, type) or not hasattr(scheduler, "submit"):
        scheduler = await asyncio.to_thread(scheduler, settings)
    training = await training_service.start(settings, scheduler)
    channels = [grpc.aio.insecure_channel(f"127.0.0.1:{dataset.port}"),
                grpc.aio.insecure_channel(f"127.0.0.1:{training.port}")]
    return Stack(dataset, training, dataset_service_pb2_grpc.DatasetServiceStub(channels[0]),
                 training_service_pb2_grpc.TuningServiceStub(channels[1]), channels, api_keys, settings)


async def stop_stack(stack: Stack) -> None:
    for channel in stack.channels:
        await channel.close()
    await stack.training.stop()
    await stack.dataset.stop()


def dumps(message) -> str:
    from google.protobuf import json_format

    return json.dumps(json_format.MessageToDict(message), indent=1)


@pytest_asyncio.fixture(scope="module")
async def stack(service_settings) -> AsyncIterator[Stack]:
    """Dataset + training services with an in-memory scheduler whose runs wait until cancelled."""
    s = await start_stack(service_settings, InMemoryScheduler())
    s.versions["classification"] = await s.upload(brown_csv(), "brown.csv")
    s.versions["causal_lm"] = await s.upload(text_csv(), "prose.csv")
    yield s
    await stop_stack(s)


__all__ = [
    "TERMINAL",
    "Stack",
    "brown_csv",
    "chat_jsonl",
    "dumps",
    "pytest",
    "stack",
    "start_stack",
    "stop_stack",
    "text_csv",
]
