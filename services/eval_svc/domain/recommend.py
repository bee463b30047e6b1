"""Rules that read an evaluation — its metrics, the tuning job's training curves and the
dataset's quality report — and say in plain words what they see and what to change.

Each rule is a function of :class:`Facts` returning a Recommendation or None; the
changes are concrete values computed from the job's resolved hyperparameters, so
ApplyRecommendation only has to copy them onto the new job.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.common.task import Task
from services.eval_svc.domain.model import (
    Evidence,
    ParameterChanges,
    Recommendation,
    Results,
    Severity,
    StartFrom,
)

LORA = 1  # mtw.training.v1.TuningMethod

# Thresholds, named so explanations and tests quote the same numbers.
OVERFIT_RISE = 0.05  # validation loss this far above its best, after the best
STILL_FALLING = 0.05  # training loss still dropping this much between the last two fifths
IMBALANCE_RATIO = 3.0  # largest class / smallest class in the training split
MIN_ROWS_PER_CLASS = 50
MIN_GENERATION_ROWS = 200
LEAKAGE_ROWS = 1
DUPLICATE_SHARE = 0.05
CONFUSION_SHARE = 0.2
ECE_LIMIT = 0.15
TRUNCATED_SHARE = 0.2
NO_GAIN_MARGIN = 0.01


@dataclass(frozen=True)
class QualityFacts:
    """What the rules read of a dataset version's quality report."""

    row_count: int = 0
    exact_duplicate_rows: int = 0
    near_duplicate_rows: int = 0
    cross_split_duplicate_rows: int = 0
    label_counts: tuple[tuple[str, int], ...] = ()  # label → rows in the whole version
    train_label_counts: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Facts:
    task: Task
    results: Results
    baseline: Results | None = None
    tuned: bool = False  # the evaluated model was made by a tuning job (changes can apply)
    method: int = LORA
    hyperparameters: dict[str, Any] = field(default_factory=dict)  # resolved, proto field names
    train_losses: tuple[tuple[int, float], ...] = ()  # (step, loss)
    eval_losses: tuple[tuple[int, float], ...] = ()
    train_rows: int = 0
    quality: QualityFacts = field(default_factory=QualityFacts)


def main_metric(task: Task) -> tuple[str, bool]:
    """(metric name, higher is better) that decides "better" for a task."""
    return ("macro_f1", True) if task is Task.SEQUENCE_CLASSIFICATION else ("loss", False)


def _hp(facts: Facts, name: str, default: Any = None) -> Any:
    value = facts.hyperparameters.get(name)
    return default if value in (None, "", 0) else value


def _longer(facts: Facts, factor: float) -> dict[str, Any]:
    """Train `factor` times as long, in whichever unit the job used."""
    if _hp(facts, "max_steps"):
        return {"max_steps": max(1, math.ceil(int(_hp(facts, "max_steps")) * factor))}
    return {"epochs": max(1, min(100, math.ceil(int(_hp(facts, "epochs", 1)) * factor)))}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else math.nan


# --------------------------------------------------------------------------- rules


