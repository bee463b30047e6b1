"""Tracing and metrics (OpenTelemetry, W3C traceparent) and JSON logs carrying the trace id.

Call :func:`setup_telemetry` before creating gRPC servers or channels: the gRPC
instrumentors work by patching ``grpc.aio.server`` / channel factories. Safe to call
more than once per process (tests start several servers in one process).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.propagate import set_global_textmap
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pythonjsonlogger.json import JsonFormatter

_lock = threading.Lock()
_provider: TracerProvider | None = None
_added_processors: set[int] = set()
_otlp_endpoints: set[str] = set()
_meter_provider: MeterProvider | None = None


class TraceContextFilter(logging.Filter):
    """Adds ``service``, ``trace_id`` and ``span_id`` (of the current span) to every record."""

    def __init__(self, service_name: str) -> None:
        super().__init__()
        self.service_name = service_name

    def filter(self, record: logging.LogRecord) -> bool:
        ctx = trace.get_current_span().get_span_context()
        if not hasattr(record, "service"):
            record.service = self.service_name
        record.trace_id = format(ctx.trace_id, "032x") if ctx.is_valid else None
        record.span_id = format(ctx.span_id, "016x") if ctx.is_valid else None
        return True


class _MtwHandler(logging.StreamHandler):
    """Marker class so configure_logging can replace its own handler on a second call."""


def configure_logging(
    service_name: str, level: str | int = "INFO", stream: Any = None
) -> logging.Handler:
    """JSON logs on stderr with time, level, logger, message, service, trace_id, span_id."""
    handler = _MtwHandler(stream or sys.stderr)
    handler.setFormatter(
        JsonFormatter(
            "%(asctime)s %(levelname)s %(name)s %(message)s %(service)s %(trace_id)s %(span_id)s",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(TraceContextFilter(service_name))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _MtwHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # Libraries' chatter at INFO buries ours.
    for noisy in ("urllib3", "asyncio", "werkzeug", "botocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


def setup_telemetry(
    service_name: str,
    settings: Any = None,
    extra_processors: Sequence[SpanProcessor] = (),
    configure_logs: bool = True,
) -> TracerProvider:
    """Install the tracer provider, W3C propagation, gRPC instrumentation and (once) the
    meter provider; idempotent.

    The first call fixes the process-wide provider (OpenTelemetry allows one); later
    calls only add processors not added before (e.g. a test's InMemorySpanExporter).
    """
    global _provider
    with _lock:
        if _provider is None:
            _provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
            trace.set_tracer_provider(_provider)
            set_global_textmap(TraceContextTextMapPropagator())
        endpoint = (
            getattr(settings, "otel_exporter_otlp_endpoint", None) if settings is not None else None
        )
        if endpoint and endpoint not in _otlp_endpoints:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            _provider.add_span_processor(
                BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True))
            )
            _otlp_endpoints.add(endpoint)
        for processor in extra_processors:
            if id(processor) not in _added_processors:
                _provider.add_span_processor(processor)
                _added_processors.add(id(processor))
        _instrument_grpc()
        _setup_metrics(service_name, endpoint)
    if configure_logs:
        configure_logging(
            service_name, getattr(settings, "log_level", "INFO") if settings is not None else "INFO"
        )
    return _provider


def _setup_metrics(service_name: str, endpoint: str | None) -> None:
    """The process-wide MeterProvider, exporting over OTLP when an endpoint is set.
    OpenTelemetry allows one per process, so the first call decides its readers (tests
    give a service their own MeterProvider with an in-memory reader instead)."""
    global _meter_provider
    if _meter_provider is not None:
        return
    readers = []
    if endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=endpoint, insecure=True)))
    _meter_provider = MeterProvider(metric_readers=readers,
                                    resource=Resource.create({"service.name": service_name}))
    metrics.set_meter_provider(_meter_provider)


def _instrument_grpc() -> None:
    from opentelemetry.instrumentation.grpc import (
        GrpcAioInstrumentorClient,
        GrpcAioInstrumentorServer,
        GrpcInstrumentorClient,
    )

    # BaseInstrumentor is a per-class singleton that remembers whether it is active.
    for instrumentor in (
        GrpcAioInstrumentorServer(),
        GrpcAioInstrumentorClient(),
        GrpcInstrumentorClient(),
    ):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()


def current_traceparent() -> str:
    """The current span's W3C ``traceparent`` ("" outside a span): what a job stores so the
    work it starts later, elsewhere, joins the trace of the request that asked for it."""
    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent", "")


def continued_span(tracer_name: str, span_name: str, traceparent: str, attributes: dict[str, Any]):
    """A span whose parent is ``traceparent`` (a context manager; a no-op without one)."""
    if not traceparent:
        return contextlib.nullcontext()
    parent = TraceContextTextMapPropagator().extract({"traceparent": traceparent})
    return trace.get_tracer(tracer_name).start_as_current_span(span_name, context=parent, attributes=attributes)


def worker_span(service_name: str, span_name: str, traceparent: str, otlp_endpoint: str,
                attributes: dict[str, Any]):
    """For code on a Ray worker: the span of its work, in the trace of the request that
    started it, exported as ``service_name`` to ``otlp_endpoint`` (telemetry is set up in
    the worker on first use). Call :func:`flush_spans` before the worker may end."""
    if traceparent and otlp_endpoint:
        from types import SimpleNamespace

        setup_telemetry(service_name, SimpleNamespace(otel_exporter_otlp_endpoint=otlp_endpoint),
                        configure_logs=False)
    return continued_span(f"mtw.{service_name}", span_name, traceparent, attributes)


def flush_spans() -> None:
    """Export pending spans now: Ray ends worker processes without the exit hooks that
    would."""
    if _provider is not None:
        _provider.force_flush(timeout_millis=5000)


def record_run_duration(service_name: str, otlp_endpoint: str, metric: str, seconds: float,
                        attributes: dict[str, Any]) -> None:
    """For the Ray actor that runs a job's attempt (the one place its outcome is recorded,
    so each attempt counts once): the attempt's duration as a histogram, exported now."""
    if not otlp_endpoint:
        return
    from types import SimpleNamespace

    setup_telemetry(service_name, SimpleNamespace(otel_exporter_otlp_endpoint=otlp_endpoint), configure_logs=False)
    histogram = metrics.get_meter("mtw.jobs").create_histogram(metric, unit="s", description="Duration of a run")
    histogram.record(seconds, attributes)
    if _meter_provider is not None:
        _meter_provider.force_flush(timeout_millis=5000)


def shutdown_telemetry() -> None:
    """Flush pending spans and metrics. Not a shutdown: the providers are process-wide (tests
    run several services in one process) and OpenTelemetry shuts them down at interpreter exit."""
    if _provider is not None:
        _provider.force_flush(timeout_millis=5000)
    if _meter_provider is not None:
        _meter_provider.force_flush(timeout_millis=5000)
