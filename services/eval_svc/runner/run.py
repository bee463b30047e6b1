"""One evaluation run on Ray: ``run_evaluation`` (called in the runner actor) starts one
scoring task per configured worker, each scoring its shard of the split in batches and
writing example results as it goes; the actor then turns the workers' compact
per-example arrays into the aggregate metrics and records the outcome."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from services.common.errors import FailedPrecondition, MtwError
from services.common.jobs import FailureCategory, JobFailure
from services.common.task import Task
from services.common.telemetry import current_traceparent, flush_spans, worker_span
from services.eval_svc.domain import metrics as domain_metrics
from services.eval_svc.domain.model import ExampleResult, Results, RunSpec, Sample
from services.eval_svc.runner.data import DataError, read_rows, sample_indices

log = logging.getLogger(__name__)
PROGRESS_SECONDS = 1.0  # at most one progress event per worker per second


@dataclass
class ShardResult:
    """What one worker hands back: a few numbers per example, never the texts of the split."""

    count: int = 0
    truncated: int = 0
    reference_index: list[int] = field(default_factory=list)
    probabilities: list[np.ndarray] = field(default_factory=list)
    loss_sums: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    predictions: list[str] = field(default_factory=list)  # only when text metrics are asked for
    references: list[str] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    preparation_seconds: float = 0.0
    scoring_seconds: float = 0.0


def load_model(spec: RunSpec, s3, cache_dir: str, cache_bytes: int = 0):
    """The spec's model, ready for inference (fetched from object storage when it lives there)."""
    import torch

    from services.common import modelio

    cache_bytes = cache_bytes or modelio.DEFAULT_CACHE_BYTES

    # An adapter's output also holds a merged copy (`merged/`); the adapter is all we need.
    exclude = ("merged/",) if spec.base_source else ()
    folder = modelio.fetch_folder(s3, spec.model_uri, Path(cache_dir), max_cache_bytes=cache_bytes,
                                  exclude=exclude) if spec.model_uri \
        else Path(spec.model_path)
    torch.manual_seed(spec.init_seed)  # a base model's untrained head starts the same every run
    return modelio.load_for_inference(folder, spec.task, base_source=spec.base_source or None,
                                      label_names=spec.label_names or None)


def scorer_for(spec: RunSpec, loaded, generate_for: Callable[[int], bool]):
    from services.eval_svc.runner.inference import ClassificationScorer, GenerationScorer

    max_len = min(spec.max_seq_length or loaded.context_length, loaded.context_length)
    if spec.task is Task.SEQUENCE_CLASSIFICATION:
        return ClassificationScorer(loaded, max_len, spec.config.batch_size)
    text = [m for m in domain_metrics.TEXT_METRICS if m in spec.metrics]
    return GenerationScorer(loaded, spec.task, max_len, spec.config.batch_size,
                            max_new_tokens=spec.config.max_new_tokens, temperature=spec.config.temperature,
                            generate_for=generate_for, text_metrics=text, seed=spec.config.seed)


def score_shard(spec: RunSpec, rank: int, world: int, sink_factory, s3, cache_dir: str, total: int,
                cache_bytes: int = 0, trace: tuple[str, str] = ("", "")) -> ShardResult:
    """A Ray task: score rows ``rank::world`` of the split, store their results, report progress.
    ``trace``: (traceparent, OTLP endpoint) of the run, which the shard's span joins."""
    traceparent, otlp_endpoint = trace
    try:
        with worker_span("evaluation-worker", "evaluation.score_shard", traceparent, otlp_endpoint,
                         {"mtw.evaluation": spec.evaluation_name, "rank": rank, "world": world}):
            return _score_shard(spec, rank, world, sink_factory, s3, cache_dir, total, cache_bytes)
    finally:
        flush_spans()


