"""The streaming readers: rows, line numbers and issues per layout."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.dataset_svc.domain.encoding import ByteSource, Utf8Stream
from services.dataset_svc.domain.readers import (
    CsvReader,
    JsonArrayReader,
    JsonlReader,
    ParquetReader,
    RecordChunk,
    TableChunk,
    TextReader,
)
from services.dataset_svc.domain.validation import IngestFailed, Issues
from tests.unit.dataset.corpus import NetworkStream

BROWN = "/work/shared/data/brown_genres.csv"
CHAT = "/work/shared/data/chatterbot_qa_en.jsonl"


def _open(data: bytes, chunk: int = 4093):
    issues = Issues()
    raw = ByteSource(NetworkStream(data, chunk))
    return raw, Utf8Stream(raw, issues), issues


def _table(chunks) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    chunks = list(chunks)
    assert all(isinstance(c, TableChunk) for c in chunks)
    table = pa.Table.from_batches([c.batch for c in chunks]) if chunks else None
    rows = np.concatenate([c.rows for c in chunks]) if chunks else np.array([])
    lines = np.concatenate([c.lines for c in chunks]) if chunks else np.array([])
    return table, rows, lines


def test_byte_source_peek_then_read() -> None:
    src = ByteSource(NetworkStream(b"0123456789", chunk=3))
    assert src.peek(5) == b"01234"
    assert src.read(4) == b"0123"
    assert src.read(100) == b"456789"
    assert src.read(1) == b""
    assert src.bytes_read == 10


def test_utf8_stream_strips_bom_and_counts() -> None:
    _raw, stream, _ = _open("\ufeffa,\"b\"\nc,é\n".encode(), chunk=2)
    out = b""
    while chunk := stream.read(3):
        out += chunk
    assert out == "a,\"b\"\nc,é\n".encode()
    assert stream.had_bom and stream.newlines == 2 and stream.quotes == 2


def test_utf8_stream_split_multibyte_char_across_chunks() -> None:
    data = ("é" * 5000 + "\n").encode()
    _, stream, issues = _open(data, chunk=1001)  # odd chunk: splits 2-byte characters
    while stream.read(777):
        pass
    assert not issues


def test_utf8_stream_reports_line_and_offset() -> None:
    _, stream, _ = _open(b"ok\nstill ok\nbad \xff here\n", chunk=5)
    with pytest.raises(IngestFailed) as info:
        while stream.read(4):
            pass
    issue = info.value.issues[0]
    assert issue.line == 3 and "0xFF at offset 16" in issue.message


def test_utf8_stream_truncated_character_at_end() -> None:
    _, stream, _ = _open("abc é".encode()[:-1])
    with pytest.raises(IngestFailed, match="ends inside a UTF-8 character"):
        while stream.read(100):
            pass


def test_csv_reads_brown_corpus_with_quotes() -> None:
    with open(BROWN, "rb") as f:
        data = f.read()
    raw, stream, issues = _open(data, chunk=65536)
    reader = CsvReader(raw, stream, issues, block_bytes=1 << 20)
    table, rows, lines = _table(reader.chunks())
    assert not issues
    assert reader.columns == ["text", "label", "document"]
    assert table.num_rows == 8368
    assert table.schema.field("label").type == pa.string()
    assert len(set(table.column("label").to_pylist())) == 15
    assert table.column("text")[0].as_py().startswith('"I like the tradition", a girl said.')
    assert rows[0] == 1 and rows[-1] == 8368
    assert lines[0] == 2


def test_csv_multiline_values_give_physical_lines() -> None:
    data = b'text,label\n"one\ntwo\nthree",a\nplain,b\n"x\ny",c\nlast,d\n'
    raw, stream, issues = _open(data)
    table, rows, lines = _table(CsvReader(raw, stream, issues).chunks())
    assert table.column("text").to_pylist() == ["one\ntwo\nthree", "plain", "x\ny", "last"]
    assert rows.tolist() == [1, 2, 3, 4]
    assert lines.tolist() == [2, 5, 6, 8]


def test_csv_numbers_stay_text() -> None:
    raw, stream, issues = _open(b"text,label\nhello,1\nbye,007\n")
    table, _, _ = _table(CsvReader(raw, stream, issues).chunks())
    assert table.column("label").to_pylist() == ["1", "007"]


def test_csv_bad_rows_are_reported_and_skipped() -> None:
    data = b"text,label\na,1\nb,2,3\nc,4\nd\ne,5\n"
    raw, stream, issues = _open(data)
    table, rows, _lines = _table(CsvReader(raw, stream, issues).chunks())
    assert [i.line for i in issues.items] == [3, 5]
    assert table.column("text").to_pylist() == ["a", "c", "e"]
    assert rows.tolist() == [1, 3, 5]


def test_tsv() -> None:
    raw, stream, issues = _open(b"text\tlabel\nhello, world\tpos\n")
    table, _, _ = _table(CsvReader(raw, stream, issues, delimiter="\t").chunks())
    assert table.to_pylist() == [{"text": "hello, world", "label": "pos"}]


def test_jsonl_lines_and_blank_lines() -> None:
    data = b'{"text": "a"}\n\n{"text": "b", "extra": 1}\r\n  \n{"text": "c"}'
    _, stream, issues = _open(data, chunk=7)
    reader = JsonlReader(stream, issues, batch_rows=2, max_line_bytes=1 << 20)
    chunks = list(reader.chunks())
    assert all(isinstance(c, RecordChunk) for c in chunks)
    assert [len(c.records) for c in chunks] == [2, 1]
    assert np.concatenate([c.lines for c in chunks]).tolist() == [1, 3, 5]
    assert reader.columns == ["text", "extra"]
    assert not issues


def test_jsonl_chatterbot() -> None:
    with open(CHAT, "rb") as f:
        data = f.read()
    _, stream, issues = _open(data, chunk=65536)
    reader = JsonlReader(stream, issues, batch_rows=10_000, max_line_bytes=1 << 20)
    records = [r for c in reader.chunks() for r in c.records]
    assert len(records) == 898
    assert reader.columns == ["category", "prompt", "response", "messages"]


def test_jsonl_line_too_long_is_fatal() -> None:
    _, stream, issues = _open(b'{"text": "' + b"x" * 5000)
    reader = JsonlReader(stream, issues, batch_rows=10, max_line_bytes=1000)
    with pytest.raises(IngestFailed, match="longer than 1,000 bytes"):
        list(reader.chunks())


def test_json_array_streams_items() -> None:
    data = b'\xef\xbb\xbf [{"text": "a", "n": 1.5}, {"text": "b"}, {"text": "c"}]'
    raw, stream, issues = _open(data, chunk=5)
    reader = JsonArrayReader(raw, stream, issues, batch_rows=2)
    chunks = list(reader.chunks())
    assert [r["text"] for c in chunks for r in c.records] == ["a", "b", "c"]
    assert chunks[0].records[0]["n"] == 1.5
    assert np.concatenate([c.rows for c in chunks]).tolist() == [1, 2, 3]
    assert stream.had_bom


def test_parquet_is_spooled_and_iterated(tmp_path) -> None:
    buf = io.BytesIO()
    table = pa.table({"text": [f"t{i}" for i in range(25)], "label": list(range(25))})
    pq.write_table(table, buf, row_group_size=10)
    raw = ByteSource(NetworkStream(buf.getvalue()))
    reader = ParquetReader(raw, tmp_path, Issues(), batch_rows=7)
    out, rows, _ = _table(reader.chunks())
    assert out.num_rows == 25 and rows.tolist() == list(range(1, 26))
    assert reader.columns == ["text", "label"]
    assert not list(tmp_path.iterdir())  # the spooled copy is removed


def test_text_paragraphs_with_start_lines() -> None:
    data = b"First para\ncontinues here.\n\n\nSecond para.\n  \nThird\r\nends\n"
    _, stream, issues = _open(data, chunk=3)
    reader = TextReader(stream, issues, batch_rows=100, max_chars=1000)
    table, rows, _ = _table(reader.chunks())
    assert reader.paragraphs is True
    assert table.column("text").to_pylist() == [
        "First para\ncontinues here.", "Second para.", "Third\nends"]
    assert rows.tolist() == [1, 5, 7]


def test_text_without_blank_lines_is_one_row_per_line() -> None:
    _, stream, issues = _open(b"line one\nline two\nline three\n\n")
    reader = TextReader(stream, issues, batch_rows=2, max_chars=1000)
    table, rows, _ = _table(reader.chunks())
    assert reader.paragraphs is False
    assert table.column("text").to_pylist() == ["line one", "line two", "line three"]
    assert rows.tolist() == [1, 2, 3]
