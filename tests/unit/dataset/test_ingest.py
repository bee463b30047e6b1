"""The whole pipeline: bytes in, canonical split files and a result out."""

from __future__ import annotations

import io

import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from services.dataset_svc.domain.ingest import IngestLimits, IngestResult
from services.dataset_svc.domain.mapping import MESSAGES_TYPE
from services.dataset_svc.domain.model import (
    SPLITS,
    ColumnMapping,
    DataFormat,
    IngestOptions,
    PiiHandling,
    SplitSettings,
    Task,
)
from services.dataset_svc.domain.validation import IngestFailed
from tests.unit.dataset.corpus import ingest_bytes

BROWN = "/work/shared/data/brown_genres.csv"
CHAT = "/work/shared/data/chatterbot_qa_en.jsonl"


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _split_tables(result: IngestResult) -> dict[str, pa.Table]:
    return {name: pq.read_table(path) for name, path in result.split_files.items()}


def test_brown_classification(tmp_path) -> None:
    r = ingest_bytes(_read(BROWN), IngestOptions(file_name="brown_genres.csv"), tmp_path)
    assert r.format == DataFormat.CSV and r.task == Task.SEQUENCE_CLASSIFICATION
    assert r.column_mapping == ColumnMapping(text="text", label="label")
    assert r.columns == ("text", "label")
    assert r.source_columns == ("text", "label", "document")
    assert len(r.label_names) == 15 and r.label_names[0] == "popular_lore"
    assert sum(r.split_rows.values()) == 8368
    tables = _split_tables(r)
    for name, table in tables.items():
        assert table.schema.names == ["text", "label", "source_row"]
        assert table.num_rows == r.split_rows[name]
    assert pq.ParquetFile(r.split_files["train"]).metadata.row_group(0).column(0).compression \
        == "ZSTD"
    rows = pa.concat_tables(tables.values())
    assert sorted(rows.column("source_row").to_pylist()) == list(range(1, 8369))
    assert abs(r.split_rows["validation"] / 8368 - 0.1) < 0.01
    # stratified: each genre is split 80/10/10 (within one block)
    train = tables["train"].column("label").to_pylist()
    val = tables["validation"].column("label").to_pylist()
    for label in r.label_names:
        n = train.count(label) + val.count(label) + tables["test"].column("label").to_pylist().count(label)
        assert abs(val.count(label) - n * 0.1) <= 1.5
    assert [c.name for c in r.report.columns] == ["text", "label", "document"]
    assert r.report.row_count == 8368


def test_brown_reproducible_and_grouped(tmp_path) -> None:
    opts = IngestOptions(file_name="brown_genres.csv", split=SplitSettings(group_column="document"))
    a = ingest_bytes(_read(BROWN), opts, tmp_path / "a")
    b = ingest_bytes(_read(BROWN), opts, tmp_path / "b")
    assert a.split_rows == b.split_rows
    ta, tb = _split_tables(a), _split_tables(b)
    for name in ta:
        assert ta[name].column("source_row").equals(tb[name].column("source_row"))
    # every document's rows land in one split
    source = pacsv.read_csv(BROWN)
    doc_of = source.column("document").to_pylist()
    seen: dict[str, str] = {}
    for name, table in ta.items():
        for row in table.column("source_row").to_pylist():
            assert seen.setdefault(doc_of[row - 1], name) == name
    assert [c.mapped_to for c in a.report.columns] == ["text", "label", "group"]


def test_chatterbot_trailing_user_turns_are_trimmed(tmp_path) -> None:
    # 43 conversations of the sample end with a user turn: kept, trimmed, and reported.
    result = ingest_bytes(_read(CHAT), IngestOptions(file_name="chatterbot_qa_en.jsonl"), tmp_path)
    assert result.report.row_count == 898
    warning = next(w for w in result.report.warnings if w.code == "TRAILING_TURNS_DROPPED")
    assert warning.message.startswith("43 conversations") and warning.example_rows[0] == 223
    for name in SPLITS:
        for conversation in pq.read_table(result.split_files[name]).column("messages").to_pylist():
            assert conversation[-1]["role"] == "assistant"