def _score_shard(spec: RunSpec, rank: int, world: int, sink_factory, s3, cache_dir: str, total: int,
                 cache_bytes: int) -> ShardResult:
    import torch

    from services.common.worker_storage import fs_path

    torch.set_num_threads(max(1, int(os.environ.get("MTW_EVAL_THREADS", "1"))))
    started = time.perf_counter()
    sink = sink_factory()
    try:
        loaded = load_model(spec, s3, cache_dir, cache_bytes)
        samples_left = [math.ceil(spec.config.sample_count / world)]

        def generate_for(_row: int) -> bool:
            if samples_left[0] > 0:
                samples_left[0] -= 1
                return True
            return False

        scorer = scorer_for(spec, loaded, generate_for)
        sample = sample_indices(spec.split_rows, spec.config.max_examples, spec.config.seed)
        rows = read_rows(s3.filesystem(), fs_path(spec.split_uri), spec.task, rank=rank, world=world, sample=sample)
        out = ShardResult(preparation_seconds=time.perf_counter() - started)
        keep_texts = any(m in spec.metrics for m in domain_metrics.TEXT_METRICS)
        pending = {"examples": 0, "correct": 0, "loss_sum": 0.0, "tokens": 0}
        last_report = time.monotonic()
        scoring = 0.0
        for batch in rows:
            t0 = time.perf_counter()
            scored = scorer.score(batch)
            scoring += time.perf_counter() - t0
            sink.examples([ExampleResult(row=s.row, input=s.input, prediction=s.prediction, reference=s.reference,
                                         score=s.score, correct=s.correct, loss=s.loss,
                                         label_probabilities=s.label_probabilities, metrics=s.metrics,
                                         truncated=s.truncated) for s in scored])
            for s in scored:
                out.count += 1
                out.truncated += int(s.truncated)
                if spec.task is Task.SEQUENCE_CLASSIFICATION:
                    out.reference_index.append(s.reference_index)
                    out.probabilities.append(s.probabilities)
                    pending["correct"] += int(bool(s.correct))
                    pending["loss_sum"] += s.loss or 0.0
                else:
                    out.loss_sums.append(s.loss_sum)
                    out.tokens.append(s.tokens)
                    pending["loss_sum"] += s.loss_sum
                    pending["tokens"] += s.tokens
                    if keep_texts:
                        out.predictions.append(s.prediction)
                        out.references.append(s.reference)
                    if s.prediction and len(out.samples) < spec.config.sample_count:
                        out.samples.append(Sample(s.row, s.input, s.prediction, s.reference))
                pending["examples"] += 1
            if time.monotonic() - last_report >= PROGRESS_SECONDS:
                sink.progress(**pending, total_examples=total)
                pending = dict.fromkeys(pending, 0)
                last_report = time.monotonic()
        if pending["examples"]:
            sink.progress(**pending, total_examples=total)
        out.scoring_seconds = scoring
        return out
    finally:
        sink.close()


def aggregate(spec: RunSpec, shards: list[ShardResult]) -> Results:
    """The evaluation's results from every worker's arrays."""
    count = sum(s.count for s in shards)
    if not count:
        raise DataError("the split has no rows to evaluate")
    config = spec.config
    truncated = sum(s.truncated for s in shards)
    scoring = max(s.scoring_seconds for s in shards) or 1e-9
    timing = {"examples_per_second": count / scoring,
              "preparation_seconds": max(s.preparation_seconds for s in shards)}
    if spec.task is Task.SEQUENCE_CLASSIFICATION:
        references = np.concatenate([np.asarray(s.reference_index, dtype=np.int64) for s in shards])
        probabilities = np.vstack([np.stack(s.probabilities) for s in shards if s.probabilities])
        report = domain_metrics.classification(
            references, probabilities, spec.label_names, spec.metrics, bins=config.calibration_bins,
            resamples=config.bootstrap_resamples, seed=config.seed)
        return Results(example_count=count, metrics=report.metrics, class_scores=report.class_scores,
                       confusion_labels=tuple(spec.label_names), confusion_counts=report.confusion,
                       expected_calibration_error=report.expected_calibration_error,
                       max_calibration_error=report.max_calibration_error, reliability=report.bins,
                       truncated_examples=truncated, **timing)
    report = domain_metrics.generation(
        np.concatenate([np.asarray(s.loss_sums) for s in shards]),
        np.concatenate([np.asarray(s.tokens) for s in shards]), spec.metrics,
        predictions=[p for s in shards for p in s.predictions], references=[r for s in shards for r in s.references],
        resamples=config.bootstrap_resamples, seed=config.seed)
    samples = sorted((x for s in shards for x in s.samples), key=lambda x: x.row)[:config.sample_count]
    return Results(example_count=count, metrics=report.metrics, samples=tuple(samples), truncated_examples=truncated,
                   **timing)


