"""Streaming readers, one per layout. Each yields bounded chunks of source rows.

Tabular layouts (CSV, TSV, Parquet, plain text) yield `TableChunk`s (an Arrow batch of
the source columns); JSON layouts yield `RecordChunk`s (parsed objects), since their
values may be of any JSON type and are checked row by row. Every chunk carries
`rows` (the `source_row`: 1-based data-record number, header excluded; for JSON Lines
and plain text the file line) and `lines` (where an issue is reported):

- CSV/TSV: `line` is the physical line of the record's start, counting the header and
  the newlines inside quoted values of the rows before it. pyarrow does not report
  blank lines it skips, so after a blank line the line is low by one per blank line;
  for rows it rejects (wrong column count) pyarrow gives the record number, reported
  as the line (exact when no value before it spans lines).
- JSON Lines, plain text: exact physical line (paragraphs: their first line).
- JSON array, Parquet: the record number (item N of the array, row N of the table).
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import ijson
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from services.dataset_svc.domain.encoding import BOM, ByteSource, Utf8Stream
from services.dataset_svc.domain.formats import PARQUET_MAGIC
from services.dataset_svc.domain.validation import Issues, json_type

# pyarrow's streaming CSV reader reads up to 32 blocks ahead of the parser (not
# configurable), so the block bounds that buffer; parsed blocks are then joined into
# batches of about CSV_BATCH_BYTES. Every batch costs fixed per-call overhead, but a
# batch's temporaries (its text, hashes and normalised copy, and the next batch parsed
# ahead) are live at once: 1 MiB keeps the service's memory per upload under 100 MB.
CSV_BLOCK_BYTES = 128 << 10
CSV_BATCH_BYTES = 1 << 20
READ_BYTES = 1 << 20
TEXT_DECIDE_CHARS = 4 << 20  # plain text: paragraph or line mode is decided on this much


@dataclass
class TableChunk:
    batch: pa.RecordBatch
    rows: np.ndarray  # int64 source_row
    lines: np.ndarray  # int64 line for issues


@dataclass
class RecordChunk:
    records: list[dict]
    rows: np.ndarray
    lines: np.ndarray


Chunk = TableChunk | RecordChunk


class CsvReader:
    """CSV/TSV through pyarrow's streaming reader, every column read as text."""

    def __init__(self, source: ByteSource, stream: Utf8Stream, issues: Issues,
                 *, delimiter: str = ",", block_bytes: int = CSV_BLOCK_BYTES,
                 batch_bytes: int = CSV_BATCH_BYTES) -> None:
        self._source = source
        self._stream = stream
        self._issues = issues
        self._delimiter = delimiter
        self._block = block_bytes
        self._batch_bytes = batch_bytes
        self.columns: list[str] = []
        self._next_record = 2  # pyarrow numbers records from 1, the header being 1
        self._skipped: set[int] = set()
        self._extra_newlines = 0  # newlines inside values of the rows already yielded
        self._last_multiline_line = 0

    def _bad_row(self, row: pacsv.InvalidRow) -> str:
        number = row.number or self._next_record
        self._skipped.add(number)
        text = row.text if len(row.text) <= 80 else row.text[:77] + "..."
        self._issues.add(
            number + self._extra_newlines, "",
            f"expected {row.expected_columns} columns, found {row.actual_columns} "
            f"(check quoting and delimiters): {text!r}", "WRONG_COLUMN_COUNT")
        return "skip"

    def _header_names(self) -> list[str] | None:
        head = self._source.peek(1 << 20)
        if head.startswith(BOM):
            head = head[3:]
        text = head.decode("utf-8", errors="replace")
        try:
            return next(csv.reader(io.StringIO(text), delimiter=self._delimiter))
        except (StopIteration, csv.Error):
            return None

    def chunks(self) -> Iterator[Chunk]:
        names = self._header_names()
        convert = pacsv.ConvertOptions(
            column_types={n: pa.string() for n in names or ()},
            check_utf8=False, strings_can_be_null=False, quoted_strings_can_be_null=False)
        try:
            reader = pacsv.open_csv(
                pa.PythonFile(self._stream, mode="r"),
                read_options=pacsv.ReadOptions(block_size=self._block, use_threads=False),
                parse_options=pacsv.ParseOptions(
                    delimiter=self._delimiter, newlines_in_values=True,
                    invalid_row_handler=self._bad_row),
                convert_options=convert)
            self.columns = list(reader.schema.names)
            self._check_header()
            parts: list[TableChunk] = []
            size = 0
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                parts.append(self._chunk(batch))
                size += batch.nbytes
                if size >= self._batch_bytes:
                    yield _joined(parts)
                    parts, size = [], 0
            if parts:
                yield _joined(parts)
        except pa.ArrowException as exc:
            if self._stream.error is not None:
                raise self._stream.error from None
            message = str(exc)
            if "Empty CSV file" in message:
                return  # zero rows: reported by the pipeline
            raise self._issues.fatal(self._next_record + self._extra_newlines, "",
                                     f"cannot parse the file: {message}", "PARSE_ERROR") from None
        self._check_quotes()

    def _check_header(self) -> None:
        bad = False
        seen: set[str] = set()
        for i, name in enumerate(self.columns):
            if not name.strip():
                self._issues.add(1, "", f"column {i + 1} of the header has no name", "BAD_HEADER")
                bad = True
            elif name in seen:
                self._issues.add(1, name, f"the header names column '{name}' twice", "BAD_HEADER")
                bad = True
            seen.add(name)
        if bad:
            raise self._issues.failure()

    def _chunk(self, batch: pa.RecordBatch) -> TableChunk:
        n = batch.num_rows
        cols = []
        for col in batch.columns:
            if not pa.types.is_string(col.type):
                col = col.cast(pa.string()) if _castable(col.type) else col
            cols.append(col)
        batch = pa.RecordBatch.from_arrays(cols, names=batch.schema.names)
        records = self._record_numbers(n)
        newlines = np.zeros(n, dtype=np.int64)
        for col in cols:
            if pa.types.is_string(col.type) and _may_hold_newline(col):
                newlines += pc.fill_null(pc.count_substring(col, "\n"), 0).to_numpy(
                    zero_copy_only=False)
        before = np.cumsum(newlines) - newlines
        lines = records + self._extra_newlines + before
        if n:
            multi = np.flatnonzero(newlines)
            if len(multi):
                self._last_multiline_line = int(lines[multi[-1]])
            self._extra_newlines += int(newlines.sum())
        return TableChunk(batch, records - 1, lines)

    def _record_numbers(self, n: int) -> np.ndarray:
        start = self._next_record
        if not self._skipped:
            numbers = np.arange(start, start + n, dtype=np.int64)
        else:
            out = []
            cur = start
            while len(out) < n:
                if cur in self._skipped:
                    self._skipped.discard(cur)
                else:
                    out.append(cur)
                cur += 1
            numbers = np.array(out, dtype=np.int64)
        self._next_record = int(numbers[-1]) + 1 if n else start
        return numbers

    def _check_quotes(self) -> None:
        # pyarrow silently lets an unclosed quote swallow the rest of the file as one value.
        if self._stream.quotes % 2 and self._last_multiline_line:
            self._issues.add(
                self._last_multiline_line, "",
                "a quoted value opened here is never closed (unbalanced '\"'); "
                "the rest of the file was read as one value", "BROKEN_QUOTE")


