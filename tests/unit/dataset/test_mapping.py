"""Task detection, column aliases, mapping overrides and canonical conversion."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from services.dataset_svc.domain.mapping import (
    MESSAGES_TYPE,
    Canonicalizer,
    canonical_schema,
    resolve_mapping,
)
from services.dataset_svc.domain.model import ColumnMapping as M
from services.dataset_svc.domain.model import Task
from services.dataset_svc.domain.readers import RecordChunk, TableChunk
from services.dataset_svc.domain.validation import IngestFailed, Issues


@pytest.mark.parametrize(("columns", "task", "mapping"), [
    (["text", "label", "document"], Task.SEQUENCE_CLASSIFICATION, M(text="text", label="label")),
    (["Review", "Sentiment"], Task.CAUSAL_LM, M(text="Review")),  # no label alias
    (["foo", "bar"], None, None),
    (["review", "genre"], Task.SEQUENCE_CLASSIFICATION, M(text="review", label="genre")),
    (["sentence", "labels"], Task.SEQUENCE_CLASSIFICATION, M(text="sentence", label="labels")),
    (["Content", "Category"], Task.SEQUENCE_CLASSIFICATION, M(text="Content", label="Category")),
    (["document_text"], Task.CAUSAL_LM, M(text="document_text")),
    (["category", "prompt", "response", "messages"], Task.CHAT_SFT, M(messages="messages")),
    (["instruction", "input", "output"], Task.CHAT_SFT,
     M(prompt="instruction", input="input", response="output")),
    (["question", "context", "answer"], Task.CHAT_SFT,
     M(prompt="question", input="context", response="answer")),
    (["prompt", "completion"], Task.CHAT_SFT, M(prompt="prompt", response="completion")),
])
def test_detect_task(columns, task, mapping) -> None:
    if task is None:
        with pytest.raises(IngestFailed, match="--column-mapping"):
            resolve_mapping(columns, Task.UNSPECIFIED, M(), Issues())
        return
    resolved = resolve_mapping(columns, Task.UNSPECIFIED, M(), Issues())
    assert resolved.task == task
    assert resolved.mapping == mapping


def test_mapping_override_picks_columns() -> None:
    resolved = resolve_mapping(["Review", "Sentiment"], Task.UNSPECIFIED,
                               M(text="Review", label="Sentiment"), Issues())
    assert resolved.task == Task.SEQUENCE_CLASSIFICATION
    assert resolved.mapping == M(text="Review", label="Sentiment")


def test_mapping_override_beats_aliases() -> None:
    resolved = resolve_mapping(["text", "label", "summary"], Task.UNSPECIFIED,
                               M(text="summary"), Issues())
    assert resolved.mapping == M(text="summary", label="label")


def test_explicit_task_uses_only_needed_columns() -> None:
    resolved = resolve_mapping(["text", "label"], Task.CAUSAL_LM, M(), Issues())
    assert resolved.task == Task.CAUSAL_LM and resolved.mapping == M(text="text")


def test_prompt_response_override_makes_chat_even_with_messages() -> None:
    resolved = resolve_mapping(["category", "prompt", "response", "messages"], Task.UNSPECIFIED,
                               M(prompt="prompt", response="response"), Issues())
    assert resolved.task == Task.CHAT_SFT
    assert resolved.mapping == M(prompt="prompt", response="response")


def test_system_column_is_found() -> None:
    resolved = resolve_mapping(["system", "instruction", "output"], Task.UNSPECIFIED, M(),
                               Issues())
    assert resolved.system == "system"
    assert resolved.used() == {"instruction": "prompt", "output": "response", "system": "system"}


def test_missing_column_names_what_was_found() -> None:
    with pytest.raises(IngestFailed) as info:
        resolve_mapping(["text", "score"], Task.SEQUENCE_CLASSIFICATION, M(), Issues())
    issue = info.value.issues[0]
    assert issue.field == "label" and "'text', 'score'" in issue.message
    assert "--column-mapping label=<column>" in issue.message


def test_unknown_mapped_column() -> None:
    with pytest.raises(IngestFailed) as info:
        resolve_mapping(["text", "label"], Task.UNSPECIFIED, M(label="y"), Issues())
    assert info.value.issues[0].location == "file:column_mapping.label"


def _chunk_records(records):
    lines = np.arange(1, len(records) + 1)
    return RecordChunk(records, lines, lines)


def test_classification_from_records_makes_labels_text() -> None:
    issues = Issues()
    c = Canonicalizer(resolve_mapping(["text", "label"], Task.UNSPECIFIED, M(), issues), issues,
                      max_chars=100)
    batch, _ = c.convert(_chunk_records([{"text": "a", "label": 1}, {"text": "b", "label": True},
                                         {"text": "c", "label": 2.5}]))
    assert batch.schema == canonical_schema(Task.SEQUENCE_CLASSIFICATION)
    assert batch.column("label").to_pylist() == ["1", "true", "2.5"]
    assert batch.column("source_row").to_pylist() == [1, 2, 3]
    assert not issues


def test_instruction_rows_become_conversations() -> None:
    issues = Issues()
    resolved = resolve_mapping(["system", "instruction", "input", "output"], Task.UNSPECIFIED,
                               M(), issues)
    c = Canonicalizer(resolved, issues, max_chars=1000)
    batch, _ = c.convert(_chunk_records([
        {"instruction": "Translate", "input": "chat", "output": "cat", "system": "Be brief"},
        {"instruction": "Say hi", "input": "", "output": "hi", "system": ""},
    ]))
    assert batch.schema.field("messages").type == MESSAGES_TYPE
    assert batch.column("messages").to_pylist() == [
        [{"role": "system", "content": "Be brief"},
         {"role": "user", "content": "Translate\n\nchat"},
         {"role": "assistant", "content": "cat"}],
        [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}],
    ]
    assert not issues


def test_instruction_rows_from_a_table() -> None:
    issues = Issues()
    resolved = resolve_mapping(["prompt", "response"], Task.UNSPECIFIED, M(), issues)
    table = pa.record_batch({"prompt": ["q1", "q2"], "response": ["a1", "a2"]})
    lines = np.array([2, 3])
    batch, _ = Canonicalizer(resolved, issues, max_chars=100).convert(
        TableChunk(table, lines - 1, lines))
    assert batch.column("messages")[1].as_py() == [
        {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}]


def test_messages_as_json_text_in_csv() -> None:
    issues = Issues()
    resolved = resolve_mapping(["messages"], Task.UNSPECIFIED, M(), issues)
    table = pa.record_batch({"messages": [
        '[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]',
        "not json"]})
    lines = np.array([2, 3])
    batch, _ = Canonicalizer(resolved, issues, max_chars=100).convert(
        TableChunk(table, lines - 1, lines))
    assert batch.column("messages")[0].as_py()[1] == {"role": "assistant", "content": "yo"}
    assert issues.items[0].line == 3 and "not valid JSON" in issues.items[0].message


def test_extra_columns_are_returned_for_splitting() -> None:
    issues = Issues()
    resolved = resolve_mapping(["text", "label", "doc"], Task.UNSPECIFIED, M(), issues)
    c = Canonicalizer(resolved, issues, max_chars=100, extra_columns=("doc",))
    _, extras = c.convert(_chunk_records([{"text": "a", "label": "x", "doc": 7}]))
    assert extras["doc"].to_pylist() == ["7"]
