"""Upload helpers: ``IngestOptions`` from friendly values, and the chunked request stream.

The stream reads the file lazily, one chunk per message, so an upload of any size
holds at most one chunk in memory.
"""

from __future__ import annotations

import asyncio
import io
import os
import stat
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mtw.common.v1 import task_pb2
from mtw.dataset.v1 import dataset_service_pb2 as svc
from mtw.dataset.v1 import dataset_version_pb2 as ver
from mtw.errors import ConfigurationError

MiB = 1024 * 1024
DEFAULT_CHUNK_SIZE = 1 * MiB
MAX_CHUNK_SIZE = 4 * MiB  # the service refuses bigger chunks

Source = str | os.PathLike | IO[bytes]
Progress = Callable[[int, "int | None"], None]

FORMATS: dict[str, int] = {
    "auto": ver.DATA_FORMAT_UNSPECIFIED,
    "csv": ver.DATA_FORMAT_CSV,
    "tsv": ver.DATA_FORMAT_TSV,
    "jsonl": ver.DATA_FORMAT_JSONL,
    "json": ver.DATA_FORMAT_JSON,
    "parquet": ver.DATA_FORMAT_PARQUET,
    "text": ver.DATA_FORMAT_TEXT,
}
TASKS: dict[str, int] = {
    "auto": task_pb2.TASK_UNSPECIFIED,
    "classification": task_pb2.TASK_SEQUENCE_CLASSIFICATION,
    "causal-lm": task_pb2.TASK_CAUSAL_LM,
    "chat-sft": task_pb2.TASK_CHAT_SFT,
}
PII_HANDLING: dict[str, int] = {
    "auto": ver.PII_HANDLING_UNSPECIFIED,
    "report": ver.PII_HANDLING_REPORT,
    "redact": ver.PII_HANDLING_REDACT,
}
# Aliases people type; normalised before lookup.
_ALIASES = {
    "sequence-classification": "classification",
    "causal_lm": "causal-lm",
    "clm": "causal-lm",
    "chat_sft": "chat-sft",
    "sft": "chat-sft",
    "txt": "text",
    "ndjson": "jsonl",
}


def _enum(value: Any, table: Mapping[str, int], enum: Any, what: str) -> int:
    """Accept a friendly name (``csv``), the proto name (``DATA_FORMAT_CSV``) or a number."""
    if value is None:
        return 0
    if isinstance(value, int):
        if value not in enum.values():
            raise ConfigurationError(f"unknown {what} {value}")
        return value
    text = str(value).strip()
    key = _ALIASES.get(text.lower(), text.lower())
    if key in table:
        return table[key]
    try:
        return enum.Value(text.upper())
    except ValueError:
        raise ConfigurationError(
            f"unknown {what} {value!r}; choose one of {', '.join(table)}"
        ) from None


def parse_format(value: Any) -> int:
    return _enum(value, FORMATS, ver.DataFormat, "format")


def parse_task(value: Any) -> int:
    return _enum(value, TASKS, task_pb2.Task, "task")


def parse_pii_handling(value: Any) -> int:
    if value is True:
        return ver.PII_HANDLING_REDACT
    if value is False:
        return ver.PII_HANDLING_REPORT
    return _enum(value, PII_HANDLING, ver.PiiHandling, "PII handling")


_MAPPING_FIELDS = tuple(f.name for f in ver.ColumnMapping.DESCRIPTOR.fields)
_SPLIT_FIELDS = tuple(f.name for f in ver.SplitSettings.DESCRIPTOR.fields)


def build_ingest_options(
    *,
    file_name: str | None = None,
    format: Any = None,
    task: Any = None,
    column_mapping: Mapping[str, str] | ver.ColumnMapping | None = None,
    split: Mapping[str, Any] | ver.SplitSettings | None = None,
    pii_handling: Any = None,
    tokenizer_model: str | None = None,
) -> ver.IngestOptions:
    """``IngestOptions`` from friendly values; ``None`` leaves a field to the service.

    ``column_mapping`` keys: text, label, messages, prompt, input, response.
    ``split`` keys: validation_fraction, test_fraction, seed, split_column,
    group_column, stratify.
    """
    options = ver.IngestOptions(
        file_name=os.path.basename(file_name) if file_name else "",
        format=parse_format(format),
        task=parse_task(task),
        pii_handling=parse_pii_handling(pii_handling),
        tokenizer_model=tokenizer_model or "",
    )
    if isinstance(column_mapping, ver.ColumnMapping):
        options.column_mapping.CopyFrom(column_mapping)
    elif column_mapping:
        _check_keys(column_mapping, _MAPPING_FIELDS, "column_mapping")
        for key, column in column_mapping.items():
            if column:
                setattr(options.column_mapping, key, column)
    if isinstance(split, ver.SplitSettings):
        options.split.CopyFrom(split)
    elif split:
        _check_keys(split, _SPLIT_FIELDS, "split")
        for key, value in split.items():
            if value is not None and value != "":
                setattr(options.split, key, value)
    return options


