"""The wizard path on the whole system, as separate processes: one trace across it,
its metrics, and steps 3 and 4 in the browser.

``python -m devstack`` runs each service, the gateway and the Ray head as separate
processes with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set to a test receiver. Through the
REST API: upload a slice of the Brown corpus, start a small tuning job that registers
its model, wait for its final evaluation and its model version, then predict with the
version. The request that created the job must be one trace through the gateway, the
training and dataset services, the Ray training workers, the training service's
follow-up, the evaluation service and its Ray workers, and the registry — with the job
and the evaluation named on the worker spans; the upload and the prediction are traces
from the gateway through the dataset service and the registry. Every service exports
call metrics, and the runs their durations. In headless Chromium, the wizard resumed at
step 3 shows that job's evaluation against the base model, and step 4 saves it under an
alias, predicts, and asks the survey once.
"""

from __future__ import annotations

import csv
import io
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from devstack.components import free_port
from tests.otlp import OtlpReceiver, ReceivedSpan

from .browser import CHROMIUM, browser_page, funnel_events, shoot, sign_in
from .test_wizard_step1 import BROWN, Devstack

pytestmark = pytest.mark.skipif(not BROWN.is_file(), reason="the shared data files are missing")

SERVICES = ("dataset-svc", "training-svc", "evaluation-svc", "registry-svc")
GENRES = ("government", "fiction_romance", "humor")
JOB_TIMEOUT = 600


def brown_csv(per_label: int = 60, labels=GENRES) -> bytes:
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


@dataclass(frozen=True)
class WizardRun:
    dataset_version: str
    job: dict
    evaluation: dict
    model_version: str


@pytest.fixture(scope="module")
def wizard_run(gateway: httpx.Client) -> WizardRun:
    """Steps 1–4 through the REST API: data, a small job that registers its model, its
    final evaluation, a prediction."""
    suffix = uuid.uuid4().hex[:6]
    dataset = _ok(gateway.post("/v1/projects/dev/datasets", params={"dataset_id": f"genres-{suffix}"}, json={}))
    version = _ok(gateway.post(f"/v1/{dataset['name']}/versions:upload",
                               params={"header.options.file_name": "brown.csv"}, content=brown_csv()))
    job = _ok(gateway.post("/v1/projects/dev/tuningJobs", json={
        "base_model": "baseModels/all-minilm-l6-v2", "dataset_version": version["name"],
        "display_name": "traced", "register_to_model": f"projects/dev/models/genres-{suffix}",
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
    assert prediction["predictions"][0]["classification"]["label"] in GENRES
    return WizardRun(version["name"], done, evaluation, done["model_version"])


def test_the_wizard_path_is_one_trace_with_metrics(wizard_run: WizardRun, receiver: OtlpReceiver):
    job, evaluation = wizard_run.job, wizard_run.evaluation
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

    # The upload and the prediction are traces of their own, from the gateway on.
    def from_the_gateway(service: str, method: str) -> bool:
        spans = receiver.spans
        span = _server_span(spans, service, method)
        return span is not None and any(s.service == "gateway" for s in spans if s.trace_id == span.trace_id)

    _until("the upload's trace", lambda: from_the_gateway("dataset-svc", "UploadDatasetVersion"), 30)
    _until("the prediction's trace", lambda: from_the_gateway("registry-svc", "Predict"), 30)

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


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is missing: run make install")
def test_steps_three_and_four_in_the_browser(gateway: httpx.Client, wizard_run: WizardRun,
                                             tmp_path_factory: pytest.TempPathFactory, database_url: str):
    """The wizard resumed at step 3 on the job the REST path trained: the evaluation
    against the base model; step 4: an alias, a prediction, the card, the survey once."""
    from playwright.sync_api import expect, sync_playwright

    url = str(gateway.base_url).rstrip("/")
    key = gateway.headers["authorization"].split()[1]
    artefacts = Path(os.environ.get("MTW_ARTEFACTS") or tmp_path_factory.mktemp("wizard-shots"))
    model = wizard_run.model_version.split("/versions/")[0]
    before = max((e["id"] for e in funnel_events(database_url, "dev")), default=0)

    with sync_playwright() as p, browser_page(p) as page:
        page.goto(url + "/signin")
        sign_in(page, "dev", key)
        expect(page.get_by_role("button", name="Create Custom Model")).to_be_visible()
        # Resume the wizard where this tab would be after starting the job.
        page.evaluate("state => sessionStorage.setItem('mtw.wizard', JSON.stringify(state))",
                      {"version": wizard_run.dataset_version, "job": wizard_run.job["name"],
                       "datasetName": "Genres"})
        page.goto(url + "/wizard/train")
        expect(page.get_by_role("heading", name="Step 3 — Training")).to_be_visible()
        metrics = page.locator("table.metrics")
        expect(metrics).to_contain_text("Tuned model against the base model", timeout=60_000)
        expect(metrics.get_by_role("rowheader", name="accuracy")).to_be_visible()
        for heading in ("Confusion matrix", "Hardest examples", "Recommendations"):
            expect(page.get_by_role("heading", name=heading)).to_be_visible()
        shoot(page, artefacts, "3-evaluation")

        page.get_by_role("button", name="Continue to save").click()
        expect(page.get_by_role("heading", name="Step 4 — Save and use")).to_be_visible()
        expect(page.get_by_text(f"This job saved its model as {wizard_run.model_version}")).to_be_visible()
        page.get_by_label("Alias").fill("production")
        page.get_by_role("button", name="Save model").click()
        expect(page.locator("p.success")).to_have_text(f"Saved as {model}@production")
        expect(page.get_by_role("heading", name="Model card")).to_be_visible()
        page.get_by_label("Input", exact=True).fill("The committee approved the appropriation for the year.")
        page.get_by_role("button", name="Predict").click()
        expect(page.locator(".prediction .big-number")).to_have_text(re.compile("|".join(GENRES)))

        # The survey: the first question is needed to send; then it is answered once.
        survey = page.locator("section.survey")
        survey.get_by_role("button", name="Send").click()
        expect(survey.get_by_role("alert")).to_contain_text("Choose how satisfied")
        survey.get_by_label("4 of 5 (Overall, how satisfied are you with your model?)").check()
        survey.get_by_label("5 of 5 (How easy was it: uploading your data?)").check()
        survey.get_by_label("What would you change? (optional)").fill("More presets for short texts.")
        survey.get_by_role("button", name="Send").click()
        expect(survey.get_by_role("heading", name="Thank you")).to_be_visible()
        shoot(page, artefacts, "4-saved")
        page.reload()
        expect(page.locator("section.survey")).to_contain_text("You told us how it went for this model.")

    assert _ok(gateway.get(f"/v1/{model}"))["aliases"]["production"] == wizard_run.model_version
    answer = _ok(gateway.get(f"/v1/{wizard_run.model_version}/surveyResponse"))
    assert answer["overall"] == 4 and answer["comment"] == "More presets for short texts."
    assert answer["step_ease"] == [{"step": "WIZARD_STEP_DATASET", "ease": 5}]
    # The funnel as the dashboard recorded it: each step once (the reload counts nothing).
    events = funnel_events(database_url, "dev", before)
    assert [(e["step"], e["resource"], e["failure_category"]) for e in events] == [
        ("JOB_SUCCEEDED", wizard_run.job["name"], ""),
        ("EVALUATION_VIEWED", wizard_run.job["evaluation"], ""),
        ("MODEL_SAVED", wizard_run.model_version, "")]
