"""BLEU-4 (Papineni et al. 2002): corpus-level modified n-gram precision with the
brevity penalty, one reference per answer; per-example scores use add-one smoothing of
the 2- to 4-gram precisions (Lin and Och 2004) so short answers do not all score 0."""

import collections
import math
import re

import datasets
import evaluate

_DESCRIPTION = "Corpus BLEU-4 of generated answers against references."
_INPUTS = """
Args:
    predictions: generated answers.
    references: expected answers.
    per_example: also return `scores`, smoothed sentence BLEU of each example.
Returns:
    bleu in [0, 1], precisions (1- to 4-gram), brevity_penalty, and with per_example scores.
"""
_TOKEN = re.compile(r"\w+|[^\w\s]")
MAX_ORDER = 4


def tokens(text):
    return _TOKEN.findall(text.lower())


def ngram_counts(words, n):
    return collections.Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def statistics(prediction, reference):
    """(matches per order, possible per order, prediction length, reference length)."""
    p, r = tokens(prediction), tokens(reference)
    matches, possible = [0] * MAX_ORDER, [0] * MAX_ORDER
    for n in range(1, MAX_ORDER + 1):
        pc, rc = ngram_counts(p, n), ngram_counts(r, n)
        matches[n - 1] = sum(min(c, rc[g]) for g, c in pc.items())
        possible[n - 1] = max(0, len(p) - n + 1)
    return matches, possible, len(p), len(r)


def score(matches, possible, prediction_length, reference_length, smooth=False):
    precisions = []
    for n in range(MAX_ORDER):
        if smooth and n > 0:
            precisions.append((matches[n] + 1) / (possible[n] + 1))
        else:
            precisions.append(matches[n] / possible[n] if possible[n] else 0.0)
    if min(precisions) > 0:
        geometric = math.exp(sum(math.log(p) for p in precisions) / MAX_ORDER)
    else:
        geometric = 0.0
    if prediction_length == 0:
        penalty = 0.0
    elif prediction_length > reference_length:
        penalty = 1.0
    else:
        penalty = math.exp(1 - reference_length / prediction_length)
    return geometric * penalty, precisions, penalty


class MtwBleu(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": datasets.Value("string"), "references": datasets.Value("string")}),
        )

    def _compute(self, predictions, references, per_example=False):
        total_matches, total_possible = [0] * MAX_ORDER, [0] * MAX_ORDER
        prediction_length = reference_length = 0
        scores = []
        for p, r in zip(predictions, references):
            matches, possible, pl, rl = statistics(p, r)
            for n in range(MAX_ORDER):
                total_matches[n] += matches[n]
                total_possible[n] += possible[n]
            prediction_length += pl
            reference_length += rl
            if per_example:
                scores.append(score(matches, possible, pl, rl, smooth=True)[0])
        bleu, precisions, penalty = score(total_matches, total_possible, prediction_length, reference_length)
        out = {"bleu": bleu, "precisions": precisions, "brevity_penalty": penalty}
        if per_example:
            out["scores"] = scores
        return out
