"""Protos ↔ domain objects of the evaluation service, in one place."""

from __future__ import annotations

import math
from datetime import datetime

from google.protobuf import duration_pb2, json_format, timestamp_pb2
from google.rpc import status_pb2

from mtw.common.v1 import job_event_pb2, job_failure_pb2
from mtw.evaluation.v1 import (
    evaluation_event_pb2,
    evaluation_pb2,
    evaluation_service_pb2,
    example_result_pb2,
    recommendation_pb2,
)
from mtw.training.v1 import hyperparameters_pb2
from services.common.jobs import JobFailure
from services.common.task import Task
from services.eval_svc.app import Comparison
from services.eval_svc.domain import recommend
from services.eval_svc.domain.model import (
    EvalConfig,
    Evaluation,
    EvaluationRequest,
    Event,
    ExampleResult,
    ModelRef,
    Recommendation,
    Results,
)

_CODES = {"CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
          "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
          "ABORTED": 10, "UNAVAILABLE": 14, "INTERNAL": 13}
_CONFIG_FIELDS = tuple(EvalConfig.__dataclass_fields__)


def _ts(value: datetime | None) -> timestamp_pb2.Timestamp | None:
    if value is None:
        return None
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(value)
    return out


def _duration(seconds: float | None) -> duration_pb2.Duration | None:
    if seconds is None or not math.isfinite(seconds):
        return None
    out = duration_pb2.Duration()
    out.FromTimedelta(__import__("datetime").timedelta(seconds=max(0.0, seconds)))
    return out


def request_from_proto(p: evaluation_pb2.Evaluation) -> EvaluationRequest:
    model = ModelRef(**{p.WhichOneof("model"): getattr(p, p.WhichOneof("model"))}) if p.WhichOneof("model") \
        else ModelRef()
    defaults = EvalConfig()
    set_fields = frozenset(f.name for f, _ in p.config.ListFields())
    config = EvalConfig(**{f: (getattr(p.config, f) if f in set_fields else getattr(defaults, f))
                           for f in _CONFIG_FIELDS})
    return EvaluationRequest(model=model, dataset_version=p.dataset_version, split=p.split, metrics=tuple(p.metrics),
                             config=config, config_set=set_fields, baseline_evaluation=p.baseline_evaluation,
                             display_name=p.display_name, labels=dict(p.labels))


def failure_to_proto(f: JobFailure) -> job_failure_pb2.JobFailure:
    return job_failure_pb2.JobFailure(error=status_pb2.Status(code=_CODES.get(f.code, 13), message=f.message),
                                      category=f.category.value, hint=f.hint)


def summary(task: Task, results: Results, baseline: Results | None) -> str:
    """One sentence for a person, e.g. "Macro F1 0.91 (base model 0.64); most mistakes take
    'billing' for 'refund'."."""
    name, _higher = recommend.main_metric(task)
    if task is Task.SEQUENCE_CLASSIFICATION:
        accuracy = results.value("accuracy")
        head = f"Accuracy {100 * accuracy:.0f} %" if accuracy is not None else f"{name} {results.value(name)}"
        if baseline is not None and baseline.value("accuracy") is not None:
            head += f" (base model {100 * baseline.value('accuracy'):.0f} %)"
        labels, counts, n = results.confusion_labels, results.confusion_counts, len(results.confusion_labels)
        cells = [(counts[i * n + j], labels[i], labels[j]) for i in range(n) for j in range(n) if i != j]
        worst = max(cells, default=(0, "", ""))
        if worst[0]:
            head += f"; most mistakes take '{worst[1]}' for '{worst[2]}'"
        return head + "."
    perplexity = results.value("perplexity")
    head = f"Perplexity {perplexity:.2f}" if perplexity is not None else f"{results.example_count} examples scored"
    if baseline is not None and baseline.value("perplexity") is not None and perplexity is not None:
        head += f" (base model {baseline.value('perplexity'):.2f})"
    rouge = results.value("rouge_l")
    if rouge is not None:
        head += f"; ROUGE-L {rouge:.2f}"
    return head + "."


