"""One trace across the whole system: the wizard path through the gateway, with every
process exporting OTLP to a test receiver.

``python -m devstack`` runs each service, the gateway and the Ray head as separate
processes with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set. Through the REST API: upload a
slice of the Brown corpus, start a small tuning job that registers its model, wait
for its final evaluation and its model version, then predict with the version. The
request that created the job must be one trace through the gateway, the training and
dataset services, the Ray training workers, the training service's follow-up, the
evaluation service and its Ray workers, and the registry — with the job and the
evaluation named on the worker spans. Every service also exports call metrics, and
the runs their durations.
"""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from devstack.components import free_port
from tests.otlp import OtlpReceiver, ReceivedSpan

from .test_wizard_step1 import BROWN, Devstack

pytestmark = pytest.mark.skipif(not BROWN.is_file(), reason="the shared data files are missing")

SERVICES = ("dataset-svc", "training-svc", "evaluation-svc", "registry-svc")
JOB_TIMEOUT = 600


def brown_csv(per_label: int = 60, labels=("government", "fiction_romance", "humor")) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["text", "label"])
    taken = dict.fromkeys(labels, 0)
    with open(BROWN, newline="") as f:
        for row in csv.DictReader(f):
            if taken.get(row["label"], per_label) < per_label:
                writer.writerow([row["text"][:300], row["label"]])
                taken[row["label"]] += 1
    return out.getvalue().encode()


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    r = OtlpReceiver()
    r.address = r.start()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def gateway(database_url: str, tmp_path_factory: pytest.TempPathFactory,
            receiver: OtlpReceiver) -> Iterator[httpx.Client]:
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GATEWAY_PORT", str(port))
        mp.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.address)
        mp.setenv("OTEL_BSP_SCHEDULE_DELAY", "500")  # spans leave within half a second
        mp.setenv("OTEL_METRIC_EXPORT_INTERVAL", "2000")
        stack = Devstack(tmp_path_factory.mktemp("trace-run"), database_url)
    try:
        stack.wait_up()
        key = stack.mtw_env()["MTW_API_KEY"]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"authorization": f"Bearer {key}"},
                          timeout=120) as client:
            yield client
    finally:
        assert stack.stop() == 0, stack.output()[-3000:]


def _ok(response: httpx.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def _until(what: str, check, timeout: float, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what}: not within {timeout:.0f}s"
        time.sleep(interval)


def _server_span(spans: list[ReceivedSpan], service: str, method: str) -> ReceivedSpan | None:
    return next((s for s in spans if s.service == service and s.name.endswith(f"/{method}")), None)


def test_the_wizard_path_is_one_trace_with_metrics(gateway: httpx.Client, receiver: OtlpReceiver):
    suffix = uuid.uuid4().hex[:6]
    dataset = _ok(gateway.post("/v1/projects/dev/datasets", params={"dataset_id": f"genres-{suffix}"}, json={}))
    version = _ok(gateway.post(f"/v1/{dataset['name']}/versions:upload",
                               params={"header.options.file_name": "brown.csv"}, content=brown_csv()))
    model = f"projects/dev/models/genres-{suffix}"
    job = _ok(gateway.post("/v1/projects/dev/tuningJobs", json={
        "base_model": "baseModels/all-minilm-l6-v2", "dataset_version": version["name"],
        "display_name": "traced", "register_to_model": model,
        "hyperparameters": {"max_steps": 8, "per_device_batch_size": 8, "max_seq_length": 64, "num_workers": 1,
                            "eval_interval_steps": 8, "checkpoint_interval_steps": 8,
                            "early_stopping_patience": 0}}))

    def followed_up() -> dict | None:
        current = _ok(gateway.get(f"/v1/{job['name']}"))
        assert current["state"] not in ("JOB_STATE_FAILED", "JOB_STATE_CANCELLED"), current
        return current if current.get("evaluation") and current.get("model_version") else None

    def evaluated() -> dict | None:
        current = _ok(gateway.get(f"/v1/{done['evaluation']}"))
        return current if current["state"] == "JOB_STATE_SUCCEEDED" else None

    done = _until("the job, its evaluation and its registration", followed_up, JOB_TIMEOUT, 2)
    evaluation = _until("the final evaluation", evaluated, 300, 2)
    prediction = _ok(gateway.post(f"/v1/{done['model_version']}:predict",
                                  json={"inputs": [{"text": "The committee approved the appropriation."}]}))
    assert prediction["predictions"][0]["classification"]["label"] in ("government", "fiction_romance", "humor")

    # The job's trace: from the gateway to the last registration call.
    def creation_trace() -> set[str] | None:
        spans = receiver.spans
        created = _server_span(spans, "training-svc", "CreateTuningJob")
        if created is None:
            return None
        trace = [s for s in spans if s.trace_id == created.trace_id]
        services = {s.service for s in trace}
        wanted = {"gateway", *SERVICES, "training-worker", "evaluation-worker"}
        return services if wanted <= services and _server_span(trace, "registry-svc", "CreateModelVersion") else None

    services = _until("every part of the system in the job's trace", creation_trace, 60)
    spans = receiver.spans
    trace_id = _server_span(spans, "training-svc", "CreateTuningJob").trace_id
    trace = [s for s in spans if s.trace_id == trace_id]
    names = {(s.service, s.name) for s in trace}
    assert any(service == "gateway" and name.startswith("POST ") for service, name in names), names
    assert _server_span(trace, "dataset-svc", "GetDatasetVersion") is not None  # the job read its data
    assert _server_span(trace, "evaluation-svc", "CreateEvaluation") is not None  # the follow-up
    worker = next(s for s in trace if s.name == "training.worker")
    assert worker.attributes["mtw.job"] == job["name"]
    runs = [s for s in trace if s.name == "evaluation.run"]
    assert evaluation["name"] in {s.attributes["mtw.evaluation"] for s in runs}
    assert any(s.name == "evaluation.score_shard" for s in trace)
    print(f"one trace {trace_id}: {len(trace)} spans from {sorted(services)}")

    # The prediction is a trace of its own: gateway → registry.
    def predicted() -> bool:
        spans = receiver.spans
        span = _server_span(spans, "registry-svc", "Predict")
        return span is not None and any(s.service == "gateway" for s in spans if s.trace_id == span.trace_id)

    _until(f"the prediction's trace (registry spans: {sorted({s.name for s in receiver.spans if s.service == 'registry-svc'})})",
           predicted, 30)

    # Metrics: calls of every service by method and status, HTTP requests, run durations.
    def exported() -> set[tuple[str, str]] | None:
        seen = {(p.service, p.metric) for p in receiver.metric_points}
        wanted = {(s, "rpc.server.duration") for s in SERVICES} | {
            ("training-worker", "mtw.training.run.duration"), ("evaluation-worker", "mtw.evaluation.run.duration")}
        return seen if wanted <= seen and any(s == "gateway" and m.startswith("http.server") for s, m in seen) \
            else None

    _until("metrics from every part", exported, 60)
    calls = [p.attributes for p in receiver.metric_points
             if p.service == "training-svc" and p.metric == "rpc.server.calls"]
    assert {"rpc.method": "CreateTuningJob", "rpc.grpc.status_code": "OK"}.items() <= next(
        a for a in calls if a["rpc.method"] == "CreateTuningJob").items()
    runs = [p.attributes for p in receiver.metric_points if p.metric == "mtw.training.run.duration"]
    assert {"project": "dev", "task": "SEQUENCE_CLASSIFICATION", "outcome": "succeeded"} in runs
