"""Every case of the bad-input corpus fails with the right error naming line/field."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.dataset_svc.domain.validation import IngestFailed
from tests.unit.dataset.corpus import bad_inputs, ingest_bytes

CASES = bad_inputs()


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize(("case_id", "file_name", "data", "options", "error", "expected"),
                         CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case_id, file_name, data, options, error, expected) -> None:
    with pytest.raises(InvalidArgument) as info:
        ingest_bytes(data, options, tmp_path)
    exc = info.value
    assert type(exc).__name__ == error, f"{case_id}: {exc!r}"
    assert expected in exc.message, f"{case_id}: {exc.message}"
    assert exc.violations, case_id
    if isinstance(exc, IngestFailed):
        assert exc.metadata["total_errors"] == str(exc.total)
        assert exc.total >= len(exc.issues) >= 1
        assert any(expected.split(": ")[0] in v.description or expected in v.description
                   for v in exc.violations)