def _check_keys(values: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ConfigurationError(
            f"unknown {what} key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
        )


@dataclass
class _Opened:
    fileobj: IO[bytes]
    owned: bool
    file_name: str
    size: int | None


def _open(source: Source) -> _Opened:
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        f = open(path, "rb")  # noqa: SIM115 - closed by the request stream
        return _Opened(f, True, path.name, os.fstat(f.fileno()).st_size)
    if not hasattr(source, "read"):
        raise TypeError(f"expected a path or a binary file object, got {type(source).__name__}")
    name = getattr(source, "name", None)
    # Pseudo-files are named like "<stdin>": not a file name worth sending.
    base = os.path.basename(name) if isinstance(name, str) and not name.startswith("<") else ""
    return _Opened(source, False, base, _remaining(source))


def _remaining(f: IO[bytes]) -> int | None:
    """Bytes from the current position to the end, when the object can tell."""
    try:
        pos = f.tell()
        try:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):  # a pipe or socket: its size means nothing
                return None
            return st.st_size - pos
        except (OSError, AttributeError, io.UnsupportedOperation):
            pass
        if f.seekable():
            end = f.seek(0, io.SEEK_END)
            f.seek(pos)
            return end - pos
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        pass
    return None


def _check_chunk_size(chunk_size: int) -> None:
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ConfigurationError(f"chunk_size must be between 1 and {MAX_CHUNK_SIZE} bytes")


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, str):  # a text-mode file: send its UTF-8 bytes
        return data.encode("utf-8")
    return bytes(data)


class UploadStream:
    """The request stream of one upload: the header, then the file in chunks.

    Iterate it (sync) or ``async for`` it (grpc.aio); the file is opened on first
    use and closed at the end. ``size``/``file_name`` are known after ``prepare()``.
    """

    def __init__(
        self,
        parent: str,
        source: Source,
        options: ver.IngestOptions,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        progress: Progress | None = None,
    ) -> None:
        _check_chunk_size(chunk_size)
        self.parent = parent
        self.source = source
        self.options = options
        self.chunk_size = chunk_size
        self.progress = progress
        self.bytes_sent = 0
        self._opened: _Opened | None = None

    def prepare(self) -> _Opened:
        """Open the source (once) and fill in the file name when not given."""
        if self._opened is None:
            self._opened = _open(self.source)
            if not self.options.file_name and self._opened.file_name:
                self.options.file_name = self._opened.file_name
        return self._opened

    @property
    def size(self) -> int | None:
        return self.prepare().size

    def header(self) -> svc.UploadDatasetVersionRequest:
        opened = self.prepare()
        header = svc.UploadHeader(parent=self.parent, size_bytes=opened.size or 0)
        header.options.CopyFrom(self.options)
        return svc.UploadDatasetVersionRequest(header=header)

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.bytes_sent, self._opened.size if self._opened else None)

    def close(self) -> None:
        if self._opened is not None and self._opened.owned:
            self._opened.fileobj.close()

    def __iter__(self) -> Iterator[svc.UploadDatasetVersionRequest]:
        try:
            yield self.header()
            self._report()
            read = self._opened.fileobj.read
            while data := read(self.chunk_size):
                data = _as_bytes(data)
                yield svc.UploadDatasetVersionRequest(chunk=data)
                self.bytes_sent += len(data)
                self._report()
        finally:
            self.close()

    async def __aiter__(self) -> AsyncIterator[svc.UploadDatasetVersionRequest]:
        try:
            yield self.header()
            self._report()
            read = self._opened.fileobj.read
            while data := await asyncio.to_thread(read, self.chunk_size):
                data = _as_bytes(data)
                yield svc.UploadDatasetVersionRequest(chunk=data)
                self.bytes_sent += len(data)
                self._report()
        finally:
            self.close()
