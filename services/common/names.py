"""Resource names (AIP-122): parse ``projects/p/datasets/d`` against a template.

Every variable segment must be a valid id so names stay URL- and key-safe; a name
that doesn't fit becomes ``InvalidArgument`` with a field violation for the request
field it came from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from services.common.errors import FieldViolation, InvalidArgument

ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
_VAR = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


def valid_id(value: str) -> bool:
    """True for 1-63 chars of lowercase letters, digits and hyphens, not starting with '-'."""
    return isinstance(value, str) and ID_PATTERN.fullmatch(value) is not None


@lru_cache(maxsize=256)
def _compile(template: str) -> re.Pattern[str]:
    parts: list[str] = []
    pos = 0
    for m in _VAR.finditer(template):
        parts.append(re.escape(template[pos : m.start()]))
        # '/' and '@' separate segments (``models/m@alias``), so a variable never spans them.
        parts.append(f"(?P<{m.group(1)}>[^/@]+)")
        pos = m.end()
    parts.append(re.escape(template[pos:]))
    return re.compile("".join(parts))


def parse(template: str, name: str, field: str = "name") -> dict[str, str]:
    """Match ``name`` against ``template`` and return its variables.

    >>> parse("projects/{project}/datasets/{dataset}", "projects/p/datasets/d", "name")
    {'project': 'p', 'dataset': 'd'}
    """
    m = _compile(template).fullmatch(name or "")
    if m is None:
        raise _bad(field, f"expected {template}, got '{_clip(name)}'")
    values = m.groupdict()
    for var, value in values.items():
        if not valid_id(value):
            raise _bad(
                field,
                f"expected {template}, got '{_clip(name)}': {var} '{_clip(value)}' must be "
                "1-63 lowercase letters, digits or hyphens, starting with a letter or digit",
            )
    return values


def build(template: str, **values: str) -> str:
    """The inverse of :func:`parse`: ``build("projects/{project}", project="p")``."""
    return template.format(**values)


def check_id(value: str, field: str) -> str:
    """Return ``value`` if it is a valid id, else raise InvalidArgument on ``field``."""
    if not valid_id(value):
        raise _bad(
            field,
            f"'{_clip(value)}' is not a valid id: use 1-63 lowercase letters, digits or "
            "hyphens, starting with a letter or digit",
        )
    return value


def _bad(field: str, description: str) -> InvalidArgument:
    return InvalidArgument(f"{field}: {description}", [FieldViolation(field, description)])


def _clip(value: object, limit: int = 200) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


# --------------------------------------------------------------------------- model versions
# A model version may be named by number or by alias, in the path form or the `@` form;
# every service that accepts a model version parses it here.

MODEL = "projects/{project}/models/{model}"
MODEL_VERSION = "projects/{project}/models/{model}/versions/{version}"
ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,62}")
VERSION_PATTERN = re.compile(r"[1-9][0-9]{0,17}")
_VERSION_REF = re.compile(
    r"projects/(?P<project>[^/@]+)/models/(?P<model>[^/@]+)(?:/versions/|@)(?P<ref>[^/@]+)"
)


@dataclass(frozen=True)
class ModelVersionRef:
    """A model version as a request named it: by ``version`` number or by ``alias``."""

    project: str
    model: str
    version: str = ""
    alias: str = ""

    @property
    def model_name(self) -> str:
        return build(MODEL, project=self.project, model=self.model)

    def version_name(self, version: str | None = None) -> str:
        """The canonical name, with the given (or the referenced) version number."""
        number = version or self.version
        if not number:
            raise ValueError(f"{self} names an alias; resolve it to a version first")
        return build(MODEL_VERSION, project=self.project, model=self.model, version=number)

    def __str__(self) -> str:
        return f"{self.model_name}@{self.version or self.alias}"


def valid_alias(value: str) -> bool:
    """1-63 lowercase letters, digits and hyphens, starting with a letter (so never a number)."""
    return isinstance(value, str) and ALIAS_PATTERN.fullmatch(value) is not None


def check_alias(value: str, field: str = "alias") -> str:
    if not valid_alias(value):
        raise _bad(
            field,
            f"'{_clip(value)}' is not a valid alias: use 1-63 lowercase letters, digits or hyphens, "
            "starting with a letter (e.g. production, staging, canary-2)",
        )
    return value


def parse_model_version(name: str, field: str = "name", *, allow_alias: bool = True) -> ModelVersionRef:
    """Parse ``projects/p/models/m/versions/3``, ``…/models/m@3``, ``…/models/m@production``
    or ``…/models/m/versions/production``. ``allow_alias=False`` accepts numbers only."""
    expected = (f"{MODEL_VERSION}, {MODEL}@{{alias}} or {MODEL}@{{version}}" if allow_alias
                else MODEL_VERSION)
    m = _VERSION_REF.fullmatch(name or "")
    if m is None:
        raise _bad(field, f"expected {expected}, got '{_clip(name)}'")
    for var in ("project", "model"):
        if not valid_id(m[var]):
            raise _bad(field, f"expected {expected}, got '{_clip(name)}': {var} '{_clip(m[var])}' must be "
                       "1-63 lowercase letters, digits or hyphens, starting with a letter or digit")
    ref = m["ref"]
    if VERSION_PATTERN.fullmatch(ref):
        return ModelVersionRef(m["project"], m["model"], version=ref)
    if not allow_alias:
        raise _bad(field, f"expected {expected} with a version number, got '{_clip(name)}' "
                   "(an alias is not accepted here)")
    if not valid_alias(ref):
        raise _bad(field, f"'{_clip(ref)}' in '{_clip(name)}' is neither a version number nor a valid "
                   "alias (1-63 lowercase letters, digits or hyphens, starting with a letter)")
    return ModelVersionRef(m["project"], m["model"], alias=ref)
