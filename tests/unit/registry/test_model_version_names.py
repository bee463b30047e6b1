"""Model version references: by number or alias, path or `@` form, parsed in one place."""

import pytest

from services.common.errors import InvalidArgument
from services.common.names import check_alias, parse_model_version


@pytest.mark.parametrize("name, version, alias", [
    ("projects/p/models/m/versions/3", "3", ""),
    ("projects/p/models/m@3", "3", ""),
    ("projects/p/models/m@production", "", "production"),
    ("projects/p/models/m/versions/staging-2", "", "staging-2"),
])
def test_parses_every_form(name, version, alias):
    ref = parse_model_version(name)
    assert (ref.project, ref.model, ref.version, ref.alias) == ("p", "m", version, alias)
    assert ref.model_name == "projects/p/models/m"


def test_canonical_name_needs_a_number():
    assert parse_model_version("projects/p/models/m@7").version_name() == "projects/p/models/m/versions/7"
    with pytest.raises(ValueError):
        parse_model_version("projects/p/models/m@prod").version_name()


@pytest.mark.parametrize("name", [
    "", "projects/p/models/m", "projects/p/models/m@", "projects/p/models/m@Prod", "projects/p/models/m@0",
    "projects/p/models/m@1a", "projects/P/models/m@1", "projects/p/models/m/versions/3/exports/x",
    "projects/p/models/m@a@b",
])
def test_rejects_bad_names_with_a_field_violation(name):
    with pytest.raises(InvalidArgument) as info:
        parse_model_version(name, "model_version")
    assert info.value.violations[0].field == "model_version"


def test_alias_not_allowed_where_a_number_is_required():
    assert parse_model_version("projects/p/models/m/versions/2", allow_alias=False).version == "2"
    with pytest.raises(InvalidArgument, match="alias is not accepted"):
        parse_model_version("projects/p/models/m@production", allow_alias=False)


def test_alias_rules():
    assert check_alias("canary-2") == "canary-2"
    for bad in ("2", "-a", "Prod", "a" * 64, ""):
        with pytest.raises(InvalidArgument):
            check_alias(bad)
