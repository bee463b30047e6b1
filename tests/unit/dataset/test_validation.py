"""Row checks, issue collection and the IngestFailed error."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from services.common.errors import InvalidArgument
from services.dataset_svc.domain.model import Issue
from services.dataset_svc.domain.validation import (
    IngestFailed,
    Issues,
    check_messages,
    check_strings,
    describe,
)


def test_issues_keep_first_and_count_all() -> None:
    issues = Issues(limit=3)
    for n in range(10):
        issues.add(n + 1, "text", "bad")
    issues.add_rows(np.array([True, False, True]), np.array([20, 21, 22]), "label", "worse")
    assert len(issues.items) == 3 and issues.total == 12
    with pytest.raises(IngestFailed) as info:
        issues.raise_if_any()
    err = info.value
    assert isinstance(err, InvalidArgument)
    assert err.total == 12 and len(err.issues) == 3
    assert err.metadata == {"total_errors": "12"}
    assert err.violations[0].field == "line:1:text"
    assert err.violations[0].description == "line 1, field 'text': bad"
    assert err.reason == "INVALID_DATASET"
    assert "12 problems" in err.message


def test_describe_without_line_or_field() -> None:
    assert describe(Issue(0, "", "the file is empty")) == "the file is empty"
    assert describe(Issue(0, "label", "one class")) == "field 'label': one class"
    assert describe(Issue(4, "", "x")) == "line 4: x"


def test_check_strings_flags_empty_whitespace_null_and_long() -> None:
    issues = Issues()
    values = pa.array(["ok", "", "  ", None, "x" * 11])
    check_strings(values, np.array([2, 3, 4, 5, 6]), "text", issues, max_chars=10)
    assert [(i.line, i.code) for i in issues.items] == [
        (3, "EMPTY_FIELD"), (4, "EMPTY_FIELD"), (5, "EMPTY_FIELD"), (6, "FIELD_TOO_LONG")]


def _m(*turns):
    return [{"role": r, "content": c} for r, c in turns]


@pytest.mark.parametrize(("messages", "problem"), [
    (_m(("user", "hi"), ("assistant", "yo")), None),
    (_m(("system", "s"), ("user", "hi"), ("assistant", "yo")), None),
    (_m(("user", "hi"), ("assistant", "yo"), ("tool", "{}"), ("assistant", "done")), None),
    (_m(("assistant", "yo"), ("user", "hi")), "user turn followed by an assistant"),
    (_m(("user", "a"), ("assistant", "b"), ("user", "c")), None),  # trailing turn is trimmed
    (_m(("user", "a"), ("robot", "b")), "role 'robot'"),
    (_m(("user", "a"), ("system", "s"), ("assistant", "b")), "may only come first"),
    (_m(("user", ""), ("assistant", "b")), "empty content"),
    ([{"role": "user"}, {"role": "assistant", "content": "b"}], "no 'content' string"),
    ([{"content": "x"}], "no 'role' string"),
    (["hi"], "expected an object"),
    ([], "no messages"),
    ("hi", "expected a list"),
    (_m(("user", "a" * 50), ("assistant", "b")), "the limit is 20"),
])
def test_check_messages(messages, problem) -> None:
    result = check_messages(messages, 20)
    if problem is None:
        assert result is None
    else:
        assert result is not None and problem in result
