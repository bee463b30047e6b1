"""How well a classifier's confidence matches how often it is right: expected and
maximum calibration error over equal-width confidence bins, the reliability diagram,
and the log loss (mean negative log probability of the reference class)."""

import datasets
import evaluate
import numpy as np

_DESCRIPTION = "Expected calibration error, reliability bins and log loss."
_INPUTS = """
Args:
    confidences: probability of the predicted class, per example.
    correct: 1 when the prediction was right, else 0.
    reference_probabilities: probability the model gave the reference class.
    bins: number of equal-width confidence bins (default 10).
Returns:
    expected_calibration_error, max_calibration_error, log_loss and bins: a list of
    {lower, upper, mean_confidence, accuracy, count} (the last bin includes 1.0).
"""
_EPSILON = 1e-15  # log loss clips probabilities like scikit-learn


class MtwCalibration(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features(
                {
                    "confidences": datasets.Value("float64"),
                    "correct": datasets.Value("int32"),
                    "reference_probabilities": datasets.Value("float64"),
                }
            ),
        )

    def _compute(self, confidences, correct, reference_probabilities, bins=10):
        confidences = np.clip(np.asarray(confidences, dtype=np.float64), 0.0, 1.0)
        correct = np.asarray(correct, dtype=np.float64)
        reference = np.clip(np.asarray(reference_probabilities, dtype=np.float64), _EPSILON, 1.0)
        total = len(confidences)
        index = np.minimum((confidences * bins).astype(np.int64), bins - 1)
        counts = np.bincount(index, minlength=bins)
        confidence_sums = np.bincount(index, weights=confidences, minlength=bins)
        correct_sums = np.bincount(index, weights=correct, minlength=bins)
        out_bins = []
        ece = 0.0
        mce = 0.0
        for i in range(bins):
            count = int(counts[i])
            mean_confidence = confidence_sums[i] / count if count else 0.0
            accuracy = correct_sums[i] / count if count else 0.0
            if count:
                gap = abs(accuracy - mean_confidence)
                ece += count / total * gap
                mce = max(mce, gap)
            out_bins.append({"lower": i / bins, "upper": (i + 1) / bins, "mean_confidence": float(mean_confidence),
                             "accuracy": float(accuracy), "count": count})
        return {
            "expected_calibration_error": float(ece),
            "max_calibration_error": float(mce),
            "log_loss": float(-np.log(reference).mean()) if total else 0.0,
            "bins": out_bins,
        }
