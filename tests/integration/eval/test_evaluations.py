"""The evaluation service on real Ray with the real dataset and training services: a tuned
MiniLM measured on the whole test split (checked against scikit-learn on the same
predictions) next to its base model, example results paged with a filter, a comparison,
a causal LM with perplexity from a deliberately over-fitted tiny GPT-2 whose
recommendation starts a new job with lineage, cancel, a service restart mid-run, tenancy
and bad requests."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from mtw.dataset.v1 import dataset_service_pb2 as dpb
from mtw.evaluation.v1 import evaluation_pb2, evaluation_service_pb2_grpc
from mtw.evaluation.v1 import evaluation_service_pb2 as epb
from mtw.training.v1 import hyperparameters_pb2 as hp
from services.common.auth import service_metadata
from tests.integration.training.service_harness import brown_csv, text_csv

from .conftest import INTERNAL_TOKEN, uuid5

pytestmark = pytest.mark.slow
SUCCEEDED, CANCELLED = 4, 7
LABELS = ("government", "fiction_romance", "press_reviews")


async def _train(stack, timeout: float = 240, **fields):
    job = await stack.create(**fields)
    done = await stack.wait_for(job.name, {4, 5, 7}, timeout=timeout)
    assert done.state == SUCCEEDED, done.failure
    return done


@pytest.fixture(scope="module")
async def world(eval_stack):
    """Data, a tuned MiniLM (classification) and an over-fitted tiny GPT-2 (causal LM)."""
    s = eval_stack
    s.versions["classification"] = await s.stack.upload(brown_csv(360, LABELS), "brown.csv")
    # Few passages trained on for many epochs: a model that learns them by heart.
    s.versions["causal_lm"] = await s.stack.upload(text_csv(50, max_chars=300), "prose.csv")
    started = time.monotonic()
    minilm = await _train(s.stack, dataset_version=s.versions["classification"], display_name="genres",
                          hyperparameters=hp.Hyperparameters(
                              max_steps=20, per_device_batch_size=8, max_seq_length=64, learning_rate=3e-3,
                              eval_interval_steps=10, checkpoint_interval_steps=20, num_workers=1,
                              early_stopping_patience=0, warmup_ratio=0.0))
    # Full fine-tuning at a high learning rate on little text: validation loss turns up.
    gpt = await _train(s.stack, base_model="baseModels/tiny-gpt2", dataset_version=s.versions["causal_lm"],
                       method=2, hyperparameters=hp.Hyperparameters(
                           max_steps=60, per_device_batch_size=8, max_seq_length=64, learning_rate=1e-2,
                           eval_interval_steps=6, checkpoint_interval_steps=60, num_workers=1,
                           early_stopping_patience=0, warmup_ratio=0.0))
    print(f"training both jobs: {time.monotonic() - started:.1f}s")
    s.jobs.update(minilm=minilm.name, gpt=gpt.name)
    return s


def _violations(error: grpc.aio.AioRpcError) -> dict[str, str]:
    status = rpc_status.from_call(error)
    out = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out.update({v.field: v.description for v in bad.field_violations})
    return out


async def test_tuned_classifier_is_measured_against_its_base_model(world):
    from sklearn.metrics import (
        accuracy_score,
        confusion_matrix,
        f1_score,
        precision_score,
        recall_score,
    )

    s = world
    # As the training service does when a job succeeds: service-to-service, idempotent.
    metadata = service_metadata(INTERNAL_TOKEN, "alpha", "training")
    request_id = uuid5(s.jobs["minilm"])
    first = await s.create(metadata=metadata, request_id=request_id, tuning_job=s.jobs["minilm"],
                           dataset_version=s.versions["classification"], display_name="final evaluation")
    again = await s.create(metadata=metadata, request_id=request_id, tuning_job=s.jobs["minilm"],
                           dataset_version=s.versions["classification"], display_name="final evaluation")
    assert again.name == first.name and first.created_by_tuning_job == s.jobs["minilm"]
    assert first.baseline_evaluation and first.split == "test"
    done = await s.wait(first.name)
    assert done.state == SUCCEEDED, done.failure
    base = await s.wait(first.baseline_evaluation)
    assert base.state == SUCCEEDED and base.base_model == "baseModels/all-minilm-l6-v2", base.failure
    done = await s.get(first.name)
    results = done.results
    examples, total = await s.examples(done.name)
    version = await s.stack.dataset_stub.GetDatasetVersion(
        dpb.GetDatasetVersionRequest(name=s.versions["classification"]), metadata=s.auth())
    test_rows = next(sp.row_count for sp in version.splits if sp.name == "test")
    assert results.example_count == total == len(examples) == test_rows  # the whole split
    y_true = [e.reference for e in examples]
    y_pred = [e.prediction for e in examples]
    labels = list(results.confusion_matrix.labels)
    by_hand = {
        "accuracy": accuracy_score(y_true, y_pred),
        "macro_f1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "weighted_f1": f1_score(y_true, y_pred, labels=labels, average="weighted", zero_division=0),
        "macro_precision": precision_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        "macro_recall": recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
    }
    metrics = {m.name: m for m in results.metrics}
    for name, value in by_hand.items():
        assert metrics[name].value == pytest.approx(value, abs=1e-9), name
        assert metrics[name].HasField("baseline_value")
    assert list(results.confusion_matrix.counts) == confusion_matrix(y_true, y_pred, labels=labels).ravel().tolist()
    assert 0 <= metrics["ece"].value <= 1 and results.calibration.bins
    assert metrics["accuracy"].confidence_interval.lower <= metrics["accuracy"].value
    assert "base model" in results.summary and results.examples_per_second > 0
    events = [e async for e in s.stub.WatchEvaluation(epb.WatchEvaluationRequest(name=done.name),
                                                      metadata=s.auth())]
    assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
    assert events[-1].state_change.state == SUCCEEDED
    progress = [e.progress for e in events if e.WhichOneof("event") == "progress"]
    assert progress[-1].progress.examples_done == total and "accuracy" in progress[-1].running_metrics
    print(f"tuned: {results.summary} ({results.examples_per_second:.0f} examples/s)")

    # The worst first; one cell of the confusion matrix through a filter, over several pages.
    assert [e.loss for e in examples] == sorted((e.loss for e in examples), reverse=True)
    n = len(labels)
    counts = list(base.results.confusion_matrix.counts)
    i, j = max(((i, j) for i in range(n) for j in range(n) if i != j), key=lambda c: counts[c[0] * n + c[1]])
    cell, cell_total = await s.examples(base.name, filter=f'reference="{labels[i]}" AND prediction="{labels[j]}"',
                                        page_size=2)
    assert cell_total == counts[i * n + j] == len(cell) and all(
        e.reference == labels[i] and e.prediction == labels[j] for e in cell)
    wrong, _ = await s.examples(done.name, filter="correct=false AND loss>0.1")
    assert all(not e.correct and e.loss > 0.1 for e in wrong)

    # Side by side: deltas against the base model, and the examples whose outcome changed.
    comparison = await s.stub.CompareEvaluations(epb.CompareEvaluationsRequest(
        evaluations=[base.name, done.name], page_size=100), metadata=s.auth())
    accuracy = next(m for m in comparison.metrics if m.name == "accuracy")
    assert accuracy.deltas[1] == pytest.approx(metrics["accuracy"].value - metrics["accuracy"].baseline_value)
    base_examples = {e.row: e.correct for e in (await s.examples(base.name))[0]}
    fixed = sum(1 for e in examples if e.correct and not base_examples[e.row])
    assert comparison.fixed_counts[1] == fixed
    assert len([c for c in comparison.changed_examples if c.changes[1] == 1]) == fixed


async def test_overfitted_causal_lm_gets_perplexity_and_a_recommendation_that_starts_a_new_job(world):
    s = world
    created = await s.create(tuning_job=s.jobs["gpt"], dataset_version=s.versions["causal_lm"],
                             config=evaluation_pb2.EvaluationConfig(max_new_tokens=16, sample_count=3))
    done = await s.wait(created.name)
    assert done.state == SUCCEEDED, done.failure
    metrics = {m.name: m for m in done.results.metrics}
    assert metrics["perplexity"].value > 1 and metrics["perplexity"].HasField("baseline_value")
    assert metrics["perplexity"].value == pytest.approx(__import__("math").exp(metrics["loss"].value))
    assert 0 < len(done.results.samples) <= 3 and all(x.generated for x in done.results.samples)
    deadline = time.monotonic() + 60
    while True:  # recommendations follow once the baseline has ended
        recs = await s.stub.ListRecommendations(epb.ListRecommendationsRequest(parent=done.name), metadata=s.auth())
        codes = {r.code: r for r in recs.recommendations}
        if "OVERFITTING" in codes or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    if "OVERFITTING" not in codes:
        from mtw.training.v1 import training_service_pb2 as tpb

        curve = await s.stack.stub.ListTuningJobEvents(tpb.ListTuningJobEventsRequest(
            parent=s.jobs["gpt"], filter="event:eval_metrics"), metadata=s.auth())
        raise AssertionError(f"no OVERFITTING in {sorted(codes)}; eval losses "
                             f"{[(e.eval_metrics.step, round(e.eval_metrics.loss, 3)) for e in curve.events]}")
    overfit = codes["OVERFITTING"]
    assert overfit.applicable and overfit.changes.start_from == 2 and overfit.evidence
    assert overfit.changes.hyperparameters.learning_rate == pytest.approx(5e-3)
    job = await s.stub.ApplyRecommendation(epb.ApplyRecommendationRequest(name=overfit.name), metadata=s.auth())
    try:
        assert job.lineage.branched_from == s.jobs["gpt"]
        assert job.lineage.source_evaluation == done.name and job.lineage.source_recommendation == overfit.name
        assert job.hyperparameters.learning_rate == pytest.approx(5e-3)
        again = await s.stub.GetRecommendation(epb.GetRecommendationRequest(name=overfit.name), metadata=s.auth())
        assert list(again.applied_tuning_jobs) == [job.name]
    finally:
        from mtw.training.v1 import training_service_pb2 as tpb

        await s.stack.stub.CancelTuningJob(tpb.CancelTuningJobRequest(name=job.name), metadata=s.auth())
        await s.stack.wait_for(job.name, {4, 5, 7}, timeout=120)  # its run is gone before the stack stops


async def test_cancel_stops_a_running_evaluation(world):
    s = world
    created = await s.create(base_model="baseModels/all-minilm-l6-v2", dataset_version=s.versions["classification"],
                             split="train", config=evaluation_pb2.EvaluationConfig(batch_size=1))
    await s.wait(created.name, {2, 3}, timeout=60)
    await s.stub.CancelEvaluation(epb.CancelEvaluationRequest(name=created.name), metadata=s.auth())
    done = await s.wait(created.name, timeout=60)
    assert done.state == CANCELLED and done.failure.category == 6
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await s.stub.ListExampleResults(epb.ListExampleResultsRequest(parent=created.name), metadata=s.auth())
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    await s.stub.DeleteEvaluation(epb.DeleteEvaluationRequest(name=created.name), metadata=s.auth())
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await s.get(created.name)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_restarted_service_adopts_the_running_evaluation(world):
    """The service stops mid-run (a deploy): the run goes on in Ray, the next start adopts
    it, and the evaluation ends SUCCEEDED having run once, its history without a gap."""
    from services.eval_svc import service as eval_service

    s = world
    created = await s.create(base_model="baseModels/all-minilm-l6-v2", dataset_version=s.versions["classification"],
                             split="train", config=evaluation_pb2.EvaluationConfig(batch_size=1))
    await s.wait(created.name, {3}, timeout=120)  # RUNNING: scoring on Ray
    settings = s.service.app.settings
    await s.service.stop()
    await s.channel.close()
    s.service = await eval_service.start(settings)
    s.channel = grpc.aio.insecure_channel(f"127.0.0.1:{s.service.port}")
    s.stub = evaluation_service_pb2_grpc.EvaluationServiceStub(s.channel)
    done = await s.wait(created.name, timeout=300)
    assert done.state == SUCCEEDED, done.failure
    events = [e async for e in s.stub.WatchEvaluation(epb.WatchEvaluationRequest(name=done.name),
                                                      metadata=s.auth())]
    assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))
    started = [e for e in events if e.WhichOneof("event") == "state_change" and e.state_change.state == 2]
    assert len(started) == 1, "the evaluation ran once"
    assert done.results.example_count == next(
        sp.row_count for sp in (await s.stack.dataset_stub.GetDatasetVersion(
            dpb.GetDatasetVersionRequest(name=s.versions["classification"]), metadata=s.auth())).splits
        if sp.name == "train")


async def test_another_projects_evaluation_is_not_found(world):
    s = world
    evaluations = await s.stub.ListEvaluations(epb.ListEvaluationsRequest(parent="projects/alpha"),
                                               metadata=s.auth())
    name = evaluations.evaluations[0].name
    for call, request in ((s.stub.GetEvaluation, epb.GetEvaluationRequest(name=name)),
                          (s.stub.ListExampleResults, epb.ListExampleResultsRequest(parent=name)),
                          (s.stub.CancelEvaluation, epb.CancelEvaluationRequest(name=name))):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call(request, metadata=s.auth("beta"))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(("fields", "field"), [
    ({"split": "holdout"}, "evaluation.split"),
    ({"base_model": "baseModels/no-such-model"}, "evaluation.base_model"),
    ({"dataset_version": "causal_lm"}, "evaluation.dataset_version"),  # a classifier on prose
    ({"metrics": ["accuracy", "bleu"]}, "evaluation.metrics[1]"),
])
async def test_bad_requests_name_the_field(world, fields, field):
    s = world
    values = {"tuning_job": s.jobs["minilm"], "dataset_version": s.versions["classification"], **fields}
    if "base_model" in fields:
        values.pop("tuning_job")
    values["dataset_version"] = s.versions.get(values["dataset_version"], values["dataset_version"])
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await s.create(**values)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in _violations(error.value), error.value.details()


async def test_sdk_and_cli_read_evaluations(world):
    import json

    import mtw
    from mtw.cli.app import main

    s = world
    endpoints = {"evaluation": f"127.0.0.1:{s.service.port}", "training": f"127.0.0.1:{s.stack.training.port}"}

    def read():  # the sync SDK in a thread: the services run on this test's event loop
        with mtw.Client(endpoints, s.stack.keys["alpha"], project="alpha") as client:
            done = [e for e in client.evaluations.list(filter="state=JOB_STATE_SUCCEEDED")]
            worst = list(client.evaluations.examples(done[0], limit=3))
            return done, worst

    done, worst = await asyncio.to_thread(read)
    assert done and len(worst) <= 3 and all(w.HasField("loss") for w in worst)
    env = {"MTW_API_KEY": s.stack.keys["alpha"], "MTW_PROJECT": "alpha",
           "MTW_EVALUATION_ENDPOINT": endpoints["evaluation"]}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        from contextlib import redirect_stdout
        from io import StringIO

        out = StringIO()
        with redirect_stdout(out):
            code = await asyncio.to_thread(main, ["--json", "evals", "show", done[0].name.rsplit("/", 1)[1]])
    assert code == 0 and json.loads(out.getvalue())["name"] == done[0].name


async def test_chat_sft_answers_are_generated_and_scored(world):
    from tests.integration.training.service_harness import chat_jsonl

    s = world
    version = await s.stack.upload(chat_jsonl(120), "chat.jsonl")
    job = await _train(s.stack, base_model="baseModels/tiny-gpt2", dataset_version=version,
                       hyperparameters=hp.Hyperparameters(max_steps=12, per_device_batch_size=8, max_seq_length=64,
                                                          learning_rate=2e-3, eval_interval_steps=12,
                                                          checkpoint_interval_steps=12, num_workers=1,
                                                          early_stopping_patience=0, warmup_ratio=0.0))
    created = await s.create(tuning_job=job.name, config=evaluation_pb2.EvaluationConfig(max_new_tokens=12,
                                                                                         sample_count=2))
    assert created.dataset_version == version  # the job's data by default
    done = await s.wait(created.name)
    assert done.state == SUCCEEDED, done.failure
    metrics = {m.name: m.value for m in done.results.metrics}
    assert list(metrics) == ["loss", "perplexity", "exact_match", "rouge_l", "bleu"]
    examples, total = await s.examples(done.name)
    assert total == done.results.example_count and all(e.prediction for e in examples)
    assert metrics["rouge_l"] == pytest.approx(sum(e.metrics["rouge_l"] for e in examples) / total)
    assert metrics["exact_match"] == pytest.approx(sum(e.correct for e in examples) / total)
    assert all(e.score == e.metrics["rouge_l"] for e in examples)
    assert 0 < len(done.results.samples) <= 2 and "<|assistant|>" in done.results.samples[0].prompt
