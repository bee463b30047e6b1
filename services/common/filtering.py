"""A small subset of AIP-160 list filters: `field OP value` terms joined by AND.

OP is `=`, `!=` or `:` (has / substring) — and `<`, `<=`, `>`, `>=` where the service
asks for comparisons; value is a bare word or a double-quoted string. Each service says
which fields it accepts and turns terms into SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from services.common.errors import FieldViolation, InvalidArgument

_TERM = re.compile(
    r'\s*(?P<field>[A-Za-z_][A-Za-z0-9_.\-]*)\s*(?P<op>!=|<=|>=|=|:|<|>)\s*'
    r'(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s"]+))\s*'
)
_AND = re.compile(r"\s*AND\s+", re.IGNORECASE)


@dataclass(frozen=True)
class Term:
    field: str
    op: str
    value: str


def parse_filter(text: str, allowed: tuple[str, ...], *, field: str = "filter",
                 comparisons: bool = False) -> list[Term]:
    """Parse `text` into terms; `allowed` lists field names, a trailing `.` allows a map prefix.
    `comparisons` also accepts `<`, `<=`, `>`, `>=` (InvalidArgument otherwise)."""
    terms: list[Term] = []
    rest = text.strip()
    while rest:
        match = _TERM.match(rest)
        if not match:
            raise _bad(field, f"cannot read the filter at '{rest[:40]}'; expected field=\"value\"")
        name = match["field"]
        if not any(name == a or (a.endswith(".") and name.startswith(a)) for a in allowed):
            raise _bad(field, f"unknown filter field '{name}'; use one of {', '.join(allowed)}")
        if match["op"] in ("<", "<=", ">", ">=") and not comparisons:
            raise _bad(field, f"'{match['op']}' is not supported here; use =, != or :")
        value = match["quoted"] if match["quoted"] is not None else match["bare"]
        terms.append(Term(name, match["op"], re.sub(r"\\(.)", r"\1", value)))
        rest = rest[match.end():]
        if rest:
            joiner = _AND.match(rest)
            if not joiner:
                raise _bad(field, f"expected AND before '{rest[:40]}'")
            rest = rest[joiner.end():]
    return terms


def _bad(field: str, message: str) -> InvalidArgument:
    return InvalidArgument(message, violations=[FieldViolation(field, message)])