def classify(error: BaseException) -> JobFailure:
    """A failure a person can act on."""
    if isinstance(error, DataError):
        return JobFailure(FailureCategory.BAD_DATA, f"the data could not be evaluated: {error}",
                       "Fix the row (or the dataset's columns) and upload a new version.", code="FAILED_PRECONDITION")
    if isinstance(error, (FailedPrecondition, OSError)):
        return JobFailure(FailureCategory.MODEL_ACCESS, f"the model could not be loaded: {error}",
                       "Check that the tuning job's output and its base model still exist.",
                       code="FAILED_PRECONDITION")
    if isinstance(error, MemoryError):
        return JobFailure(FailureCategory.OUT_OF_MEMORY, "the evaluation ran out of memory",
                       "Lower config.batch_size or config.max_seq_length.", code="RESOURCE_EXHAUSTED")
    if isinstance(error, MtwError):
        return JobFailure(FailureCategory.INTERNAL, error.message, code=error.code)
    return JobFailure(FailureCategory.INTERNAL, f"the evaluation failed: {type(error).__name__}: {error}",
                   "Try again; if it keeps failing, tell the operators.")


def unwrap(error: BaseException) -> BaseException:
    """A Ray task error → the exception the task raised."""
    for _ in range(5):
        cause = getattr(error, "cause", None)
        if type(error).__name__.startswith("RayTaskError") and isinstance(cause, BaseException):
            error = cause
            continue
        break
    return error


def run_evaluation(spec: RunSpec, *, sink_factory, s3, cache_dir: str, cache_bytes: int = 0,
                   runtime_env: dict | None = None, otlp_endpoint: str = "") -> str:
    """Score the split on ``spec.num_workers`` Ray tasks and record the outcome (blocking).
    With an ``otlp_endpoint``, the run and its shards export spans in the creating
    request's trace (``spec.traceparent``)."""
    try:
        with worker_span("evaluation-worker", "evaluation.run", spec.traceparent, otlp_endpoint,
                         {"mtw.evaluation": spec.evaluation_name, "mtw.run": spec.run_name}):
            return _run(spec, sink_factory, s3, cache_dir, cache_bytes, runtime_env, otlp_endpoint)
    finally:
        flush_spans()


def _run(spec: RunSpec, sink_factory, s3, cache_dir: str, cache_bytes: int, runtime_env: dict | None,
         otlp_endpoint: str) -> str:
    import ray

    sink = sink_factory()
    trace = (current_traceparent() if otlp_endpoint else "", otlp_endpoint)
    try:
        sample = sample_indices(spec.split_rows, spec.config.max_examples, spec.config.seed)
        total = len(sample) if sample is not None else spec.split_rows
        world = max(1, spec.num_workers)
        sink.log(f"scoring {total} examples of {spec.split_uri.rsplit('/', 1)[-1]} on {world} worker(s)")
        task = ray.remote(num_cpus=1, max_retries=0, runtime_env=runtime_env or {})(score_shard)
        refs = [task.remote(spec, rank, world, sink_factory, s3, cache_dir, total, cache_bytes, trace)
                for rank in range(world)]
        try:
            shards = ray.get(refs)
            results = aggregate(spec, shards)
        except Exception as exc:
            error = unwrap(exc)
            log.exception("evaluation %s failed", spec.evaluation_name)
            sink.fail(classify(error))
            return "failed"
        sink.succeed(results, f"scored {results.example_count} examples")
        return "succeeded"
    finally:
        sink.close()