def _joined(parts: list[TableChunk]) -> TableChunk:
    if len(parts) == 1:
        return parts[0]
    batch = pa.Table.from_batches([p.batch for p in parts]).combine_chunks().to_batches()[0]
    return TableChunk(batch, np.concatenate([p.rows for p in parts]),
                      np.concatenate([p.lines for p in parts]))


def _may_hold_newline(col: pa.Array) -> bool:
    """Cheap pre-check (memchr over the data buffer) before counting newlines per value."""
    data = col.buffers()[2]
    return data is not None and data.to_pybytes().find(b"\n") >= 0


def _castable(t: pa.DataType) -> bool:
    return (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            or pa.types.is_null(t) or pa.types.is_decimal(t) or pa.types.is_temporal(t)
            or pa.types.is_large_string(t) or pa.types.is_dictionary(t))


class JsonlReader:
    """One JSON object per line, parsed with orjson; blank lines are skipped."""

    def __init__(self, stream: Utf8Stream, issues: Issues, *, batch_rows: int,
                 max_line_bytes: int) -> None:
        self._stream = stream
        self._issues = issues
        self._batch_rows = batch_rows
        self._max_line = max_line_bytes
        self.columns: list[str] = []
        self._colset: set[str] = set()

    def chunks(self) -> Iterator[Chunk]:
        records: list[dict] = []
        lines: list[np.ndarray] = []
        pending = b""
        line_no = 0
        issues = self._issues
        while True:
            chunk = self._stream.read(READ_BYTES)
            if not chunk:
                parts = [pending] if pending.strip() else []
                pending = b""
            else:
                parts = (pending + chunk).split(b"\n")
                pending = parts.pop()
                if len(pending) > self._max_line:
                    raise issues.fatal(line_no + len(parts) + 1, "",
                                       f"the line is longer than {self._max_line:,} bytes",
                                       "LINE_TOO_LONG")
            objs, numbers = self._parse(parts, line_no)
            line_no += len(parts)
            if objs:
                self._add_columns(objs)
                records.extend(objs)
                lines.append(numbers)
            if len(records) >= self._batch_rows or (not chunk and records):
                arr = np.concatenate(lines)
                yield RecordChunk(records, arr, arr)
                records, lines = [], []
            if not chunk:
                return

    def _parse(self, parts: list[bytes], first: int) -> tuple[list[dict], np.ndarray]:
        """Objects of `parts` (lines after line `first`) with their line numbers."""
        try:  # fast path: every line is an object, parsed without a Python-level loop
            objs = list(map(orjson.loads, parts))
            if set(map(type, objs)) <= {dict}:
                return objs, np.arange(first + 1, first + 1 + len(objs), dtype=np.int64)
        except orjson.JSONDecodeError:
            pass
        objs = []
        numbers = []
        issues = self._issues
        for n, part in enumerate(parts, first + 1):
            try:
                obj = orjson.loads(part)
            except orjson.JSONDecodeError as exc:
                if part.strip():
                    issues.add(n, "", f"not valid JSON: {exc}", "INVALID_JSON")
                continue
            if type(obj) is not dict:
                issues.add(n, "", f"expected a JSON object, found {json_type(obj)}",
                           "NOT_AN_OBJECT")
                continue
            objs.append(obj)
            numbers.append(n)
        return objs, np.array(numbers, dtype=np.int64)

    def _add_columns(self, objs: list[dict]) -> None:
        if set().union(*objs) <= self._colset:
            return
        for obj in objs:
            for key in obj:
                if key not in self._colset:
                    self._colset.add(key)
                    self.columns.append(key)


