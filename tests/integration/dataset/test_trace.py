"""One upload yields client and server spans that share a trace id."""

from __future__ import annotations

import grpc
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mtw.dataset.v1 import dataset_pb2, dataset_service_pb2_grpc, dataset_version_pb2
from mtw.dataset.v1 import dataset_service_pb2 as pb
from services.common.telemetry import setup_telemetry
from services.dataset_svc import service

from .conftest import dataset_settings, upload_messages


async def test_upload_client_and_server_spans_share_a_trace(service_settings, api_key):
    exporter = InMemorySpanExporter()
    setup_telemetry("dataset-svc", extra_processors=[SimpleSpanProcessor(exporter)], configure_logs=False)
    # Server and channel are created after instrumentation, as `__main__` and the SDK do.
    running = await service.start(dataset_settings(service_settings))
    key = await api_key("traced")
    auth = (("authorization", f"Bearer {key}"),)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = dataset_service_pb2_grpc.DatasetServiceStub(channel)
            dataset = await stub.CreateDataset(
                pb.CreateDatasetRequest(parent="projects/traced", dataset_id="t", dataset=dataset_pb2.Dataset()),
                metadata=auth,
            )
            exporter.clear()
            with trace.get_tracer("test").start_as_current_span("user uploads") as root:
                await stub.UploadDatasetVersion(
                    upload_messages(dataset.name, b"text\nhello there\ngeneral kenobi\n",
                                    dataset_version_pb2.IngestOptions(file_name="t.csv"), 8),
                    metadata=auth,
                )
    finally:
        await running.stop()
    spans = [s for s in exporter.get_finished_spans()
             if s.name.endswith("DatasetService/UploadDatasetVersion")]
    kinds = {s.kind for s in spans}
    assert kinds == {trace.SpanKind.CLIENT, trace.SpanKind.SERVER}
    assert {s.context.trace_id for s in spans} == {root.get_span_context().trace_id}