def overfitting(facts: Facts) -> Recommendation | None:
    evals = [(s, v) for s, v in facts.eval_losses if v is not None and math.isfinite(v)]
    if len(evals) < 2:
        return None
    best_step, best = min(evals, key=lambda e: e[1])
    last_step, last = evals[-1]
    if last_step == best_step or last < best * (1 + OVERFIT_RISE):
        return None
    later_train = [v for s, v in facts.train_losses if s > best_step]
    earlier_train = [v for s, v in facts.train_losses if s <= best_step]
    if later_train and earlier_train and _mean(later_train[-3:]) >= _mean(earlier_train[-3:]):
        return None  # training loss rose too: not the over-fitting pattern
    changes: dict[str, Any] = {}
    total = int(_hp(facts, "max_steps", 0))
    if total:
        changes["max_steps"] = max(1, best_step)
    else:
        epochs = int(_hp(facts, "epochs", 1))
        share = best_step / max(last_step, 1)
        changes["epochs"] = max(1, min(epochs - 1, round(epochs * share))) if epochs > 1 else 1
    changes["learning_rate"] = float(_hp(facts, "learning_rate", 2e-4)) / 2
    changes["early_stopping_patience"] = 2
    if facts.method == LORA:
        dropout = float((facts.hyperparameters.get("lora") or {}).get("dropout") or 0.0)
        changes["lora"] = {"dropout": round(min(0.5, dropout + 0.1), 3)}
    else:
        changes["weight_decay"] = max(0.01, float(_hp(facts, "weight_decay", 0.0)))
    return Recommendation(
        code="OVERFITTING", severity=Severity.WARNING, title="The model memorised the training data",
        explanation=(
            f"The validation loss was lowest at step {best_step} ({best:.3f}) and then rose to {last:.3f} while the "
            "training loss kept falling: after that point the model learnt the training examples by heart instead of "
            "what generalises. Train again from the base model for fewer steps with a lower learning rate and more "
            "regularisation (dropout), and let early stopping end the run when the validation loss stops improving."),
        evidence=(Evidence(f"Validation loss rose from {best:.3f} at step {best_step} to {last:.3f} at step "
                           f"{last_step}", "eval_loss", last, best * (1 + OVERFIT_RISE)),),
        changes=ParameterChanges(hyperparameters=changes, start_from=StartFrom.BASE), applicable=facts.tuned)