def test_chatterbot_as_prompt_response(tmp_path) -> None:
    opts = IngestOptions(file_name="chatterbot_qa_en.jsonl",
                         column_mapping=ColumnMapping(prompt="prompt", response="response"))
    r = ingest_bytes(_read(CHAT), opts, tmp_path)
    assert r.format == DataFormat.JSONL and r.task == Task.CHAT_SFT
    assert sum(r.split_rows.values()) == 898
    table = pq.read_table(r.split_files["train"])
    assert table.schema.field("messages").type == MESSAGES_TYPE
    first = table.column("messages")[0].as_py()
    assert [t["role"] for t in first] == ["user", "assistant"]


def test_chat_jsonl_messages(tmp_path) -> None:
    rows = [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": f"q{i}"},
                          {"role": "assistant", "content": f"a{i}", "extra": 1}]}
            for i in range(40)]
    data = b"\n".join(orjson.dumps(r) for r in rows)
    r = ingest_bytes(data, IngestOptions(file_name="c.jsonl"), tmp_path)
    assert r.task == Task.CHAT_SFT and r.split_rows == {"train": 32, "validation": 4, "test": 4}
    msgs = pa.concat_tables(_split_tables(r).values()).sort_by("source_row").column("messages")
    assert msgs[0].as_py() == [{"role": "system", "content": "s"},
                               {"role": "user", "content": "q0"},
                               {"role": "assistant", "content": "a0"}]


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "json", "jsonl"])
def test_alpaca_in_any_tabular_format(tmp_path, fmt) -> None:
    rows = [{"instruction": f"do {i}", "input": "ctx" if i % 2 else "", "output": f"done {i}"}
            for i in range(20)]
    table = pa.Table.from_pylist(rows)
    if fmt in ("csv", "tsv"):
        buf = io.BytesIO()
        pacsv.write_csv(table, buf, pacsv.WriteOptions(delimiter="," if fmt == "csv" else "\t"))
        data = buf.getvalue()
    elif fmt == "parquet":
        buf = io.BytesIO()
        pq.write_table(table, buf)
        data = buf.getvalue()
    elif fmt == "json":
        data = orjson.dumps(rows)
    else:
        data = b"\n".join(orjson.dumps(r) for r in rows)
    r = ingest_bytes(data, IngestOptions(file_name=f"alpaca.{fmt}"), tmp_path)
    assert r.task == Task.CHAT_SFT
    assert r.column_mapping == ColumnMapping(prompt="instruction", input="input", response="output")
    out = pa.concat_tables(_split_tables(r).values()).sort_by("source_row")
    assert out.column("source_row").to_pylist() == list(range(1, 21))
    assert out.column("messages")[1].as_py() == [
        {"role": "user", "content": "do 1\n\nctx"}, {"role": "assistant", "content": "done 1"}]
    assert out.column("messages")[0].as_py()[0] == {"role": "user", "content": "do 0"}


def test_parquet_classification_with_int_labels(tmp_path) -> None:
    buf = io.BytesIO()
    pq.write_table(pa.table({"sentence": [f"s {i}" for i in range(30)],
                             "target": [i % 3 for i in range(30)]}), buf)
    r = ingest_bytes(buf.getvalue(), IngestOptions(file_name="x"), tmp_path)
    assert r.format == DataFormat.PARQUET and r.task == Task.SEQUENCE_CLASSIFICATION
    assert r.label_names == ("0", "1", "2")
    assert not (tmp_path / "_upload.parquet").exists()


def test_plain_text_causal_lm(tmp_path) -> None:
    paragraphs = [f"Paragraph {i} first line.\nAnd its second line." for i in range(30)]
    data = "\ufeff" + "\n\n".join(paragraphs) + "\n"
    r = ingest_bytes(data.encode(), IngestOptions(file_name="book.txt"), tmp_path)
    assert r.format == DataFormat.TEXT and r.task == Task.CAUSAL_LM
    assert r.report.had_byte_order_mark
    out = pa.concat_tables(_split_tables(r).values()).sort_by("source_row")
    assert out.num_rows == 30
    assert out.column("source_row").to_pylist()[:3] == [1, 4, 7]
    assert out.column("text")[0].as_py() == paragraphs[0]


def test_json_array_classification(tmp_path) -> None:
    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(10)]
    r = ingest_bytes(orjson.dumps(rows, option=orjson.OPT_INDENT_2),
                     IngestOptions(file_name="d.json"), tmp_path)
    assert r.format == DataFormat.JSON and r.label_names == ("a", "b")


