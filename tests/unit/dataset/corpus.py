"""Corpus of bad uploads, shared by the unit tests and the service's integration tests.

`bad_inputs()` returns (case_id, file_name, bytes, IngestOptions, expected error class
name, substring the error message must contain). The substring names the line and/or
field wherever the problem has one, so the same cases can be sent over the network
and checked against the returned status.
"""

from __future__ import annotations

import io

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from services.dataset_svc.domain.model import (
    ColumnMapping,
    DataFormat,
    IngestOptions,
    SplitSettings,
    Task,
)

BadInput = tuple[str, str, bytes, IngestOptions, str, str]


def _jsonl(*rows: object) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def _chat(*turns: tuple[str, str]) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in turns]}


def _parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _csv_rows(n: int, labels: tuple[str, ...] = ("pos", "neg")) -> bytes:
    return b"".join(f"row number {i} has some words,{labels[i % len(labels)]}\n".encode()
                    for i in range(n))


OK_CHAT = _chat(("user", "hi"), ("assistant", "hello"))


def bad_inputs() -> list[BadInput]:
    """The bad-input corpus (at least 30 cases)."""
    opts = IngestOptions
    good_csv_head = b"text,label\n" + _csv_rows(20)
    valid_parquet = _parquet(pa.table({"text": ["a b", "c d", "e f"], "label": ["x", "y", "x"]}))
    filler = b"text,label\n" + _csv_rows(3000)  # > 64 KiB, so later bytes pass the stream check
    assert len(filler) > 70_000
    filler_lines = filler.count(b"\n")
    cases: list[BadInput] = [
        ("binary_png", "photo.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64),
         opts(file_name="photo.csv"), "IngestFailed", "PNG image"),
        ("gzip_archive", "data.csv.gz", b"\x1f\x8b\x08\x00" + bytes(40),
         opts(file_name="data.csv.gz"), "IngestFailed", "gzip"),
        ("latin1_csv", "reviews.csv", b"text,label\nhello there,a\ncaf\xe9 au lait,b\n",
         opts(file_name="reviews.csv"), "IngestFailed", "line 3: byte 0xE9 at offset 28 is not valid UTF-8; the file looks like ISO-8859-1 (latin_1)"),
        ("latin1_late_in_file", "reviews.csv", filler + "naïve café,pos\n".encode("latin-1"),
         opts(file_name="reviews.csv"), "IngestFailed",
         f"line {filler_lines + 1}: byte 0xEF"),
        ("latin1_jsonl", "x.jsonl",
         b'{"text": "a", "label": "x"}\n{"text": "r\xe9sum\xe9", "label": "y"}\n',
         opts(file_name="x.jsonl"), "IngestFailed", "line 2: byte 0xE9"),
        ("utf16_with_bom", "data.csv", "text,label\nhello,a\nbye,b\n".encode("utf-16"),
         opts(file_name="data.csv"), "IngestFailed", "UTF-16"),
        ("utf16_without_bom", "data.csv", "text,label\nhello,a\nbye,b\n".encode("utf-16-le"),
         opts(file_name="data.csv"), "IngestFailed", "UTF-16"),
        ("nul_bytes_early", "data.txt", b"hello\x00world\n", opts(file_name="data.txt"),
         "IngestFailed", "NUL bytes"),
        ("nul_byte_late", "data.csv", filler + b"bad\x00value,pos\n", opts(file_name="data.csv"),
         "IngestFailed", f"line {filler_lines + 1}: NUL byte"),
        ("zero_bytes", "empty.csv", b"", opts(file_name="empty.csv"), "IngestFailed",
         "empty (0 bytes)"),
        ("header_only_csv", "h.csv", b"text,label\n", opts(file_name="h.csv"), "IngestFailed",
         "no data rows"),
        ("csv_broken_quote", "q.csv",
         b'text,label\nfine row,a\n"this quote never closes,b\nanother,a\nlast,b\n',
         opts(file_name="q.csv"), "IngestFailed", "line 3"),
        ("csv_wrong_column_count", "c.csv", b"text,label\none,a\ntwo,b,extra\nthree,a\n",
         opts(file_name="c.csv"), "IngestFailed", "line 3: expected 2 columns, found 3"),
        ("csv_too_few_columns", "c.csv", good_csv_head + b"lonely value\n",
         opts(file_name="c.csv"), "IngestFailed", "line 22: expected 2 columns, found 1"),
        ("csv_duplicate_header", "d.csv", b"text,text\na,b\n", opts(file_name="d.csv"),
         "IngestFailed", "names column 'text' twice"),
        ("tsv_wrong_columns", "t.tsv", b"text\tlabel\nhello\tpos\nbye\tneg\textra\n",
         opts(file_name="t.tsv"), "IngestFailed", "line 3: expected 2 columns, found 3"),
        ("tsv_missing_text_column", "t.tsv", b"body\tlabel\nhello\tpos\n",
         opts(file_name="t.tsv"), "IngestFailed", "columns found: 'body', 'label'"),
        ("jsonl_not_json", "x.jsonl", b'{"text": "a", "label": "x"}\n{"text": "b", \n',
         opts(file_name="x.jsonl"), "IngestFailed", "line 2: not valid JSON"),
        ("jsonl_line_is_array", "x.jsonl", b'{"text": "a", "label": "x"}\n["b", "y"]\n',
         opts(file_name="x.jsonl"), "IngestFailed", "line 2: expected a JSON object, found an array"),
        ("jsonl_line_is_string", "x.jsonl", b'{"text": "a"}\n"just text"\n',
         opts(file_name="x.jsonl"), "IngestFailed", "line 2: expected a JSON object, found a string"),
        ("json_not_array", "data.json", b'{\n  "text": "a",\n  "label": "x"\n}\n',
         opts(file_name="data.json"), "IngestFailed", "not a JSON array"),
        ("json_truncated_array", "data.json",
         b'[{"text": "a", "label": "x"}, {"text": "b", "label":',
         opts(file_name="data.json"), "IngestFailed", "broken after item 1"),
        ("json_array_of_numbers", "data.json", b"[1, 2, 3]", opts(file_name="data.json"),
         "IngestFailed", "item 1 of the array is a number"),
        ("chat_bad_role", "chat.jsonl",
         _jsonl(OK_CHAT, _chat(("user", "hi"), ("bot", "hello"))),
         opts(file_name="chat.jsonl"), "IngestFailed", "line 2, field 'messages': message 2 has role 'bot'"),
        ("chat_without_assistant", "chat.jsonl", _jsonl(OK_CHAT, _chat(("user", "hi"))),
         opts(file_name="chat.jsonl"), "IngestFailed",
         "line 2, field 'messages': the conversation needs a user turn followed by an assistant"),
        ("chat_system_in_middle", "chat.jsonl",
         _jsonl(_chat(("user", "hi"), ("system", "be nice"), ("assistant", "hello")), OK_CHAT),
         opts(file_name="chat.jsonl"), "IngestFailed", "line 1, field 'messages': message 2 is a system turn"),
        ("chat_empty_content", "chat.jsonl",
         _jsonl(OK_CHAT, OK_CHAT, _chat(("user", "hi"), ("assistant", "  "))),
         opts(file_name="chat.jsonl"), "IngestFailed", "line 3, field 'messages': message 2 (assistant) has empty content"),
        ("chat_only_user_turns", "chat.jsonl",
         _jsonl(_chat(("user", "a"), ("user", "c")), OK_CHAT),
         opts(file_name="chat.jsonl"), "IngestFailed",
         "line 1, field 'messages': the conversation needs a user turn followed by an assistant"),
        ("chat_messages_not_list", "chat.jsonl", _jsonl(OK_CHAT, {"messages": "hi there"}),
         opts(file_name="chat.jsonl"), "IngestFailed", "line 2, field 'messages': expected a list"),
        ("instruction_missing_output", "alpaca.jsonl",
         _jsonl({"instruction": "Add", "input": "1+1", "output": "2"},
                {"instruction": "Say hi", "input": "", "output": ""}),
         opts(file_name="alpaca.jsonl"), "IngestFailed", "line 2, field 'output': the field is empty"),
        ("missing_label_column", "m.csv", b"text,score\nhello,1\n",
         opts(file_name="m.csv", task=Task.SEQUENCE_CLASSIFICATION), "IngestFailed",
         "no 'label' column: columns found: 'text', 'score'"),
        ("no_usable_columns", "m.csv", b"foo,bar\n1,2\n", opts(file_name="m.csv"),
         "IngestFailed", "--column-mapping"),
        ("mapping_unknown_column", "m.csv", b"text,label\nhello,a\n",
         opts(file_name="m.csv", column_mapping=ColumnMapping(text="body")), "IngestFailed",
         "field 'column_mapping.text': the column mapping names column 'body'"),
        ("empty_text_field", "e.csv", b"text,label\nhello,a\n,b\nbye,a\n",
         opts(file_name="e.csv"), "IngestFailed", "line 3, field 'text': the field is empty"),
        ("empty_label_field", "e.csv", b"text,label\nhello,a\nthere,\nbye,b\n",
         opts(file_name="e.csv"), "IngestFailed", "line 3, field 'label': the field is empty"),
        ("over_long_field", "long.csv",
         b"text,label\nshort,a\n" + b"x" * 100_001 + b",b\n", opts(file_name="long.csv"),
         "IngestFailed", "line 3, field 'text': the field has 100,001 characters; the limit is 100,000"),
        ("non_string_label", "n.jsonl",
         _jsonl({"text": "a", "label": "x"}, {"text": "b", "label": {"name": "y"}}),
         opts(file_name="n.jsonl"), "IngestFailed", "line 2, field 'label': expected text, found an object"),
        ("null_text_jsonl", "n.jsonl",
         _jsonl({"text": "a", "label": "x"}, {"text": None, "label": "y"}),
         opts(file_name="n.jsonl"), "IngestFailed", "line 2, field 'text': the field is missing or null"),
        ("single_class", "s.csv", b"text,label\n" + _csv_rows(30, ("only",)),
         opts(file_name="s.csv"), "IngestFailed", "field 'label': all 30 rows have the label 'only'"),
        ("class_too_small", "s.csv", good_csv_head + b"rare one,rare\nrare two,rare\n",
         opts(file_name="s.csv"), "IngestFailed", "field 'label': class 'rare' has 2 rows"),
        ("bad_split_column_value", "s.csv",
         b"text,label,split\na,x,train\nb,y,TEST\nc,x,holdout\nd,y,validation\n",
         opts(file_name="s.csv", split=SplitSettings(split_column="split")), "IngestFailed",
         "line 4, field 'split': split value 'holdout'"),
        ("unknown_group_column", "g.csv", good_csv_head,
         opts(file_name="g.csv", split=SplitSettings(group_column="doc")), "IngestFailed",
         "options.split.group_column"),
        ("validation_fraction_too_big", "v.csv", good_csv_head,
         opts(file_name="v.csv", split=SplitSettings(validation_fraction=0.7)),
         "InvalidArgument", "options.split.validation_fraction"),
        ("test_fraction_negative", "v.csv", good_csv_head,
         opts(file_name="v.csv", split=SplitSettings(test_fraction=-0.1)),
         "InvalidArgument", "options.split.test_fraction"),
        ("fractions_sum_to_one", "v.csv", good_csv_head,
         opts(file_name="v.csv", split=SplitSettings(validation_fraction=0.5, test_fraction=0.5)),
         "InvalidArgument", "below 1"),
        ("parquet_wrong_columns", "p.parquet",
         _parquet(pa.table({"a": ["x"], "b": ["y"]})), opts(file_name="p.parquet"),
         "IngestFailed", "columns found: 'a', 'b'"),
        ("parquet_nested_label", "p.parquet",
         _parquet(pa.table({"text": ["a", "b"], "label": [{"k": 1}, {"k": 2}]})),
         opts(file_name="p.parquet"), "IngestFailed", "field 'label': the column holds values of type struct"),
        ("corrupt_parquet", "p.parquet", b"PAR1" + b"garbage" * 20 + b"PAR1",
         opts(file_name="p.parquet"), "IngestFailed", "not a valid Parquet file"),
        ("truncated_parquet", "p.parquet", valid_parquet[:-40], opts(file_name="p.parquet"),
         "IngestFailed", "PAR1 marker is missing at the end"),
        ("parquet_declared_but_csv", "p.bin", good_csv_head,
         opts(file_name="p.bin", format=DataFormat.PARQUET), "IngestFailed",
         "not a valid Parquet file"),
        ("text_only_whitespace", "notes.txt", b"   \n\n \t \n", opts(file_name="notes.txt"),
         "IngestFailed", "contains no text"),
        ("jsonl_only_blank_lines", "x.jsonl", b"\n\n  \n", opts(file_name="x.jsonl"),
         "IngestFailed", "has no records"),
        ("empty_json_array", "x.json", b"[]", opts(file_name="x.json"), "IngestFailed",
         "no records"),
    ]
    return cases


class NetworkStream:
    """A non-seekable stream that hands out at most `chunk` bytes per read, like an upload."""

    def __init__(self, data: bytes, chunk: int = 7919) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._chunk = chunk

    def read(self, n: int = -1) -> bytes:
        size = self._chunk if n is None or n < 0 else min(n, self._chunk)
        out = bytes(self._data[self._pos:self._pos + size])
        self._pos += len(out)
        return out


def ingest_bytes(data: bytes, options: IngestOptions, workdir, **kwargs):
    """Runs the ingest pipeline over `data` as a chunked, non-seekable stream."""
    from services.dataset_svc.domain.ingest import ingest

    return ingest(NetworkStream(data), options, workdir, **kwargs)
