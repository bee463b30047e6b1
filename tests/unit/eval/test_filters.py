"""Example-result filters become bound SQL conditions; bad ones are field violations."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.common.filtering import parse_filter
from services.eval_svc import store


def _where(text: str):
    args: list = ["p", "e"]
    terms = parse_filter(text, tuple(store.EXAMPLE_FIELDS), comparisons=True)
    return store.example_where(terms, args), args[2:]


def test_confusion_cell_and_comparisons():
    where, args = _where('reference="billing" AND prediction="refund" AND score<0.5 AND loss>=2 AND correct=false')
    assert where == ["reference = $3", "prediction = $4", "score < $5", "loss >= $6", "correct = $7"]
    assert args == ["billing", "refund", 0.5, 2.0, False]


def test_substring_on_text():
    where, args = _where('input:"Late fee"')
    assert where == ["position(lower($3) in lower(input)) > 0"] and args == ["Late fee"]


@pytest.mark.parametrize("text", ['score:"x"', "correct<true", 'loss="high"', "colour=red", 'reference<"a"'])
def test_bad_filters(text):
    with pytest.raises(InvalidArgument) as error:
        _where(text)
    assert error.value.violations[0].field == "filter"
