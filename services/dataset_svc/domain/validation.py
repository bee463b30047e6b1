"""Row checks made while a file streams, and the error that reports them.

Problems are collected as `Issue`s (line, field, message); the first `max_issues` are
kept and all are counted. Fatal problems (binary file, undecodable bytes, broken JSON
array...) stop the read at once through `Issues.fatal`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from services.common.errors import FieldViolation, InvalidArgument
from services.dataset_svc.domain.model import Issue

CHAT_ROLES = frozenset({"system", "user", "assistant", "tool"})


def describe(issue: Issue) -> str:
    """`line 3, field 'text': the field is empty` (parts left out when unknown)."""
    where = []
    if issue.line > 0:
        where.append(f"line {issue.line}")
    if issue.field:
        where.append(f"field '{issue.field}'")
    return f"{', '.join(where)}: {issue.message}" if where else issue.message


class IngestFailed(InvalidArgument):
    """The uploaded file has problems; `.issues` holds the first ones, `.total` counts all."""

    def __init__(self, issues: Sequence[Issue], total: int) -> None:
        self.issues: tuple[Issue, ...] = tuple(issues)
        self.total = total
        shown = "; ".join(describe(i) for i in self.issues[:5])
        more = f" (and {total - min(5, len(self.issues))} more)" if total > 5 else ""
        noun = "problem" if total == 1 else "problems"
        super().__init__(
            f"the file has {total} {noun}: {shown}{more}",
            [FieldViolation(i.location, describe(i)) for i in self.issues],
            reason="INVALID_DATASET",
            metadata={"total_errors": str(total)},
        )


class Issues:
    """Collects problems: keeps the first `limit`, counts them all."""

    def __init__(self, limit: int = 100) -> None:
        self.limit = limit
        self.items: list[Issue] = []
        self.total = 0

    def __bool__(self) -> bool:
        return self.total > 0

    def add(self, line: int, field: str, message: str, code: str = "INVALID") -> None:
        self.total += 1
        if len(self.items) < self.limit:
            self.items.append(Issue(int(line), field, message, code))

    def add_rows(self, mask: np.ndarray, lines: np.ndarray, field: str, message: str,
                 code: str = "INVALID") -> None:
        """Adds one issue per row where `mask` is true (vectorised callers)."""
        hits = np.flatnonzero(mask)
        if not len(hits):
            return
        room = max(0, self.limit - len(self.items))
        for i in hits[:room]:
            self.items.append(Issue(int(lines[i]), field, message, code))
        self.total += len(hits)

    def fatal(self, line: int, field: str, message: str, code: str = "INVALID") -> IngestFailed:
        """Records a problem that stops the read; `raise issues.fatal(...)`."""
        self.add(line, field, message, code)
        return self.failure()

    def failure(self) -> IngestFailed:
        return IngestFailed(self.items, self.total)

    def raise_if_any(self) -> None:
        if self.total:
            raise self.failure()


def check_strings(values: pa.Array, lines: np.ndarray, field: str, issues: Issues,
                  *, max_chars: int, required: bool = True) -> None:
    """Flags empty (or whitespace-only) values when `required`, and over-long ones."""
    byte_lengths = pc.binary_length(values)  # never below the length in characters
    if required:
        # utf8_is_space stops at a value's first other character: no pass over the text
        empty = pc.fill_null(pc.or_(pc.equal(byte_lengths, 0), pc.utf8_is_space(values)), True)
        issues.add_rows(empty.to_numpy(zero_copy_only=False), lines, field,
                        "the field is empty", "EMPTY_FIELD")
    maybe_long = np.flatnonzero(
        pc.fill_null(pc.greater(byte_lengths, max_chars), False).to_numpy(zero_copy_only=False))
    if not len(maybe_long):
        return
    lengths = pc.utf8_length(values.take(pa.array(maybe_long))).to_numpy(zero_copy_only=False)
    for i, length in zip(maybe_long.tolist(), lengths.tolist()):
        if length > max_chars:
            issues.add(int(lines[i]), field,
                       f"the field has {length:,} characters; the limit is {max_chars:,}",
                       "FIELD_TOO_LONG")


def check_messages(messages: object, max_chars: int) -> str | None:
    """Returns what is wrong with one conversation, or None when it is well formed.

    Rules: a list of {role, content} objects; roles system/user/assistant/tool; system
    only as the first turn; some user turn followed later by an assistant turn; no
    empty content. Turns after the last assistant turn are allowed: there is nothing
    to learn from them, so the canonical copy drops them (see `trim_trailing_turns`).
    """
    if not isinstance(messages, list):
        return f"expected a list of messages, got {_json_type(messages)}"
    if not messages:
        return "the conversation has no messages"
    saw_user = False
    user_then_assistant = False
    for n, turn in enumerate(messages):
        where = f"message {n + 1}"
        if not isinstance(turn, dict):
            return f"{where} is {_json_type(turn)}, expected an object with 'role' and 'content'"
        role = turn.get("role")
        content = turn.get("content")
        if not isinstance(role, str):
            return f"{where} has no 'role' string"
        if role not in CHAT_ROLES:
            return (f"{where} has role '{role[:40]}'; allowed roles are "
                    "system, user, assistant, tool")
        if role == "system" and n > 0:
            return f"{where} is a system turn; a system turn may only come first"
        if not isinstance(content, str):
            return f"{where} has no 'content' string (got {_json_type(content)})"
        if not content.strip():
            return f"{where} ({role}) has empty content"
        if len(content) > max_chars:
            return (f"{where} ({role}) has {len(content):,} characters; "
                    f"the limit is {max_chars:,}")
        if role == "user":
            saw_user = True
        elif role == "assistant" and saw_user:
            user_then_assistant = True
    if not user_then_assistant:
        return "the conversation needs a user turn followed by an assistant turn"
    return None


def trim_trailing_turns(messages: list[dict]) -> list[dict]:
    """The conversation up to and including its last assistant turn."""
    end = max(i for i, turn in enumerate(messages) if turn["role"] == "assistant")
    return messages[: end + 1]


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


json_type = _json_type