class JsonArrayReader:
    """A top-level JSON array of objects, streamed item by item with ijson."""

    def __init__(self, source: ByteSource, stream: Utf8Stream, issues: Issues,
                 *, batch_rows: int) -> None:
        self._source = source
        self._stream = stream
        self._issues = issues
        self._batch_rows = batch_rows
        self.columns: list[str] = []
        self._colset: set[str] = set()

    def chunks(self) -> Iterator[Chunk]:
        head = self._source.peek(4096)
        if head.startswith(BOM):
            head = head[3:]
        first = head.lstrip()[:1]
        if first != b"[":
            what = {b"{": "a JSON object", b"": "empty"}.get(first, f"'{first.decode('latin-1')}'")
            raise self._issues.fatal(
                0, "", f"the file is not a JSON array of records (it starts with {what}); "
                "upload [{...}, {...}] or JSON Lines (one object per line)", "NOT_A_JSON_ARRAY")
        records: list[dict] = []
        numbers: list[int] = []
        n = 0
        try:
            for item in ijson.items(self._stream, "item", use_float=True):
                n += 1
                if type(item) is not dict:
                    self._issues.add(n, "", f"item {n} of the array is {json_type(item)}, "
                                     "expected an object", "NOT_AN_OBJECT")
                    continue
                if not item.keys() <= self._colset:
                    for key in item:
                        if key not in self._colset:
                            self._colset.add(key)
                            self.columns.append(key)
                records.append(item)
                numbers.append(n)
                if len(records) >= self._batch_rows:
                    arr = np.array(numbers, dtype=np.int64)
                    yield RecordChunk(records, arr, arr)
                    records, numbers = [], []
        except ijson.JSONError as exc:
            if self._stream.error is not None:
                raise self._stream.error from None
            raise self._issues.fatal(
                n + 1, "", f"the JSON array is broken after item {n} (truncated or invalid "
                f"JSON): {exc}", "INVALID_JSON") from None
        if records:
            arr = np.array(numbers, dtype=np.int64)
            yield RecordChunk(records, arr, arr)


