import pytest

from services.common.errors import InvalidArgument
from services.common.objectstore import safe_key


def test_joins():
    assert safe_key("datasets/p/d", "v1", "file name.csv") == "datasets/p/d/v1/file name.csv"
    assert safe_key("a", "sub/dir/f.txt") == "a/sub/dir/f.txt"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "/etc/passwd",
        "../x",
        "a/../../b",
        "..",
        "a\\b",
        "a\x00b",
        "a\nb",
        "a//b",
        "a/./b",
        "trailing/",
    ],
)
def test_rejects(bad):
    with pytest.raises(InvalidArgument) as err:
        safe_key("prefix", bad, field="file_name")
    assert err.value.violations[0].field == "file_name"
    assert err.value.reason == "UNSAFE_OBJECT_NAME"
