"""Share of generated answers equal to the reference after light normalisation
(lower case, punctuation and articles dropped, whitespace collapsed — as in SQuAD)."""

import re
import string

import datasets
import evaluate

_DESCRIPTION = "Exact match of normalised generated answers against references."
_INPUTS = """
Args:
    predictions: generated answers.
    references: expected answers.
    per_example: also return `scores`, 1.0 or 0.0 per example.
Returns:
    exact_match (a share in [0, 1]) and, with per_example, scores.
"""
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalise(text):
    text = text.lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


class MtwExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, per_example=False):
        scores = [float(normalise(p) == normalise(r)) for p, r in zip(predictions, references)]
        out = {"exact_match": sum(scores) / len(scores) if scores else 0.0}
        if per_example:
            out["scores"] = scores
        return out
