"""The ingest pipeline: one streamed pass from uploaded bytes to canonical split files.

bytes ─► format sniffing ─► UTF-8 guard ─► reader (chunks) ─► mapping/canonical batch
      ─► row checks ─► split assignment ─► quality profiler (PII redaction)
      ─► one zstd Parquet file per split in `workdir`

Memory is bounded by the chunk size (`IngestLimits.batch_rows` rows, or a 2 MB CSV batch);
the next chunk is parsed and the last row group compressed in threads (`overlap`), one
of each in flight. Parquet uploads are spooled to `workdir` first because Parquet needs random access.
Any problem found fails the ingest at the end with `IngestFailed` (the first
`max_issues` problems and the total); fatal ones (binary, undecodable, broken JSON
array, empty file) stop it at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from services.dataset_svc.domain.encoding import SNIFF_BYTES, ByteSource, Utf8Stream, sniff_binary
from services.dataset_svc.domain.formats import FORMAT_NAMES, detect_format
from services.dataset_svc.domain.mapping import (
    Canonicalizer,
    ResolvedMapping,
    canonical_schema,
    column_empty_counts,
    resolve_mapping,
)
from services.dataset_svc.domain.model import (
    CANONICAL_COLUMNS,
    SPLITS,
    ColumnMapping,
    ColumnProfile,
    DataFormat,
    IngestOptions,
    PiiHandling,
    QualityReport,
    QualityWarning,
    Severity,
    Task,
)
from services.dataset_svc.domain.overlap import BackgroundCalls, Prefetcher
from services.dataset_svc.domain.profile import QualityProfiler
from services.dataset_svc.domain.readers import (
    Chunk,
    CsvReader,
    JsonArrayReader,
    JsonlReader,
    ParquetReader,
    TextReader,
)
from services.dataset_svc.domain.splits import (
    BlockSplitter,
    ColumnSplitter,
    GroupSplitter,
    nonempty_splits,
    validate_split_settings,
)
from services.dataset_svc.domain.tokens import load_token_counter
from services.dataset_svc.domain.validation import IngestFailed, Issues

__all__ = ["IngestFailed", "IngestLimits", "IngestResult", "ingest", "split_path"]

# Rows are buffered until a split has WRITE_ROWS of them or all splits together hold
# WRITE_BYTES; then each split's buffer becomes a Parquet row group. Bounding the total
# rather than each split keeps the small splits from holding a buffer each.
WRITE_ROWS = 65_536
WRITE_BYTES = 4 << 20


@dataclass(frozen=True)
class IngestLimits:
    max_field_chars: int = 100_000
    max_issues: int = 100
    batch_rows: int = 10_000


@dataclass(frozen=True)
class IngestResult:
    format: DataFormat
    task: Task
    column_mapping: ColumnMapping  # resolved: canonical field -> source column
    columns: tuple[str, ...]  # canonical columns (each split file also has `source_row`)
    label_names: tuple[str, ...]  # classification labels in order of first appearance
    split_rows: dict[str, int]
    split_files: dict[str, Path]
    report: QualityReport
    source_columns: tuple[str, ...]


def ingest(source: BinaryIO, options: IngestOptions, workdir: Path, *,
           limits: IngestLimits = IngestLimits(),
           token_counter_loader: Callable[[str], Callable[[list[str]], list[int]]]
           = load_token_counter) -> IngestResult:
    """Validates, converts, splits and profiles an upload read once from `source`.

    `source` needs only `read(n)`. Raises `IngestFailed` (an InvalidArgument) listing
    the problems with their lines and fields, or InvalidArgument for bad options.
    """
    validate_split_settings(options.split)
    token_counter = (token_counter_loader(options.tokenizer_model)
                     if options.tokenizer_model else None)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    issues = Issues(limits.max_issues)
    raw = ByteSource(source)
    head = raw.peek(SNIFF_BYTES)
    if not head:
        raise issues.fatal(0, "", "the file is empty (0 bytes)", "EMPTY_FILE")
    fmt = detect_format(options.format, options.file_name, head)
    stream = Utf8Stream(raw, issues)
    if fmt != DataFormat.PARQUET:
        why = sniff_binary(head)
        if why:
            raise issues.fatal(0, "", why, "BINARY_FILE")
    reader = _open_reader(fmt, raw, stream, workdir, issues, limits)
    run = _Run(fmt, options, workdir, issues, limits, token_counter)
    # The reader parses the next chunk in a thread while this one is profiled; the
    # columns are taken with each chunk (JSON readers add keys as they meet them).
    chunks = Prefetcher(((c, list(reader.columns)) for c in reader.chunks()), "ingest-read")
    try:
        for chunk, columns in chunks:
            run.feed(chunk, columns)
        if stream.error is not None:
            raise stream.error
        return run.finish(reader.columns, had_bom=stream.had_bom)
    finally:
        chunks.close()
        run.close()


def split_path(workdir: Path, split: str) -> Path:
    """Where `ingest` writes the canonical Parquet file of `split`."""
    return Path(workdir) / f"{split}.parquet"


def _open_reader(fmt: DataFormat, raw: ByteSource, stream: Utf8Stream, workdir: Path,
                 issues: Issues, limits: IngestLimits):
    if fmt == DataFormat.CSV:
        return CsvReader(raw, stream, issues, delimiter=",")
    if fmt == DataFormat.TSV:
        return CsvReader(raw, stream, issues, delimiter="\t")
    if fmt == DataFormat.JSONL:
        return JsonlReader(stream, issues, batch_rows=limits.batch_rows,
                           max_line_bytes=max(16 << 20, 8 * limits.max_field_chars))
    if fmt == DataFormat.JSON:
        return JsonArrayReader(raw, stream, issues, batch_rows=limits.batch_rows)
    if fmt == DataFormat.PARQUET:
        return ParquetReader(raw, workdir, issues, batch_rows=limits.batch_rows)
    return TextReader(stream, issues, batch_rows=limits.batch_rows,
                      max_chars=limits.max_field_chars)


class _Run:
    """State of one ingest: set up on the first chunk, once the columns are known."""

    def __init__(self, fmt: DataFormat, options: IngestOptions, workdir: Path, issues: Issues,
                 limits: IngestLimits, token_counter) -> None:
        self.fmt = fmt
        self.options = options
        self.workdir = workdir
        self.issues = issues
        self.limits = limits
        self.token_counter = token_counter
        self.resolved: ResolvedMapping | None = None
        self.canon: Canonicalizer | None = None
        self.profiler: QualityProfiler | None = None
        self.writers: dict[str, pq.ParquetWriter] = {}
        self.writes = BackgroundCalls("ingest-write")  # encoding + zstd off the profiler's thread
        self.pending: dict[str, list[pa.RecordBatch]] = {s: [] for s in SPLITS}
        self.pending_rows: dict[str, int] = dict.fromkeys(SPLITS, 0)
        self.pending_bytes = 0  # across the splits: that total is what is bounded
        self.split_rows: dict[str, int] = dict.fromkeys(SPLITS, 0)
        self.label_counts: dict[str, int] = {}
        self.empties: dict[str, int] = {}
        self.rows = 0
        self.splitter = None

    # --- setup -----------------------------------------------------------------------

    def _start(self, columns: list[str]) -> None:
        opts = self.options
        # Row problems the reader met in the first block are no reason to stop here: only
        # unusable options are; the rows are still checked so that every problem is reported.
        before = self.issues.total
        self.resolved = resolve_mapping(columns, opts.task, opts.column_mapping, self.issues)
        s = opts.split
        for name in ("split_column", "group_column"):
            col = getattr(s, name)
            if col and col not in columns:
                self.issues.add(0, f"options.split.{name}",
                                f"{name} '{col}' is not a column of the file (columns found: "
                                f"{', '.join(repr(c) for c in columns)})", "UNKNOWN_COLUMN")
        if self.issues.total > before:
            raise self.issues.failure()
        self.canon = Canonicalizer(self.resolved, self.issues, max_chars=self.limits.max_field_chars,
                                   extra_columns=(s.split_column, s.group_column))
        if s.split_column:
            self.splitter = ColumnSplitter(s.split_column, self.issues)
        elif s.group_column:
            self.splitter = GroupSplitter(s)
        else:
            self.splitter = BlockSplitter(s)
        self.profiler = QualityProfiler(
            self.resolved.task, token_counter=self.token_counter,
            tokenizer_model=opts.tokenizer_model if self.token_counter else "",
            redact_pii=opts.pii_handling == PiiHandling.REDACT)
        schema = canonical_schema(self.resolved.task)
        for split in SPLITS:
            # dictionary pages only pay off for labels; for free text they cost time
            self.writers[split] = pq.ParquetWriter(
                split_path(self.workdir, split), schema, compression="zstd",
                use_dictionary=["label"] if "label" in schema.names else False)

    # --- per chunk -------------------------------------------------------------------

    def feed(self, chunk: Chunk, columns: list[str]) -> None:
        if self.resolved is None:
            self._start(columns)
        assert self.canon is not None and self.resolved is not None
        n = len(chunk.rows)
        for name, count in column_empty_counts(chunk, columns).items():
            if name not in self.empties:
                self.empties[name] = self.rows  # a JSON key first seen now: absent before
            self.empties[name] += count
        batch, extras = self.canon.convert(chunk)
        s = self.options.split
        if s.split_column:
            split = self.splitter.assign(extras[s.split_column], chunk.lines)
        elif s.group_column:
            split = self.splitter.assign(extras[s.group_column])
        elif self.resolved.task == Task.SEQUENCE_CLASSIFICATION and s.stratify:
            split = self.splitter.assign(batch.column("label"), n)
        else:
            split = self.splitter.assign(None, n)
        if self.resolved.task == Task.SEQUENCE_CLASSIFICATION:
            for item in pc.value_counts(batch.column("label")).to_pylist():
                if item["values"]:
                    self.label_counts[item["values"]] = (
                        self.label_counts.get(item["values"], 0) + item["counts"])
        self.rows += n
        if self.issues:
            return  # the ingest will fail: keep checking, stop producing
        batch = self.profiler.add(batch, split)
        for code, name in enumerate(SPLITS):
            mask = split == code
            count = int(mask.sum())
            if not count:
                continue
            part = batch if count == n else batch.filter(pa.array(mask))
            self.pending[name].append(part)
            self.pending_rows[name] += count
            self.pending_bytes += part.nbytes
            self.split_rows[name] += count
        if (max(self.pending_rows.values()) >= WRITE_ROWS
                or self.pending_bytes >= WRITE_BYTES):
            self._flush()

    def _flush(self) -> None:
        """Hands the buffered rows to the writer thread: a row group for each split."""
        tables = {name: pa.Table.from_batches(parts) for name, parts in self.pending.items() if parts}
        if tables:
            self.writes.submit(self._write, tables)
        self.pending = {s: [] for s in SPLITS}
        self.pending_rows = dict.fromkeys(SPLITS, 0)
        self.pending_bytes = 0

    def _write(self, tables: dict[str, pa.Table]) -> None:
        for name, table in tables.items():
            self.writers[name].write_table(table)

    # --- end -------------------------------------------------------------------------

    def finish(self, columns: list[str], *, had_bom: bool) -> IngestResult:
        issues = self.issues
        if self.rows == 0:
            if issues:  # every record was rejected before mapping could start
                raise issues.failure()
            raise issues.fatal(0, "", self._no_rows_message(columns), "NO_ROWS")
        assert self.resolved is not None
        task = self.resolved.task
        label_col = self.resolved.mapping.label
        if task == Task.SEQUENCE_CLASSIFICATION and self.label_counts:
            s = self.options.split
            if len(self.label_counts) == 1:
                (only, count), = self.label_counts.items()
                issues.add(0, label_col, f"all {count:,} rows have the label '{only}'; "
                           "classification needs at least two classes", "SINGLE_CLASS")
            elif s.stratify and not s.split_column and not s.group_column:
                needed = nonempty_splits(s)
                for label, count in self.label_counts.items():
                    if count < len(needed):
                        issues.add(0, label_col,
                                   f"class '{label}' has {count} row{'s' if count != 1 else ''}; "
                                   f"it needs at least {len(needed)} to appear in every split "
                                   f"({', '.join(needed)}): add rows, merge the class or lower "
                                   "the split fractions", "CLASS_TOO_SMALL")
        issues.raise_if_any()
        self._flush()
        self.writes.wait()
        self.close()
        used = self.resolved.used()
        extra = {self.options.split.split_column: "split", self.options.split.group_column: "group"}
        profiles = [ColumnProfile(name=c, mapped_to=used.get(c) or extra.get(c, ""),
                                  empty_count=self.empties.get(c, 0)) for c in columns]
        assert self.profiler is not None
        report = self.profiler.finish(columns=profiles, column_count=len(columns),
                                      had_bom=had_bom)
        if self.canon is not None and self.canon.trimmed_rows:
            report = dataclasses.replace(
                report, warnings=report.warnings + (_trimmed_warning(self.canon.trimmed_rows),)
            )
        return IngestResult(
            format=self.fmt,
            task=task,
            column_mapping=self.resolved.mapping,
            columns=tuple(CANONICAL_COLUMNS[task]),
            label_names=tuple(self.label_counts),
            split_rows=dict(self.split_rows),
            split_files={name: split_path(self.workdir, name) for name in SPLITS},
            report=report,
            source_columns=tuple(columns),
        )

    def _no_rows_message(self, columns: list[str]) -> str:
        if self.fmt in (DataFormat.CSV, DataFormat.TSV):
            if columns:
                return (f"the file has a header (columns: {', '.join(columns)}) but no data "
                        "rows")
            return "the file has no header and no data rows"
        if self.fmt == DataFormat.TEXT:
            return "the file contains no text (it is empty or only whitespace)"
        if self.fmt == DataFormat.JSON:
            return "the JSON array has no records"
        return f"the {FORMAT_NAMES.get(self.fmt, 'file')} file has no records"

    def close(self) -> None:
        self.writes.close()
        for writer in self.writers.values():
            with contextlib.suppress(Exception):  # closing after another error
                writer.close()
        self.writers = {}


def _trimmed_warning(rows: list[int]) -> QualityWarning:
    n = len(rows)
    return QualityWarning(
        code="TRAILING_TURNS_DROPPED",
        severity=Severity.INFO,
        message=(f"{n:,} conversation{'s end' if n != 1 else ' ends'} with turns after the last "
                 "assistant reply; there is nothing to learn from them, so they were left out "
                 "of the training copy"),
        example_rows=tuple(rows[:10]),
    )
