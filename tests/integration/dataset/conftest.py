"""A real dataset service on a loopback port, over the test run's PostgreSQL database
and S3 endpoint, with API keys for two projects."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest_asyncio

from mtw.dataset.v1 import dataset_pb2, dataset_service_pb2_grpc, dataset_version_pb2
from mtw.dataset.v1 import dataset_service_pb2 as pb
from services.common.auth import KeyStore
from services.dataset_svc import service
from services.dataset_svc.settings import DatasetSettings

QUOTA = 64 * 2**20
MAX_UPLOAD = 32 * 2**20


@dataclass
class DatasetServiceUnderTest:
    running: service.RunningDatasetService
    channel: grpc.aio.Channel
    stub: dataset_service_pb2_grpc.DatasetServiceStub
    keys: dict[str, str]  # project -> API key

    def auth(self, project: str = "alpha") -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.keys[project]}"),)

    async def create_dataset(self, project: str = "alpha", dataset_id: str | None = None) -> dataset_pb2.Dataset:
        return await self.stub.CreateDataset(
            pb.CreateDatasetRequest(
                parent=f"projects/{project}", dataset_id=dataset_id or f"ds-{uuid.uuid4().hex[:8]}",
                dataset=dataset_pb2.Dataset(display_name="test data"),
            ),
            metadata=self.auth(project),
        )

    async def upload(
        self, parent: str, data: bytes, *, project: str = "alpha", file_name: str = "data.csv",
        options: dataset_version_pb2.IngestOptions | None = None, chunk_size: int = 256 * 1024,
        declared_size: int = 0,
    ) -> dataset_version_pb2.DatasetVersion:
        opts = dataset_version_pb2.IngestOptions()
        if options is not None:
            opts.CopyFrom(options)
        if file_name and not opts.file_name:
            opts.file_name = file_name
        return await self.stub.UploadDatasetVersion(
            upload_messages(parent, data, opts, chunk_size, declared_size), metadata=self.auth(project)
        )

    async def stored_keys(self, prefix: str = "datasets/") -> Sequence[str]:
        return [o.key for o in await self.running.objects.list(prefix)]

    async def version_rows(self) -> int:
        return await self.running.pool.fetchval("SELECT count(*) FROM dataset.dataset_versions")


async def upload_messages(
    parent: str, data: bytes, options: dataset_version_pb2.IngestOptions, chunk_size: int,
    declared_size: int = 0,
) -> AsyncIterator[pb.UploadDatasetVersionRequest]:
    yield pb.UploadDatasetVersionRequest(
        header=pb.UploadHeader(parent=parent, options=options, size_bytes=declared_size)
    )
    for start in range(0, len(data), chunk_size):
        yield pb.UploadDatasetVersionRequest(chunk=data[start : start + chunk_size])


def dataset_settings(service_settings, **overrides) -> DatasetSettings:
    """Settings on the run's database and S3 endpoint, in a bucket of its own."""
    values = {
        "s3_bucket": f"mtw-test-{uuid.uuid4().hex[:8]}",
        "dataset_project_quota_bytes": QUOTA,
        "dataset_max_upload_bytes": MAX_UPLOAD,
        "service_name": "dataset-svc",
    }
    return service_settings(DatasetSettings, **{**values, **overrides})


@pytest_asyncio.fixture(scope="session")
async def dataset_svc(service_settings) -> AsyncIterator[DatasetServiceUnderTest]:
    running = await service.start(dataset_settings(service_settings))
    keys = KeyStore(running.pool)
    api_keys = {}
    for project in ("alpha", "beta"):
        await keys.create_project(project)
        api_keys[project] = await keys.create_api_key(project)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{running.port}")
    yield DatasetServiceUnderTest(running, channel, dataset_service_pb2_grpc.DatasetServiceStub(channel), api_keys)
    await channel.close()
    await running.stop()


SHARED_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