def underfitting(facts: Facts) -> Recommendation | None:
    losses = [v for _, v in facts.train_losses if v is not None and math.isfinite(v)]
    if len(losses) < 10:
        return None
    fifth = max(2, len(losses) // 5)
    before, last = _mean(losses[-2 * fifth:-fifth]), _mean(losses[-fifth:])
    if not before or (before - last) / before < STILL_FALLING:
        return None
    evals = [v for _, v in facts.eval_losses if v is not None]
    if len(evals) >= 2 and evals[-1] > min(evals) * (1 + OVERFIT_RISE):
        return None  # that is over-fitting, not under-fitting
    changes = _longer(facts, 2.0)
    if facts.method == LORA:
        rank = int((facts.hyperparameters.get("lora") or {}).get("rank") or 8)
        changes["lora"] = {"rank": min(256, rank * 2)}
    return Recommendation(
        code="UNDERFITTING", severity=Severity.WARNING, title="The model had not finished learning",
        explanation=(
            f"The training loss was still falling when the run ended ({before:.3f} → {last:.3f} over the last "
            "fifth of the steps): the model can learn more from this data. Continue training the tuned model for "
            "longer" + (" with a larger adapter (LoRA rank), which lets it learn more detail." if facts.method == LORA
                        else ".")),
        evidence=(Evidence(f"Training loss fell {100 * (before - last) / before:.0f} % over the last fifth of the run",
                           "train_loss", last, before * (1 - STILL_FALLING)),),
        changes=ParameterChanges(hyperparameters=changes, start_from=StartFrom.TUNED_WEIGHTS), applicable=facts.tuned)


def no_improvement(facts: Facts) -> Recommendation | None:
    if facts.baseline is None or not facts.tuned:
        return None
    name, higher = main_metric(facts.task)
    tuned, base = facts.results.value(name), facts.baseline.value(name)
    if tuned is None or base is None:
        return None
    gain = (tuned - base) if higher else (base - tuned)
    scale = abs(base) if not higher else 1.0
    if gain > NO_GAIN_MARGIN * max(scale, 1e-9):
        return None
    changes = _longer(facts, 2.0)
    changes["learning_rate"] = min(1.0, float(_hp(facts, "learning_rate", 2e-4)) * 2)
    return Recommendation(
        code="NO_IMPROVEMENT_OVER_BASE", severity=Severity.CRITICAL, title="Tuning did not beat the base model",
        explanation=(
            f"On the same examples the tuned model scores {name} {tuned:.3f} and the base model {base:.3f}: the "
            "tuning did not help. Usually the run was too short or the learning rate too low for the model to "
            "move; train again from the base model for longer with a higher learning rate. If that does not help, "
            "check that the labels or answers in the data are right."),
        evidence=(Evidence(f"{name}: tuned {tuned:.3f}, base {base:.3f}", name, tuned, base),),
        changes=ParameterChanges(hyperparameters=changes, start_from=StartFrom.BASE), applicable=facts.tuned)


def class_imbalance(facts: Facts) -> Recommendation | None:
    if facts.task is not Task.SEQUENCE_CLASSIFICATION:
        return None
    counts = [(label, n) for label, n in (facts.quality.train_label_counts or facts.quality.label_counts) if n >= 0]
    if len(counts) < 2:
        return None
    largest = max(n for _, n in counts)
    scarce = sorted((label for label, n in counts if n * IMBALANCE_RATIO <= largest), key=str)
    if not scarce:
        return None
    recall = {c.label: c.recall for c in facts.results.class_scores}
    named = ", ".join(f"'{label}' ({dict(counts)[label]} rows, recall {recall.get(label, 0):.2f})" for label in scarce)
    return Recommendation(
        code="CLASS_IMBALANCE", severity=Severity.WARNING, title="Some classes have too few examples",
        explanation=(
            f"The largest class has {largest} training rows and these have at most a third of that: {named}. A model "
            "sees the rare classes so seldom that it learns to guess the common ones. Add examples of the named "
            "classes (or drop rows of the largest one) and upload a new dataset version."),
        evidence=tuple(Evidence(f"'{label}' has {dict(counts)[label]} training rows against {largest}", "support",
                                float(dict(counts)[label]), largest / IMBALANCE_RATIO) for label in scarce),
        changes=None, applicable=False)


def too_little_data(facts: Facts) -> Recommendation | None:
    if not facts.train_rows:
        return None
    if facts.task is Task.SEQUENCE_CLASSIFICATION:
        classes = max(1, len(facts.results.class_scores))
        needed = MIN_ROWS_PER_CLASS * classes
    else:
        needed = MIN_GENERATION_ROWS
    if facts.train_rows >= needed:
        return None
    return Recommendation(
        code="TOO_LITTLE_DATA", severity=Severity.WARNING, title="There is too little training data",
        explanation=(
            f"The model was trained on {facts.train_rows} rows; for this task aim for at least {needed}. With so few "
            "examples results vary a lot from run to run and the model cannot learn the general pattern. Collect "
            "more examples and upload a new dataset version."),
        evidence=(Evidence(f"{facts.train_rows} training rows", "train_rows", float(facts.train_rows), float(needed)),),
        changes=None, applicable=False)


def leakage(facts: Facts) -> Recommendation | None:
    q = facts.quality
    if q.cross_split_duplicate_rows >= LEAKAGE_ROWS:
        return Recommendation(
            code="DATA_LEAKAGE", severity=Severity.WARNING, title="Some test rows also appear in training",
            explanation=(
                f"{q.cross_split_duplicate_rows} rows occur in more than one split, so the model was tested on "
                "examples it trained on and these results look better than they will be on new data. Remove the "
                "duplicates (or split by a group column) and upload a new dataset version."),
            evidence=(Evidence(f"{q.cross_split_duplicate_rows} rows shared between splits",
                               "cross_split_duplicate_rows", float(q.cross_split_duplicate_rows),
                               float(LEAKAGE_ROWS)),),
            changes=None, applicable=False)
    duplicates = q.exact_duplicate_rows + q.near_duplicate_rows
    if q.row_count and duplicates / q.row_count >= DUPLICATE_SHARE:
        return Recommendation(
            code="DUPLICATE_ROWS", severity=Severity.INFO, title="The data repeats itself",
            explanation=(
                f"{duplicates} of {q.row_count} rows are duplicates or near-duplicates. Repeated rows weigh more in "
                "training than they should; remove them and upload a new dataset version."),
            evidence=(Evidence(f"{duplicates} duplicate rows of {q.row_count}", "duplicate_rows", float(duplicates),
                               DUPLICATE_SHARE * q.row_count),),
            changes=None, applicable=False)
    return None


def confused_classes(facts: Facts) -> Recommendation | None:
    r = facts.results
    labels, counts = r.confusion_labels, r.confusion_counts
    if facts.task is not Task.SEQUENCE_CLASSIFICATION or len(labels) < 2:
        return None
    n = len(labels)
    worst = None
    for i in range(n):
        support = sum(counts[i * n:(i + 1) * n])
        for j in range(n):
            if i != j and support and counts[i * n + j] / support >= CONFUSION_SHARE:
                share = counts[i * n + j] / support
                if worst is None or share > worst[0]:
                    worst = (share, labels[i], labels[j], counts[i * n + j])
    if worst is None:
        return None
    share, reference, predicted, count = worst
    return Recommendation(
        code="CONFUSED_CLASSES", severity=Severity.INFO, title=f"'{reference}' is often taken for '{predicted}'",
        explanation=(
            f"{count} examples of '{reference}' ({100 * share:.0f} %) were predicted as '{predicted}'. Read them "
            f"(filter: reference=\"{reference}\" AND prediction=\"{predicted}\"): if the two classes overlap, merge "
            "them or describe the difference with more, clearer examples."),
        evidence=(Evidence(f"{count} of the '{reference}' examples predicted as '{predicted}'", "confusion", share,
                           CONFUSION_SHARE),),
        changes=None, applicable=False)


def poor_calibration(facts: Facts) -> Recommendation | None:
    ece = facts.results.expected_calibration_error
    if ece is None or ece < ECE_LIMIT or facts.task is not Task.SEQUENCE_CLASSIFICATION:
        return None
    return Recommendation(
        code="POOR_CALIBRATION", severity=Severity.INFO, title="The model's confidence is not to be trusted",
        explanation=(
            f"On average the model's confidence differs from how often it is right by {100 * ece:.0f} points. Do "
            "not use its probabilities as thresholds without checking them; more data and early stopping usually "
            "bring them closer."),
        evidence=(Evidence(f"Expected calibration error {ece:.3f}", "ece", ece, ECE_LIMIT),),
        changes=None, applicable=False)


def truncated_inputs(facts: Facts) -> Recommendation | None:
    r = facts.results
    if not r.example_count or r.truncated_examples / r.example_count < TRUNCATED_SHARE:
        return None
    current = int(_hp(facts, "max_seq_length", 128))
    return Recommendation(
        code="TRUNCATED_INPUTS", severity=Severity.WARNING, title="Inputs were cut short",
        explanation=(
            f"{r.truncated_examples} of {r.example_count} examples were longer than {current} tokens and were cut, "
            "so the model never saw their end. Train with a longer maximum sequence length (it needs more memory)."),
        evidence=(Evidence(f"{r.truncated_examples} of {r.example_count} examples truncated", "truncated_examples",
                           float(r.truncated_examples), TRUNCATED_SHARE * r.example_count),),
        changes=ParameterChanges(hyperparameters={"max_seq_length": min(4096, current * 2)},
                                 start_from=StartFrom.BASE), applicable=facts.tuned)


RULES: tuple[Callable[[Facts], Recommendation | None], ...] = (
    no_improvement, overfitting, underfitting, class_imbalance, too_little_data, leakage, truncated_inputs,
    confused_classes, poor_calibration,
)


def recommend(facts: Facts) -> list[Recommendation]:
    """Every rule's finding, most severe first."""
    found = [r for rule in RULES if (r := rule(facts)) is not None]
    return sorted(found, key=lambda r: (-int(r.severity), r.code))