def test_split_column(tmp_path) -> None:
    data = b"text,label,split\n" + b"".join(
        f"t{i},{'ab'[i % 2]},{['train', 'dev', 'test', 'train'][i % 4]}\n".encode()
        for i in range(40))
    r = ingest_bytes(data, IngestOptions(file_name="s.csv",
                                         split=SplitSettings(split_column="split")), tmp_path)
    assert r.split_rows == {"train": 20, "validation": 10, "test": 10}
    assert [c.mapped_to for c in r.report.columns] == ["text", "label", "split"]


def test_empty_counts_in_column_profiles(tmp_path) -> None:
    data = b"text,label,note\n" + b"".join(
        f"t{i},{'ab'[i % 2]},{'' if i % 3 else 'n'}\n".encode() for i in range(30))
    r = ingest_bytes(data, IngestOptions(file_name="s.csv"), tmp_path)
    assert r.report.columns[2].empty_count == 20


def test_issue_limit_and_total(tmp_path) -> None:
    data = b"text,label\n" + b"".join(b",a\n" if i % 2 else b"t,b\n" for i in range(1000))
    with pytest.raises(IngestFailed) as info:
        ingest_bytes(data, IngestOptions(file_name="s.csv"), tmp_path,
                     limits=IngestLimits(max_issues=10))
    assert info.value.total == 500 and len(info.value.issues) == 10
    assert [i.line for i in info.value.issues[:3]] == [3, 5, 7]


def test_custom_field_limit(tmp_path) -> None:
    data = b"text,label\n" + b"".join(f"{'x' * (i + 1)},{'ab'[i % 2]}\n".encode() for i in range(20))
    with pytest.raises(IngestFailed) as info:
        ingest_bytes(data, IngestOptions(file_name="s.csv"), tmp_path,
                     limits=IngestLimits(max_field_chars=15))
    assert info.value.total == 5 and info.value.issues[0].line == 17


def test_small_batches_give_same_result(tmp_path) -> None:
    data = _read(BROWN)[:400_000]
    data = data[:data.rindex(b"\n") + 1]
    opts = IngestOptions(file_name="b.csv")
    a = ingest_bytes(data, opts, tmp_path / "a")
    b = ingest_bytes(data, opts, tmp_path / "b", limits=IngestLimits(batch_rows=7))
    assert a.split_rows == b.split_rows


def test_token_counter_loader_is_used(tmp_path) -> None:
    calls = []

    def loader(model: str):
        calls.append(model)
        return lambda texts: [len(t.split()) for t in texts]

    data = b"text,label\n" + b"".join(f"w{i} x y,{'ab'[i % 2]}\n".encode() for i in range(20))
    ingest_bytes(data, IngestOptions(file_name="s.csv", tokenizer_model="fake"), tmp_path,
                 token_counter_loader=loader)
    assert calls == ["fake"]


def test_redaction_reaches_the_split_files(tmp_path) -> None:
    data = b"text,label\n" + b"".join(
        f"mail me at person{i}@example.com today,{'ab'[i % 2]}\n".encode() for i in range(20))
    r = ingest_bytes(data, IngestOptions(file_name="s.csv", pii_handling=PiiHandling.REDACT),
                     tmp_path)
    texts = pa.concat_tables(_split_tables(r).values()).column("text").to_pylist()
    assert not any("@example.com" in t for t in texts)


def test_csv_bom_crlf_and_multiline_values_report_physical_lines(tmp_path) -> None:
    data = b"\xef\xbb\xbftext,label\r\n" + b"".join(
        b'"multi\r\nline %d",%s\r\n' % (i, b"ab"[i % 2:i % 2 + 1]) for i in range(30)) + b",a\r\n"
    with pytest.raises(IngestFailed) as info:
        ingest_bytes(data, IngestOptions(file_name="x.csv"), tmp_path)
    assert info.value.issues[0].line == 62  # header + 30 two-line records, then the empty one
    r = ingest_bytes(data[:-5], IngestOptions(file_name="x.csv"), tmp_path / "ok")
    assert r.report.had_byte_order_mark and sum(r.split_rows.values()) == 30
    assert r.source_columns == ("text", "label")
