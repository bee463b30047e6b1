"""Resource names (AIP-122): parse ``projects/p/datasets/d`` against a template.

Every variable segment must be a valid id so names stay URL- and key-safe; a name
that doesn't fit becomes ``InvalidArgument`` with a field violation for the request
field it came from.
"""

from __future__ import annotations

import re
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
