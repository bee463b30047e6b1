"""The success report's recorded funnel: asked of a real dataset service over gRPC with
the internal token, never read from its tables; services not configured are reported."""

from __future__ import annotations

import uuid

import grpc

from mtw.dataset.v1 import dataset_pb2, dataset_service_pb2_grpc, dataset_version_pb2
from mtw.dataset.v1 import dataset_service_pb2 as dpb
from mtw.insights.v1 import funnel_pb2, insights_service_pb2_grpc
from mtw.insights.v1 import insights_service_pb2 as pb
from services.common.auth import KeyStore
from services.dataset_svc import service as dataset_service
from services.dataset_svc.settings import DatasetSettings
from services.insights_svc import service
from tests.integration.dataset.conftest import upload_messages
from tests.integration.insights.conftest import insights_settings

INTERNAL = "internal-" + uuid.uuid4().hex
CSV = b"text,label\n" + b"".join(b"row %d,%s\n" % (i, b"pos" if i % 2 else b"neg") for i in range(20))


async def test_recorded_funnel_asks_the_dataset_service(service_settings):
    dataset = await dataset_service.start(service_settings(
        DatasetSettings, s3_bucket=f"mtw-test-{uuid.uuid4().hex[:8]}", service_name="dataset-svc",
        internal_token=INTERNAL))
    insights = await service.start(insights_settings(
        service_settings, internal_token=INTERNAL, dataset_service_endpoint=f"127.0.0.1:{dataset.port}",
        training_service_endpoint="", registry_service_endpoint=""))
    keys = KeyStore(insights.pool)
    project = f"rec-{uuid.uuid4().hex[:8]}"
    await keys.create_project(project)
    user = (("authorization", f"Bearer {await keys.create_api_key(project)}"),)
    ops = f"ops-{uuid.uuid4().hex[:6]}"
    await keys.create_project(ops)
    admin = (("authorization", f"Bearer {await keys.create_api_key(ops, admin=True)}"),)
    d_channel = grpc.aio.insecure_channel(f"127.0.0.1:{dataset.port}")
    i_channel = grpc.aio.insecure_channel(f"127.0.0.1:{insights.port}")
    datasets = dataset_service_pb2_grpc.DatasetServiceStub(d_channel)
    stub = insights_service_pb2_grpc.InsightsServiceStub(i_channel)

    async def recorded():
        report = await stub.GetSuccessReport(pb.GetSuccessReportRequest(name="successReport"), metadata=admin)
        return report, {funnel_pb2.FunnelStep.Name(f.step): (f.projects, f.events) for f in report.recorded_funnel}

    try:
        before, steps_before = await recorded()
        assert list(before.unavailable_sources) == ["registry", "training"]
        assert set(steps_before) == {"FUNNEL_STEP_DATASET_VALID"}  # only what was asked is reported
        # One dataset with a valid version and one empty dataset in a new project.
        for dataset_id in ("tickets", "empty"):
            await datasets.CreateDataset(dpb.CreateDatasetRequest(
                parent=f"projects/{project}", dataset_id=dataset_id, dataset=dataset_pb2.Dataset()), metadata=user)
        await datasets.UploadDatasetVersion(upload_messages(
            f"projects/{project}/datasets/tickets", CSV, dataset_version_pb2.IngestOptions(file_name="t.csv"),
            1024), metadata=user)
        after, steps_after = await recorded()
        projects, events = steps_before["FUNNEL_STEP_DATASET_VALID"]
        assert steps_after["FUNNEL_STEP_DATASET_VALID"] == (projects + 1, events + 1)
        assert after.projects_counted == before.projects_counted >= 1
    finally:
        await d_channel.close()
        await i_channel.close()
        await insights.stop()
        await dataset.stop()