class ParquetReader:
    """Parquet needs random access: the stream is spooled to `workdir` first."""

    def __init__(self, source: ByteSource, workdir: Path, issues: Issues, *,
                 batch_rows: int) -> None:
        self._source = source
        self._path = workdir / "_upload.parquet"
        self._issues = issues
        self._batch_rows = batch_rows
        self.columns: list[str] = []
        self.schema: pa.Schema | None = None

    def chunks(self) -> Iterator[Chunk]:
        size = 0
        with open(self._path, "wb") as out:
            while chunk := self._source.read(READ_BYTES):
                out.write(chunk)
                size += len(chunk)
        try:
            with open(self._path, "rb") as f:
                head = f.read(4)
                f.seek(max(0, size - 4))
                tail = f.read(4)
            if head != PARQUET_MAGIC or tail != PARQUET_MAGIC or size < 12:
                raise self._issues.fatal(
                    0, "", "not a valid Parquet file: the PAR1 marker is missing at the "
                    f"{'start' if head != PARQUET_MAGIC else 'end'} (truncated or another "
                    "format?)", "CORRUPT_PARQUET")
            try:
                pf = pq.ParquetFile(self._path)
            except (pa.ArrowException, OSError) as exc:
                raise self._issues.fatal(0, "", f"not a valid Parquet file: {exc}",
                                         "CORRUPT_PARQUET") from None
            self.schema = pf.schema_arrow
            self.columns = list(self.schema.names)
            start = 1
            try:
                for batch in pf.iter_batches(batch_size=self._batch_rows):
                    rows = np.arange(start, start + batch.num_rows, dtype=np.int64)
                    start += batch.num_rows
                    yield TableChunk(batch, rows, rows)
            except (pa.ArrowException, OSError) as exc:
                raise self._issues.fatal(start, "", f"the Parquet file is corrupt: {exc}",
                                         "CORRUPT_PARQUET") from None
        finally:
            try:
                os.unlink(self._path)
            except OSError:
                pass


_BLANK_BETWEEN = re.compile(r"\S[ \t\r]*\n[ \t\r]*\n[ \t\r]*\S")


class TextReader:
    """Plain text: one row per paragraph (blank-line separated), or per line when the
    first `TEXT_DECIDE_CHARS` characters have no blank line between two text lines."""

    def __init__(self, stream: Utf8Stream, issues: Issues, *, batch_rows: int,
                 max_chars: int) -> None:
        self._stream = stream
        self._issues = issues
        self._batch_rows = batch_rows
        self._max_chars = max_chars
        self.columns = ["text"]
        self.paragraphs: bool | None = None

    def _lines(self) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        while True:
            chunk = self._stream.read(READ_BYTES)
            if not chunk:
                tail = pending + decoder.decode(b"", final=True)
                if tail:
                    yield tail
                return
            parts = (pending + decoder.decode(chunk)).split("\n")
            pending = parts.pop()
            if len(pending) > 4 * self._max_chars + (1 << 20):
                parts.append(pending)  # a giant line: hand it over and let it be flagged
                pending = ""
            yield from parts

    def chunks(self) -> Iterator[Chunk]:
        lines = self._lines()
        window: list[str] = []
        size = 0
        for line in lines:
            window.append(line)
            size += len(line) + 1
            if size >= TEXT_DECIDE_CHARS:
                break
        self.paragraphs = bool(_BLANK_BETWEEN.search("\n".join(window)))

        def all_lines() -> Iterator[str]:
            yield from window
            yield from lines

        texts: list[str] = []
        starts: list[int] = []
        rows_iter = self._paragraphs(all_lines()) if self.paragraphs else self._single(all_lines())
        for start, text in rows_iter:
            texts.append(text)
            starts.append(start)
            if len(texts) >= self._batch_rows:
                yield self._chunk(texts, starts)
                texts, starts = [], []
        if texts:
            yield self._chunk(texts, starts)

    @staticmethod
    def _single(lines: Iterator[str]) -> Iterator[tuple[int, str]]:
        for n, line in enumerate(lines, 1):
            line = line.rstrip("\r")
            if line.strip():
                yield n, line

    def _paragraphs(self, lines: Iterator[str]) -> Iterator[tuple[int, str]]:
        current: list[str] = []
        start = 0
        size = 0
        for n, line in enumerate(lines, 1):
            line = line.rstrip("\r")
            if line.strip():
                if not current:
                    start = n
                    size = 0
                if size <= self._max_chars:  # keep memory bounded; the length check flags it
                    current.append(line)
                size += len(line) + 1
            elif current:
                yield start, "\n".join(current)
                current = []
        if current:
            yield start, "\n".join(current)

    @staticmethod
    def _chunk(texts: list[str], starts: list[int]) -> TableChunk:
        rows = np.array(starts, dtype=np.int64)
        return TableChunk(pa.record_batch([pa.array(texts, pa.string())], names=["text"]),
                          rows, rows)