def results_to_proto(task: Task, r: Results, baseline: Results | None) -> evaluation_pb2.EvaluationResults:
    out = evaluation_pb2.EvaluationResults(summary=summary(task, r, baseline), example_count=r.example_count,
                                           truncated_examples=r.truncated_examples,
                                           examples_per_second=r.examples_per_second,
                                           preparation_seconds=r.preparation_seconds)
    for m in r.metrics:
        metric = out.metrics.add(name=m.name, value=m.value, higher_is_better=m.higher_is_better)
        if m.lower is not None and m.upper is not None and math.isfinite(m.lower):
            metric.confidence_interval.CopyFrom(evaluation_pb2.ConfidenceInterval(lower=m.lower, upper=m.upper,
                                                                                  level=0.95))
        base = baseline.value(m.name) if baseline is not None else None
        if base is not None:
            metric.baseline_value = base
    for c in r.class_scores:
        out.class_scores.add(label=c.label, precision=c.precision, recall=c.recall, f1=c.f1, support=c.support)
    if r.confusion_labels:
        out.confusion_matrix.labels.extend(r.confusion_labels)
        out.confusion_matrix.counts.extend(r.confusion_counts)
    if r.expected_calibration_error is not None:
        out.calibration.expected_calibration_error = r.expected_calibration_error
        out.calibration.max_calibration_error = r.max_calibration_error or 0.0
        for b in r.reliability:
            out.calibration.bins.add(lower=b.lower, upper=b.upper, mean_confidence=b.mean_confidence,
                                     accuracy=b.accuracy, count=b.count)
    for s in r.samples:
        out.samples.add(row=s.row, prompt=s.prompt, generated=s.generated, reference=s.reference)
    return out


def evaluation_to_proto(e: Evaluation, baseline: Results | None = None) -> evaluation_pb2.Evaluation:
    p = evaluation_pb2.Evaluation(
        name=e.name, display_name=e.display_name, resolved_model_version=e.resolved_model_version,
        dataset_version=e.dataset_version, split=e.split, metrics=list(e.metrics),
        baseline_evaluation=e.baseline_evaluation, task=e.task.value, created_by_tuning_job=e.created_by_tuning_job,
        state=e.state.value, recommendation_count=e.recommendation_count, labels=e.labels, etag=e.etag,
        creator=e.creator)
    setattr(p, e.model.kind, e.model.name)
    p.config.CopyFrom(evaluation_pb2.EvaluationConfig(**{f: getattr(e.config, f) for f in _CONFIG_FIELDS}))
    progress = e.progress
    p.progress.CopyFrom(evaluation_pb2.EvaluationProgress(
        examples_done=progress.examples_done, total_examples=progress.total_examples,
        fraction_done=1.0 if e.state.name == "SUCCEEDED" else progress.fraction_done, message=progress.message))
    if (eta := _duration(progress.eta_seconds)) is not None and not e.state.is_terminal:
        p.progress.eta.CopyFrom(eta)
    if e.results is not None:
        p.results.CopyFrom(results_to_proto(e.task, e.results, baseline))
    if e.failure is not None:
        p.failure.CopyFrom(failure_to_proto(e.failure))
    for field, value in (("create_time", e.create_time), ("start_time", e.start_time), ("end_time", e.end_time),
                         ("update_time", e.update_time)):
        if (ts := _ts(value)) is not None:
            getattr(p, field).CopyFrom(ts)
    if e.start_time is not None:
        end = e.end_time or datetime.now(e.start_time.tzinfo)
        p.duration.CopyFrom(_duration((end - e.start_time).total_seconds()))
    return p


