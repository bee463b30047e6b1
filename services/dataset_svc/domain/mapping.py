"""From source columns to the canonical table of a task.

`resolve_mapping` decides the task (unless given) and which source column feeds each
canonical field; `Canonicalizer` turns source chunks into canonical Arrow batches,
checking each value on the way (types, empty and over-long fields, conversations).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from services.dataset_svc.domain.model import CANONICAL_COLUMNS, ColumnMapping, Task
from services.dataset_svc.domain.readers import Chunk, RecordChunk, TableChunk
from services.dataset_svc.domain.validation import (
    Issues,
    check_messages,
    check_strings,
    json_type,
    trim_trailing_turns,
)

ALIASES: dict[str, tuple[str, ...]] = {
    "text": ("text", "sentence", "content", "review", "document_text"),
    "label": ("label", "labels", "category", "class", "target", "genre"),
    "messages": ("messages", "conversation", "conversations"),
    "prompt": ("prompt", "instruction", "question"),
    "response": ("response", "output", "answer", "completion"),
    "input": ("input", "context"),
}
SYSTEM_ALIASES = ("system", "system_prompt")

MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES_TYPE = pa.list_(MESSAGE_TYPE)


def canonical_schema(task: Task) -> pa.Schema:
    """Arrow schema of the canonical table of `task`, `source_row` last."""
    fields = [pa.field(name, MESSAGES_TYPE if name == "messages" else pa.string())
              for name in CANONICAL_COLUMNS[task]]
    return pa.schema(fields + [pa.field("source_row", pa.int64())])


@dataclass(frozen=True)
class ResolvedMapping:
    task: Task
    mapping: ColumnMapping  # canonical field -> source column (empty: unused)
    system: str = ""  # source column of an optional system prompt (instruction data)

    def used(self) -> dict[str, str]:
        """Source column -> canonical field, for the column profiles."""
        out = {}
        for key in ("text", "label", "messages", "prompt", "input", "response"):
            col = getattr(self.mapping, key)
            if col:
                out[col] = key
        if self.system:
            out[self.system] = "system"
        return out


def _find(columns: Sequence[str], names: Sequence[str]) -> str:
    lowered = {c.strip().lower(): c for c in reversed(columns)}
    for name in names:
        if name in lowered:
            return lowered[name]
    return ""


def resolve_mapping(columns: Sequence[str], task: Task, mapping: ColumnMapping,
                    issues: Issues) -> ResolvedMapping:
    """Chooses the task and the source column of each canonical field.

    Raises IngestFailed when a mapped column does not exist or a required one is missing
    (row problems already in `issues` do not stop it: they are reported with the rest).
    """
    before = issues.total
    found = ", ".join(f"'{c}'" for c in columns) or "none"
    for key in ("text", "label", "messages", "prompt", "input", "response"):
        name = getattr(mapping, key)
        if name and name not in columns:
            issues.add(0, f"column_mapping.{key}",
                       f"the column mapping names column '{name}', which is not in the file "
                       f"(columns found: {found})", "UNKNOWN_COLUMN")
    if issues.total > before:
        raise issues.failure()

    def pick(key: str) -> str:
        return getattr(mapping, key) or _find(columns, ALIASES[key])

    text, label, messages = pick("text"), pick("label"), pick("messages")
    prompt, response, input_ = pick("prompt"), pick("response"), pick("input")

    if task == Task.UNSPECIFIED:
        if mapping.messages or (mapping.prompt and mapping.response):
            task = Task.CHAT_SFT
        elif text and label:
            task = Task.SEQUENCE_CLASSIFICATION
        elif messages or (prompt and response):
            task = Task.CHAT_SFT
        elif text:
            task = Task.CAUSAL_LM
        else:
            raise issues.fatal(
                0, "", f"cannot tell what the data trains: columns found: {found}; expected "
                "'text' and 'label' (classification), 'messages' or 'instruction'/'prompt' "
                "with 'output'/'response' (chat), or 'text' alone (language modelling); "
                "name your columns with --column-mapping, e.g. text=<column>",
                "MISSING_COLUMN")

    def missing(key: str) -> None:
        names = "/".join(ALIASES[key])
        issues.add(0, key, f"no '{key}' column: columns found: {found}; expected a column "
                   f"named {names}, or map one with --column-mapping {key}=<column>",
                   "MISSING_COLUMN")

    if task == Task.SEQUENCE_CLASSIFICATION:
        for key, col in (("text", text), ("label", label)):
            if not col:
                missing(key)
        resolved = ColumnMapping(text=text, label=label)
        system = ""
    elif task == Task.CAUSAL_LM:
        if not text:
            missing("text")
        resolved = ColumnMapping(text=text)
        system = ""
    else:
        if messages and not (mapping.prompt or mapping.response):
            resolved = ColumnMapping(messages=messages)
            system = ""
        else:
            if not prompt:
                missing("prompt")
            if not response:
                missing("response")
            resolved = ColumnMapping(prompt=prompt, input=input_, response=response)
            system = _find(columns, SYSTEM_ALIASES)
    if issues.total > before:
        raise issues.failure()
    return ResolvedMapping(task, resolved, system)


class Canonicalizer:
    """Builds canonical batches (canonical columns + `source_row`) from source chunks."""

    def __init__(self, resolved: ResolvedMapping, issues: Issues, *, max_chars: int,
                 extra_columns: Sequence[str] = ()) -> None:
        self.resolved = resolved
        self.task = resolved.task
        self.schema = canonical_schema(resolved.task)
        self._issues = issues
        self._max = max_chars
        self._extra = [c for c in extra_columns if c]
        self._type_checked: set[str] = set()
        # Source lines of conversations whose turns after the last assistant turn were dropped.
        self.trimmed_rows: list[int] = []

    def convert(self, chunk: Chunk) -> tuple[pa.RecordBatch, dict[str, pa.Array]]:
        """Canonical batch, plus the extra source columns (split/group) as strings."""
        if isinstance(chunk, TableChunk):
            columns = self._from_table(chunk)
            extras = {c: self._table_strings(chunk, c, required=False) for c in self._extra}
        else:
            columns = self._from_records(chunk)
            extras = {c: self._record_strings(chunk, c, required=False)[0] for c in self._extra}
        arrays = [columns[name] for name in CANONICAL_COLUMNS[self.task]]
        arrays.append(pa.array(chunk.rows, pa.int64()))
        return pa.RecordBatch.from_arrays(arrays, schema=self.schema), extras

    # --- tabular sources -------------------------------------------------------------

    def _table_strings(self, chunk: TableChunk, column: str, *, required: bool) -> pa.Array:
        batch = chunk.batch
        idx = batch.schema.get_field_index(column)
        col = batch.column(idx)
        t = col.type
        if pa.types.is_dictionary(t):
            col = col.cast(t.value_type)
            t = col.type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            if (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
                    or pa.types.is_null(t) or pa.types.is_decimal(t)):
                col = col.cast(pa.string())
            else:
                if column not in self._type_checked:
                    self._type_checked.add(column)
                    self._issues.add(0, column, f"the column holds values of type {t}; "
                                     "expected text", "WRONG_TYPE")
                return pa.nulls(len(col), pa.string()).fill_null("")
        col = col.cast(pa.string())
        if required and col.null_count:
            nulls = col.is_null().to_numpy(zero_copy_only=False)
            self._issues.add_rows(nulls, chunk.lines, column, "the field is missing (null)",
                                  "EMPTY_FIELD")
            col = col.fill_null("")
        return col.fill_null("") if col.null_count else col

    def _from_table(self, chunk: TableChunk) -> dict[str, pa.Array]:
        m = self.resolved.mapping
        out: dict[str, pa.Array] = {}
        if self.task in (Task.SEQUENCE_CLASSIFICATION, Task.CAUSAL_LM):
            text = self._table_strings(chunk, m.text, required=True)
            check_strings(text, chunk.lines, m.text, self._issues, max_chars=self._max)
            out["text"] = text
            if self.task == Task.SEQUENCE_CLASSIFICATION:
                label = self._table_strings(chunk, m.label, required=True)
                check_strings(label, chunk.lines, m.label, self._issues, max_chars=self._max)
                out["label"] = label
            return out
        if m.messages:
            col = chunk.batch.column(chunk.batch.schema.get_field_index(m.messages))
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                values = []
                for line, raw in zip(chunk.lines, col.to_pylist()):
                    try:
                        values.append(orjson.loads(raw) if raw else None)
                    except orjson.JSONDecodeError as exc:
                        self._issues.add(int(line), m.messages,
                                         f"the messages are not valid JSON: {exc}",
                                         "INVALID_JSON")
                        values.append([])
            else:
                values = col.to_pylist()
            out["messages"] = self._messages(values, chunk.lines, m.messages)
            return out
        cols = {key: self._table_strings(chunk, getattr(m, key), required=False).to_pylist()
                for key in ("prompt", "response")}
        inputs = (self._table_strings(chunk, m.input, required=False).to_pylist()
                  if m.input else None)
        system = (self._table_strings(chunk, self.resolved.system, required=False).to_pylist()
                  if self.resolved.system else None)
        out["messages"] = self._instructions(cols["prompt"], inputs, cols["response"], system,
                                             chunk.lines)
        return out

    # --- JSON sources ----------------------------------------------------------------

    def _record_strings(self, chunk: RecordChunk, column: str, *,
                        required: bool) -> tuple[pa.Array, list[str]]:
        raw = list(map(dict.get, chunk.records, repeat(column)))
        try:  # fast path: every value is a string or absent
            arr = pa.array(raw, pa.string())
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            pass
        else:
            if arr.null_count:
                if required:
                    self._issues.add_rows(arr.is_null().to_numpy(zero_copy_only=False),
                                          chunk.lines, column, "the field is missing or null",
                                          "EMPTY_FIELD")
                arr = arr.fill_null("")
                raw = arr.to_pylist()
            return arr, raw
        values: list[str] = []
        issues = self._issues
        for line, rec in zip(chunk.lines, chunk.records):
            v = rec.get(column)
            if type(v) is str:
                values.append(v)
            elif v is None:
                if required:
                    what = "missing" if column not in rec else "null"
                    issues.add(int(line), column, f"the field is {what}", "EMPTY_FIELD")
                values.append("")
            elif isinstance(v, bool):
                values.append("true" if v else "false")
            elif isinstance(v, (int, float)):
                values.append(orjson.dumps(v).decode())
            else:
                issues.add(int(line), column, f"expected text, found {json_type(v)}",
                           "WRONG_TYPE")
                values.append("")
        return pa.array(values, pa.string()), values

    def _from_records(self, chunk: RecordChunk) -> dict[str, pa.Array]:
        m = self.resolved.mapping
        out: dict[str, pa.Array] = {}
        if self.task in (Task.SEQUENCE_CLASSIFICATION, Task.CAUSAL_LM):
            text, _ = self._record_strings(chunk, m.text, required=True)
            check_strings(text, chunk.lines, m.text, self._issues, max_chars=self._max)
            out["text"] = text
            if self.task == Task.SEQUENCE_CLASSIFICATION:
                label, _ = self._record_strings(chunk, m.label, required=True)
                check_strings(label, chunk.lines, m.label, self._issues, max_chars=self._max)
                out["label"] = label
            return out
        if m.messages:
            values = [rec.get(m.messages) for rec in chunk.records]
            out["messages"] = self._messages(values, chunk.lines, m.messages)
            return out
        prompts = self._record_strings(chunk, m.prompt, required=False)[1]
        responses = self._record_strings(chunk, m.response, required=False)[1]
        inputs = self._record_strings(chunk, m.input, required=False)[1] if m.input else None
        system = (self._record_strings(chunk, self.resolved.system, required=False)[1]
                  if self.resolved.system else None)
        out["messages"] = self._instructions(prompts, inputs, responses, system, chunk.lines)
        return out

    # --- conversations ---------------------------------------------------------------

    def _messages(self, values: list, lines: np.ndarray, column: str) -> pa.Array:
        clean: list[list[dict]] = []
        for line, msgs in zip(lines, values):
            problem = check_messages(msgs, self._max)
            if problem is not None:
                self._issues.add(int(line), column, problem, "BAD_CONVERSATION")
                clean.append([])
            else:
                turns = [{"role": t["role"], "content": t["content"]} for t in msgs]
                kept = trim_trailing_turns(turns)
                if len(kept) < len(turns):
                    self.trimmed_rows.append(int(line))
                clean.append(kept)
        return pa.array(clean, MESSAGES_TYPE)

    def _instructions(self, prompts: list, inputs: list | None, responses: list,
                      system: list | None, lines: np.ndarray) -> pa.Array:
        m = self.resolved.mapping
        out: list[list[dict]] = []
        issues = self._issues
        limit = self._max
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            line = int(lines[i])
            prompt = prompt or ""
            response = response or ""
            extra = (inputs[i] or "") if inputs is not None else ""
            ok = True
            for col, value in ((m.prompt, prompt), (m.response, response)):
                if not value.strip():
                    issues.add(line, col, "the field is empty", "EMPTY_FIELD")
                    ok = False
            for col, value in ((m.prompt, prompt), (m.response, response), (m.input, extra)):
                if len(value) > limit:
                    issues.add(line, col, f"the field has {len(value):,} characters; the limit "
                               f"is {limit:,}", "FIELD_TOO_LONG")
                    ok = False
            if not ok:
                out.append([])
                continue
            user = f"{prompt}\n\n{extra}" if extra.strip() else prompt
            turns = []
            if system is not None and system[i] and system[i].strip():
                turns.append({"role": "system", "content": system[i]})
            turns.append({"role": "user", "content": user})
            turns.append({"role": "assistant", "content": response})
            out.append(turns)
        return pa.array(out, MESSAGES_TYPE)


def column_empty_counts(chunk: Chunk, columns: Sequence[str]) -> dict[str, int]:
    """Missing, null or empty-string values per source column in one chunk."""
    counts: dict[str, int] = {}
    if isinstance(chunk, TableChunk):
        batch = chunk.batch
        for name in columns:
            idx = batch.schema.get_field_index(name)
            if idx < 0:
                counts[name] = batch.num_rows
                continue
            col = batch.column(idx)
            empty = col.null_count
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                empty += int(pc.sum(pc.equal(col, "")).as_py() or 0)
            counts[name] = empty
        return counts
    for name in columns:
        values = list(map(dict.get, chunk.records, repeat(name)))
        counts[name] = values.count(None) + values.count("") + values.count([])
    return counts
