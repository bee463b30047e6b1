"""Recommendation rules: each fires on its pattern, says what to change, and stays quiet otherwise."""

from __future__ import annotations

from services.common.task import Task
from services.eval_svc.domain import recommend
from services.eval_svc.domain.model import ClassScore, MetricValue, Results, Severity, StartFrom

HP = {"max_steps": "60", "learning_rate": 0.01, "epochs": 3, "max_seq_length": 64, "lora": {"rank": 8, "dropout": 0.05}}


def _results(task=Task.CAUSAL_LM, **values) -> Results:
    return Results(example_count=100, metrics=tuple(MetricValue(k, v, k not in ("loss", "perplexity"))
                                                    for k, v in values.items()))


def _codes(facts) -> set[str]:
    return {r.code for r in recommend.recommend(facts)}


def test_overfitting_when_validation_rises_while_training_falls():
    facts = recommend.Facts(
        task=Task.CAUSAL_LM, results=_results(loss=3.0), tuned=True, method=2, hyperparameters=HP,
        train_losses=tuple((s, 5.0 - s / 20) for s in range(1, 61)),
        eval_losses=((10, 4.0), (20, 3.5), (30, 3.6), (40, 3.9), (60, 4.4)), train_rows=1000)
    rec = next(r for r in recommend.recommend(facts) if r.code == "OVERFITTING")
    assert rec.applicable and rec.changes.start_from is StartFrom.BASE
    assert rec.changes.hyperparameters["max_steps"] == 20  # the best step
    assert rec.changes.hyperparameters["learning_rate"] == 0.005
    assert rec.changes.hyperparameters["weight_decay"] >= 0.01  # full fine-tuning: no LoRA dropout
    assert "step 20" in rec.explanation
    steady = recommend.Facts(task=Task.CAUSAL_LM, results=_results(loss=3.0), tuned=True, hyperparameters=HP,
                             eval_losses=((10, 4.0), (20, 3.5), (30, 3.4)), train_rows=1000)
    assert "OVERFITTING" not in _codes(steady)


def test_underfitting_when_training_loss_still_falls():
    facts = recommend.Facts(task=Task.CAUSAL_LM, results=_results(loss=3.0), tuned=True, hyperparameters=HP,
                            train_losses=tuple((s, 6.0 - s / 10) for s in range(1, 41)), train_rows=1000)
    rec = next(r for r in recommend.recommend(facts) if r.code == "UNDERFITTING")
    assert rec.changes.start_from is StartFrom.TUNED_WEIGHTS
    assert rec.changes.hyperparameters == {"max_steps": 120, "lora": {"rank": 16}}


def test_no_improvement_over_base_is_critical_and_first():
    facts = recommend.Facts(task=Task.SEQUENCE_CLASSIFICATION, tuned=True, hyperparameters=HP, train_rows=1000,
                            results=_results(macro_f1=0.40, accuracy=0.5),
                            baseline=_results(macro_f1=0.41, accuracy=0.5))
    recs = recommend.recommend(facts)
    assert recs[0].code == "NO_IMPROVEMENT_OVER_BASE" and recs[0].severity is Severity.CRITICAL
    better = recommend.Facts(task=Task.SEQUENCE_CLASSIFICATION, tuned=True, train_rows=1000,
                             results=_results(macro_f1=0.8), baseline=_results(macro_f1=0.4))
    assert "NO_IMPROVEMENT_OVER_BASE" not in _codes(better)


def test_class_imbalance_names_the_scarce_classes():
    quality = recommend.QualityFacts(train_label_counts=(("billing", 300), ("refund", 40), ("other", 120)))
    results = Results(example_count=10, metrics=(), class_scores=(ClassScore("refund", 0.5, 0.2, 0.3, 4),))
    rec = next(r for r in recommend.recommend(recommend.Facts(task=Task.SEQUENCE_CLASSIFICATION, results=results,
                                                                 quality=quality, train_rows=460))
               if r.code == "CLASS_IMBALANCE")
    assert "'refund'" in rec.explanation and "'other'" not in rec.explanation and not rec.applicable


def test_data_rules_leakage_duplicates_little_data_truncation():
    leaky = recommend.QualityFacts(row_count=100, cross_split_duplicate_rows=3)
    facts = recommend.Facts(task=Task.CAUSAL_LM, results=Results(example_count=10, metrics=(), truncated_examples=5),
                            quality=leaky, train_rows=50, tuned=True, hyperparameters=HP)
    codes = _codes(facts)
    assert {"DATA_LEAKAGE", "TOO_LITTLE_DATA", "TRUNCATED_INPUTS"} <= codes
    truncated = next(r for r in recommend.recommend(facts) if r.code == "TRUNCATED_INPUTS")
    assert truncated.changes.hyperparameters == {"max_seq_length": 128}
    duplicated = recommend.QualityFacts(row_count=100, exact_duplicate_rows=10)
    assert "DUPLICATE_ROWS" in _codes(recommend.Facts(task=Task.CAUSAL_LM, results=_results(loss=1.0),
                                                      quality=duplicated))


def test_confused_classes_and_calibration():
    results = Results(example_count=20, metrics=(), confusion_labels=("a", "b"), confusion_counts=(5, 5, 0, 10),
                      expected_calibration_error=0.3)
    codes = _codes(recommend.Facts(task=Task.SEQUENCE_CLASSIFICATION, results=results))
    assert {"CONFUSED_CLASSES", "POOR_CALIBRATION"} <= codes
