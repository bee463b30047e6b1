import pytest

from services.common.errors import InvalidArgument
from services.common.names import check_id, parse, valid_id

T = "projects/{project}/datasets/{dataset}"


def test_parse_ok():
    assert parse(T, "projects/p-1/datasets/brown", "name") == {"project": "p-1", "dataset": "brown"}


def test_parse_versions_and_alias():
    assert (
        parse(
            "projects/{project}/datasets/{dataset}/versions/{version}",
            "projects/p/datasets/d/versions/12",
            "x",
        )["version"]
        == "12"
    )
    assert parse(
        "projects/{project}/models/{model}@{alias}", "projects/p/models/m@production", "name"
    ) == {
        "project": "p",
        "model": "m",
        "alias": "production",
    }


@pytest.mark.parametrize(
    "name",
    [
        "",
        "projects/p",
        "projects/p/datasets/",
        "projects/P/datasets/d",
        "projects/p/datasets/d/extra",
        "projects/p/models/d",
        "projects/-p/datasets/d",
        "projects/p/datasets/" + "a" * 64,
        "projects/p/datasets/a_b",
    ],
)
def test_parse_rejects(name):
    with pytest.raises(InvalidArgument) as err:
        parse(T, name, "parent")
    (v,) = err.value.violations
    assert v.field == "parent"
    assert v.description.startswith(f"expected {T}, got '{name}'")


def test_valid_id():
    assert valid_id("a") and valid_id("a-1") and valid_id("0") and valid_id("a" * 63)
    assert not valid_id("") and not valid_id("A") and not valid_id("-a") and not valid_id("a" * 64)
    assert not valid_id("a b") and not valid_id(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument):
        check_id("Nope", "dataset_id")
