"""The service's own `evaluate` modules, loaded offline by path: known inputs, known values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.common.task import Task
from services.eval_svc.domain import metrics


def test_classification_report_by_hand():
    # references 0,0,1,1,2 ; predictions 0,1,1,1,0
    report = metrics.module("mtw_classification").compute(predictions=[0, 1, 1, 1, 0], references=[0, 0, 1, 1, 2],
                                                          num_labels=3)
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 0]]
    # class 0: P 1/2 R 1/2 F1 1/2; class 1: P 2/3 R 1 F1 0.8; class 2: 0
    assert report["per_class"]["f1"] == pytest.approx([0.5, 0.8, 0.0])
    assert report["macro_f1"] == pytest.approx((0.5 + 0.8) / 3)
    assert report["weighted_f1"] == pytest.approx((2 * 0.5 + 2 * 0.8) / 5)
    assert report["macro_precision"] == pytest.approx((0.5 + 2 / 3) / 3)
    assert report["macro_recall"] == pytest.approx((0.5 + 1.0) / 3)


def test_classification_matches_scikit_learn_on_random_data():
    from sklearn.metrics import f1_score, log_loss

    rng = np.random.default_rng(1)
    probabilities = rng.dirichlet([1, 1, 1, 1], size=300)
    references = rng.integers(0, 4, size=300)
    report = metrics.classification(references, probabilities, ["a", "b", "c", "d"],
                                    metrics.DEFAULTS[Task.SEQUENCE_CLASSIFICATION], resamples=200)
    values = {m.name: m.value for m in report.metrics}
    predictions = probabilities.argmax(axis=1)
    assert values["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro"))
    assert values["log_loss"] == pytest.approx(log_loss(references, probabilities, labels=[0, 1, 2, 3]))
    accuracy = next(m for m in report.metrics if m.name == "accuracy")
    assert accuracy.lower <= accuracy.value <= accuracy.upper


def test_expected_calibration_error_by_hand():
    # Two bins of 0.5: confidences 0.2, 0.4 (1 right) and 0.9, 0.7 (2 right).
    result = metrics.module("mtw_calibration").compute(
        confidences=[0.2, 0.4, 0.9, 0.7], correct=[1, 0, 1, 1], reference_probabilities=[0.2, 0.1, 0.9, 0.7], bins=2)
    low, high = result["bins"]
    assert (low["count"], high["count"]) == (2, 2)
    assert low["mean_confidence"] == pytest.approx(0.3) and low["accuracy"] == pytest.approx(0.5)
    assert high["mean_confidence"] == pytest.approx(0.8) and high["accuracy"] == pytest.approx(1.0)
    assert result["expected_calibration_error"] == pytest.approx(0.5 * 0.2 + 0.5 * 0.2)
    assert result["max_calibration_error"] == pytest.approx(0.2)
    assert result["log_loss"] == pytest.approx(-np.mean(np.log([0.2, 0.1, 0.9, 0.7])))


def test_perplexity_weights_examples_by_their_tokens():
    result = metrics.module("mtw_perplexity").compute(losses=[2.0, 6.0], token_counts=[1, 3])
    assert result["loss"] == pytest.approx(2.0) and result["perplexity"] == pytest.approx(math.exp(2.0))


def test_rouge_l_exact_match_and_bleu_by_hand():
    rouge = metrics.module("mtw_rouge_l").compute(predictions=["the cat sat", "a dog"],
                                                  references=["the cat sat down", "the cat"], per_example=True)
    # LCS 3 of 3 and 4 words: F = 2·1·0.75/1.75; second shares nothing.
    assert rouge["scores"] == pytest.approx([2 * 0.75 / 1.75, 0.0])
    exact = metrics.module("mtw_exact_match").compute(predictions=["The answer.", "no"], references=["answer", "yes"],
                                                      per_example=True)
    assert exact["scores"] == [1.0, 0.0] and exact["exact_match"] == 0.5
    bleu = metrics.module("mtw_bleu").compute(predictions=["the cat sat on the mat"],
                                              references=["the cat sat on the mat today"])
    # All n-grams match; brevity penalty exp(1 - 7/6).
    assert bleu["precisions"] == pytest.approx([1.0] * 4)
    assert bleu["bleu"] == pytest.approx(math.exp(1 - 7 / 6))


def test_unknown_metric_names_are_field_violations():
    _names, bad = metrics.resolve_metrics(Task.CAUSAL_LM, ["perplexity", "accuracy"])
    assert [v.field for v in bad] == ["evaluation.metrics[1]"]
    assert metrics.resolve_metrics(Task.CHAT_SFT, [])[0] == metrics.DEFAULTS[Task.CHAT_SFT]