def example_to_proto(parent: str, x: ExampleResult) -> example_result_pb2.ExampleResult:
    p = example_result_pb2.ExampleResult(
        name=f"{parent}/exampleResults/{x.row}", row=x.row, input=x.input, prediction=x.prediction,
        reference=x.reference, label_probabilities=x.label_probabilities, metrics=x.metrics, truncated=x.truncated)
    if x.score is not None:
        p.score = x.score
    if x.correct is not None:
        p.correct = x.correct
    if x.loss is not None:
        p.loss = x.loss
    return p


def recommendation_to_proto(evaluation: Evaluation, r: Recommendation) -> recommendation_pb2.Recommendation:
    p = recommendation_pb2.Recommendation(
        name=f"{evaluation.name}/recommendations/{r.recommendation_id}", code=r.code, severity=int(r.severity),
        title=r.title, explanation=r.explanation, applicable=r.applicable,
        applied_tuning_jobs=list(r.applied_tuning_jobs))
    for ev in r.evidence:
        item = p.evidence.add(description=ev.description, metric=ev.metric, example_rows=list(ev.example_rows))
        if ev.value is not None:
            item.value = ev.value
        if ev.threshold is not None:
            item.threshold = ev.threshold
    if r.changes is not None:
        p.changes.CopyFrom(recommendation_pb2.ParameterChanges(
            hyperparameters=json_format.ParseDict(r.changes.hyperparameters, hyperparameters_pb2.Hyperparameters()),
            method=r.changes.method, base_model=r.changes.base_model, start_from=r.changes.start_from.value))
    if (ts := _ts(r.create_time)) is not None:
        p.create_time.CopyFrom(ts)
    return p


def event_to_proto(name: str, e: Event) -> evaluation_event_pb2.EvaluationEvent:
    out = evaluation_event_pb2.EvaluationEvent(evaluation=name, sequence_number=e.sequence, time=_ts(e.time))
    body = e.payload
    if e.kind == "state":
        change = job_event_pb2.JobStateChange(
            previous_state=_state_value(body.get("previous_state")), state=_state_value(body.get("state")),
            message=str(body.get("message") or ""))
        if body.get("failure"):
            from services.eval_svc.store import failure_json

            change.failure.CopyFrom(failure_to_proto(failure_json.validate_python(body["failure"])))
        out.state_change.CopyFrom(change)
    elif e.kind == "progress":
        done, total = int(body.get("examples_done") or 0), int(body.get("total_examples") or 0)
        progress = evaluation_pb2.EvaluationProgress(examples_done=done, total_examples=total,
                                                     fraction_done=min(1.0, done / total) if total else 0.0,
                                                     message=str(body.get("message") or ""))
        if (eta := _duration(body.get("eta_seconds"))) is not None:
            progress.eta.CopyFrom(eta)
        out.progress.CopyFrom(evaluation_event_pb2.EvaluationProgressUpdate(
            progress=progress, running_metrics={k: float(v) for k, v in (body.get("running_metrics") or {}).items()}))
    else:
        level = {"DEBUG": 1, "INFO": 2, "WARNING": 3, "ERROR": 4}.get(str(body.get("level", "INFO")).upper(), 2)
        out.log.CopyFrom(job_event_pb2.LogMessage(level=level, message=str(body.get("message") or ""),
                                                  source=str(body.get("source") or "")))
    return out


def _state_value(value) -> int:
    from services.eval_svc.store import parse_state

    return parse_state(value).value if value else 0


def comparison_to_proto(c: Comparison) -> evaluation_service_pb2.CompareEvaluationsResponse:
    out = evaluation_service_pb2.CompareEvaluationsResponse(evaluations=c.evaluations, fixed_counts=c.fixed_counts,
                                                            regressed_counts=c.regressed_counts,
                                                            next_page_token=c.next_page_token)
    for name, higher, values, deltas, significant in c.metrics:
        out.metrics.add(name=name, higher_is_better=higher, values=values, deltas=deltas, significant=significant)
    for x in c.changed:
        out.changed_examples.add(row=x["row"], input=x["input"], reference=x["reference"],
                                 predictions=x["predictions"], correct=x["correct"], scores=x["scores"],
                                 changes=x["changes"])
    return out
