"""Which metrics exist for which task, and computing them with the service's own
`evaluate` modules (``services/eval_svc/metrics/``, loaded offline by path), plus 95 %
bootstrap intervals. Inputs are compact per-example arrays, never the raw split."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.common.errors import FieldViolation
from services.common.task import Task
from services.eval_svc.domain.model import ClassScore, MetricValue, ReliabilityBin

MODULES_DIR = Path(__file__).resolve().parents[1] / "metrics"

# name → higher is better
CLASSIFICATION_METRICS = {
    "accuracy": True, "macro_f1": True, "weighted_f1": True, "macro_precision": True, "macro_recall": True,
    "weighted_precision": True, "weighted_recall": True, "log_loss": False, "ece": False,
}
GENERATION_METRICS = {"loss": False, "perplexity": False, "exact_match": True, "rouge_l": True, "bleu": True}
TEXT_METRICS = ("exact_match", "rouge_l", "bleu")
AVAILABLE = {
    Task.SEQUENCE_CLASSIFICATION: tuple(CLASSIFICATION_METRICS),
    Task.CAUSAL_LM: tuple(GENERATION_METRICS),
    Task.CHAT_SFT: tuple(GENERATION_METRICS),
}
DEFAULTS = {
    Task.SEQUENCE_CLASSIFICATION: ("accuracy", "macro_f1", "weighted_f1", "macro_precision", "macro_recall",
                                   "log_loss", "ece"),
    Task.CAUSAL_LM: ("loss", "perplexity"),
    Task.CHAT_SFT: ("loss", "perplexity", "exact_match", "rouge_l", "bleu"),
}
# Metrics whose per-example values are kept in ExampleResult.metrics.
HIGHER_IS_BETTER = {**CLASSIFICATION_METRICS, **GENERATION_METRICS}


def resolve_metrics(task: Task, requested: Sequence[str], field: str = "evaluation.metrics"
                    ) -> tuple[tuple[str, ...], list[FieldViolation]]:
    """The task's defaults when none are asked for; violations for unknown names."""
    if not requested:
        return DEFAULTS[task], []
    allowed = AVAILABLE[task]
    bad = [FieldViolation(f"{field}[{i}]", f"unknown metric '{name}' for {task.name}; use one of "
                          + ", ".join(allowed)) for i, name in enumerate(requested) if name not in allowed]
    return tuple(dict.fromkeys(requested)), bad


@functools.cache
def module(name: str):
    """An `evaluate` module of this service by folder name (kept in memory: inputs are small)."""
    import evaluate

    return evaluate.load(str(MODULES_DIR / name), keep_in_memory=True)


# --------------------------------------------------------------------------- bootstrap


def _interval(samples: np.ndarray) -> tuple[float, float]:
    samples = samples[np.isfinite(samples)]
    if not len(samples):
        return math.nan, math.nan
    return float(np.quantile(samples, 0.025)), float(np.quantile(samples, 0.975))


def _resample_weights(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples × n) counts of how often each example is drawn."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=resamples).astype(np.float64)


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class ClassificationReport:
    metrics: tuple[MetricValue, ...]
    class_scores: tuple[ClassScore, ...]
    confusion: tuple[int, ...]
    expected_calibration_error: float
    max_calibration_error: float
    bins: tuple[ReliabilityBin, ...]


def classification(
    references: np.ndarray, probabilities: np.ndarray, label_names: Sequence[str], requested: Sequence[str], *,
    bins: int = 10, resamples: int = 1000, seed: int = 42,
) -> ClassificationReport:
    """Every classification metric from reference indices and class probabilities (n × C)."""
    references = np.asarray(references, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    classes = len(label_names)
    predictions = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, dtype=np.int64)
    report = module("mtw_classification").compute(predictions=predictions.tolist(),
                                                  references=references.tolist(), num_labels=classes)
    confidences = probabilities.max(axis=1) if len(probabilities) else np.zeros(0)
    reference_probabilities = probabilities[np.arange(len(references)), references] if len(references) else confidences
    correct = (predictions == references).astype(np.int32)
    calibration = module("mtw_calibration").compute(
        confidences=confidences.tolist(), correct=correct.tolist(),
        reference_probabilities=reference_probabilities.tolist(), bins=bins)
    values = {**{k: v for k, v in report.items() if isinstance(v, float)},
              "log_loss": calibration["log_loss"], "ece": calibration["expected_calibration_error"]}
    intervals = _classification_intervals(references, predictions, reference_probabilities, classes, resamples,
                                          seed) if resamples and len(references) > 1 else {}
    metrics = tuple(MetricValue(name, float(values[name]), CLASSIFICATION_METRICS[name], *intervals.get(name, (None, None)))
                    for name in requested)
    per = report["per_class"]
    scores = tuple(ClassScore(label, per["precision"][i], per["recall"][i], per["f1"][i], per["support"][i])
                   for i, label in enumerate(label_names))
    return ClassificationReport(
        metrics=metrics, class_scores=scores,
        confusion=tuple(int(c) for row in report["confusion_matrix"] for c in row),
        expected_calibration_error=calibration["expected_calibration_error"],
        max_calibration_error=calibration["max_calibration_error"],
        bins=tuple(ReliabilityBin(**b) for b in calibration["bins"]),
    )


