"""Experiment assignment, survey validation and report arithmetic (pure)."""

from collections import Counter
from datetime import UTC, datetime

import pytest

from services.common.errors import InvalidArgument
from services.insights_svc.domain import report, survey
from services.insights_svc.domain.experiments import (
    Experiment,
    Variant,
    check_variants,
    choose_variant,
)


def test_assignment_is_stable_and_follows_weights():
    exp = Experiment("preset", (Variant("fast", 1), Variant("quality", 3)))
    picks = [choose_variant(exp, f"project-{i}").id for i in range(4000)]
    assert picks == [choose_variant(exp, f"project-{i}").id for i in range(4000)]
    assert Counter(picks)["quality"] / len(picks) == pytest.approx(0.75, abs=0.03)
    # Another experiment splits the same projects independently.
    other = Experiment("recs", (Variant("fast", 1), Variant("quality", 3)))
    assert sum(choose_variant(other, f"project-{i}").id != p for i, p in enumerate(picks)) > 1000


def test_bad_variants_name_their_fields():
    with pytest.raises(InvalidArgument) as err:
        check_variants([Variant("a", 1), Variant("a", 0), Variant("B!", 1)])
    assert [v.field for v in err.value.violations] == [
        "experiment.variants[1].id", "experiment.variants[1].weight", "experiment.variants[2].id"]


def test_survey_rules_and_masking():
    survey.validate(True, 0, [], "")
    survey.validate(False, 5, [("SAVE", 1)], "fine")
    with pytest.raises(InvalidArgument):
        survey.validate(True, 3, [], "")
    with pytest.raises(InvalidArgument):
        survey.validate(False, 4, [("SAVE", 1), ("SAVE", 2)], "")
    assert survey.masked_comment(" card 4111 1111 1111 1111 please ") == "card [CARD] please"


def test_add_months_and_funnel():
    assert report.add_months(datetime(2026, 8, 31, tzinfo=UTC), 6) == datetime(2027, 2, 28, tzinfo=UTC)
    rows = [{"step": "WIZARD_STARTED", "projects": 4, "events": 5, "seconds": None},
            {"step": "DATASET_VALID", "projects": 3, "events": 3, "seconds": 12.0}]
    funnel = report.funnel_counts(rows)
    assert [f.step for f in funnel] == list(report.FUNNEL)
    assert funnel[1].drop_off == pytest.approx(0.25) and funnel[2].drop_off == 1.0
    assert funnel[3].drop_off == 0.0  # nobody to lose
