"""Classification scores from predicted and reference class indices: accuracy,
macro/weighted precision, recall and F1, per-class scores and the confusion matrix.

Averages run over every class of the dataset (`num_labels`), so a class the model never
predicts counts with F1 0 — the same as scikit-learn's `labels=range(num_labels)`,
`zero_division=0`."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Accuracy, macro/weighted precision, recall and F1, per-class scores and the confusion matrix."
_INPUTS = """
Args:
    predictions: predicted class indices.
    references: reference class indices.
    num_labels: number of classes (default: the largest index seen + 1).
Returns:
    accuracy, macro_precision, macro_recall, macro_f1, weighted_precision, weighted_recall,
    weighted_f1, per_class {precision, recall, f1, support} (lists by class index),
    confusion_matrix (rows: reference, columns: predicted).
"""


def _safe_divide(numerator, denominator):
    out = np.zeros_like(numerator, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def scores_from_confusion(matrix):
    """The whole report from a confusion matrix (rows: reference, columns: predicted)."""
    matrix = np.asarray(matrix, dtype=np.int64)
    true_positive = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1).astype(np.float64)
    predicted = matrix.sum(axis=0).astype(np.float64)
    precision = _safe_divide(true_positive, predicted)
    recall = _safe_divide(true_positive, support)
    f1 = _safe_divide(2 * precision * recall, precision + recall)
    total = float(matrix.sum())
    weights = support / total if total else support
    return {
        "accuracy": float(true_positive.sum() / total) if total else 0.0,
        "macro_precision": float(precision.mean()) if len(precision) else 0.0,
        "macro_recall": float(recall.mean()) if len(recall) else 0.0,
        "macro_f1": float(f1.mean()) if len(f1) else 0.0,
        "weighted_precision": float((precision * weights).sum()),
        "weighted_recall": float((recall * weights).sum()),
        "weighted_f1": float((f1 * weights).sum()),
        "per_class": {
            "precision": precision.tolist(),
            "recall": recall.tolist(),
            "f1": f1.tolist(),
            "support": support.astype(np.int64).tolist(),
        },
        "confusion_matrix": matrix.tolist(),
    }


def confusion(predictions, references, num_labels):
    predictions = np.asarray(predictions, dtype=np.int64)
    references = np.asarray(references, dtype=np.int64)
    flat = np.bincount(references * num_labels + predictions, minlength=num_labels * num_labels)
    return flat.reshape(num_labels, num_labels)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _INPUTS)
class MtwClassification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, num_labels=None):
        predictions = np.asarray(predictions, dtype=np.int64)
        references = np.asarray(references, dtype=np.int64)
        if num_labels is None:
            num_labels = int(max(predictions.max(initial=-1), references.max(initial=-1)) + 1)
        return scores_from_confusion(confusion(predictions, references, num_labels))
