"""An OTLP/gRPC receiver (traces and metrics) on a loopback port, for tests that follow a
trace across processes: services and Ray workers export to it as they would to a
collector."""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass(frozen=True)
class ReceivedSpan:
    service: str
    name: str
    trace_id: str  # 32 hex digits
    span_id: str
    parent_span_id: str
    attributes: dict[str, object]


@dataclass(frozen=True)
class ReceivedPoint:
    service: str
    metric: str
    attributes: dict[str, object]


def _value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def _service(resource) -> str:
    return next((_value(a.value) for a in resource.attributes if a.key == "service.name"), "")


class _Metrics(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(self, request, context):
        points = []
        for rm in request.resource_metrics:
            for scope in rm.scope_metrics:
                for metric in scope.metrics:
                    data = getattr(metric, metric.WhichOneof("data")) if metric.WhichOneof("data") else None
                    for point in getattr(data, "data_points", ()):
                        points.append(ReceivedPoint(_service(rm.resource), metric.name,
                                                    {a.key: _value(a.value) for a in point.attributes}))
        with self.receiver._lock:
            self.receiver._points.extend(points)
        return metrics_service_pb2.ExportMetricsServiceResponse()


class OtlpReceiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Start with :meth:`start` (returns ``127.0.0.1:PORT``), read :attr:`spans` and
    :attr:`metric_points`."""

    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._points: list[ReceivedPoint] = []
        self._lock = threading.Lock()
        self._server: grpc.Server | None = None

    def Export(self, request, context):
        received = []
        for resource_spans in request.resource_spans:
            service = _service(resource_spans.resource)
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    received.append(ReceivedSpan(
                        service=service, name=span.name, trace_id=span.trace_id.hex(), span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                    ))
        with self._lock:
            self._spans.extend(received)
        return trace_service_pb2.ExportTraceServiceResponse()

    @property
    def spans(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self._spans)

    @property
    def metric_points(self) -> list[ReceivedPoint]:
        """Every data point exported so far (the same series again at each export)."""
        with self._lock:
            return list(self._points)

    def start(self) -> str:
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(_Metrics(self), self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()
        return f"127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop(0)
