"""ROUGE-L: F-measure of the longest common subsequence of words between a generated
answer and its reference, averaged over examples (words: lower-case letters and digits,
as `rouge_score` tokenises without stemming)."""

import re

import datasets
import evaluate

_DESCRIPTION = "Mean ROUGE-L F-measure of generated answers against references."
_INPUTS = """
Args:
    predictions: generated answers.
    references: expected answers.
    per_example: also return `scores`, the F-measure of each example.
Returns:
    rouge_l (mean F-measure in [0, 1]) and, with per_example, scores.
"""
_WORD = re.compile(r"[a-z0-9]+")


def tokens(text):
    return _WORD.findall(text.lower())


def lcs_length(a, b):
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(prediction, reference):
    p, r = tokens(prediction), tokens(reference)
    common = lcs_length(p, r)
    if not common:
        return 0.0
    precision, recall = common / len(p), common / len(r)
    return 2 * precision * recall / (precision + recall)


class MtwRougeL(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, per_example=False):
        scores = [rouge_l(p, r) for p, r in zip(predictions, references)]
        out = {"rouge_l": sum(scores) / len(scores) if scores else 0.0}
        if per_example:
            out["scores"] = scores
        return out