def _classification_intervals(references, predictions, reference_probabilities, classes, resamples, seed):
    from services.eval_svc.metrics.mtw_classification.mtw_classification import (
        scores_from_confusion,
    )

    weights = _resample_weights(len(references), resamples, seed)
    cells = references * classes + predictions
    out: dict[str, list[float]] = {k: [] for k in ("accuracy", "macro_f1", "weighted_f1", "macro_precision",
                                                  "macro_recall", "weighted_precision", "weighted_recall")}
    for w in weights:
        matrix = np.bincount(cells, weights=w, minlength=classes * classes).reshape(classes, classes)
        scores = scores_from_confusion(matrix.round().astype(np.int64))
        for key, values in out.items():
            values.append(scores[key])
    intervals = {k: _interval(np.asarray(v)) for k, v in out.items()}
    log_losses = weights @ -np.log(np.clip(reference_probabilities, 1e-15, 1.0)) / len(references)
    intervals["log_loss"] = _interval(log_losses)
    return intervals


# --------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class GenerationReport:
    metrics: tuple[MetricValue, ...]


def generation(
    losses: np.ndarray, token_counts: np.ndarray, requested: Sequence[str], *,
    predictions: Sequence[str] = (), references: Sequence[str] = (), resamples: int = 1000, seed: int = 42,
) -> GenerationReport:
    """Loss/perplexity from per-example summed loss and token counts; text metrics from
    generated answers and references (when asked for)."""
    losses = np.asarray(losses, dtype=np.float64)
    token_counts = np.asarray(token_counts, dtype=np.float64)
    values: dict[str, float] = {}
    per_example: dict[str, np.ndarray] = {}
    if {"loss", "perplexity"} & set(requested):
        values.update(module("mtw_perplexity").compute(losses=losses.tolist(), token_counts=token_counts.tolist()))
    for name in TEXT_METRICS:
        if name in requested:
            result = module(f"mtw_{name}").compute(predictions=list(predictions), references=list(references),
                                                   per_example=True)
            values[name] = float(result[name])
            per_example[name] = np.asarray(result["scores"], dtype=np.float64)
    intervals: dict[str, tuple[float, float]] = {}
    if resamples and len(losses) > 1:
        weights = _resample_weights(len(losses), resamples, seed)
        if "loss" in values:
            with np.errstate(divide="ignore", invalid="ignore"):
                sampled = (weights @ losses) / (weights @ token_counts)
            intervals["loss"] = _interval(sampled)
            lo, hi = intervals["loss"]
            intervals["perplexity"] = (math.exp(min(lo, 50.0)), math.exp(min(hi, 50.0)))
        for name in ("exact_match", "rouge_l"):
            if name in per_example and len(per_example[name]) == len(losses):
                intervals[name] = _interval(weights @ per_example[name] / len(losses))
    metrics = tuple(MetricValue(name, float(values[name]), GENERATION_METRICS[name], *intervals.get(name, (None, None)))
                    for name in requested if name in values)
    return GenerationReport(metrics)


def text_scores(predictions: Sequence[str], references: Sequence[str], names: Sequence[str]) -> dict[str, list[float]]:
    """Per-example scores of the text metrics asked for (for ExampleResult.metrics)."""
    return {name: module(f"mtw_{name}").compute(predictions=list(predictions), references=list(references),
                                                per_example=True)["scores"]
            for name in TEXT_METRICS if name in names}
