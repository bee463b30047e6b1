"""Which layout an upload has: from the format asked for, the file name, the first bytes.

Rules, in order:
1. An explicit `DataFormat` wins (the bytes are still checked by the reader).
2. Parquet magic `PAR1` at the start → PARQUET, whatever the name.
3. A known extension: .csv, .tsv/.tab, .jsonl/.ndjson, .json, .parquet/.pq, .txt/.text/.md.
   A `.json` file whose first line is a complete JSON object is JSON Lines.
4. Otherwise the first non-blank character: `[` → JSON, `{` → JSONL; then the header
   line: a tab → TSV, a comma → CSV; anything else → plain TEXT.
"""

from __future__ import annotations

import os

import orjson

from services.dataset_svc.domain.model import DataFormat

PARQUET_MAGIC = b"PAR1"

_EXTENSIONS = {
    ".csv": DataFormat.CSV,
    ".tsv": DataFormat.TSV,
    ".tab": DataFormat.TSV,
    ".jsonl": DataFormat.JSONL,
    ".ndjson": DataFormat.JSONL,
    ".jsonlines": DataFormat.JSONL,
    ".json": DataFormat.JSON,
    ".parquet": DataFormat.PARQUET,
    ".pq": DataFormat.PARQUET,
    ".txt": DataFormat.TEXT,
    ".text": DataFormat.TEXT,
    ".md": DataFormat.TEXT,
}

FORMAT_NAMES = {
    DataFormat.CSV: "CSV",
    DataFormat.TSV: "TSV",
    DataFormat.JSONL: "JSON Lines",
    DataFormat.JSON: "JSON array",
    DataFormat.PARQUET: "Parquet",
    DataFormat.TEXT: "plain text",
}


def format_from_name(file_name: str) -> DataFormat:
    """The format a file name's extension implies (UNSPECIFIED when none does)."""
    ext = os.path.splitext(file_name.strip().lower())[1]
    return _EXTENSIONS.get(ext, DataFormat.UNSPECIFIED)


def detect_format(requested: DataFormat, file_name: str, head: bytes) -> DataFormat:
    """Resolves the upload's format from the request, the name and the first bytes."""
    if requested != DataFormat.UNSPECIFIED:
        return requested
    if head.startswith(PARQUET_MAGIC):
        return DataFormat.PARQUET
    text = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    stripped = text.lstrip()
    by_name = format_from_name(file_name)
    if by_name == DataFormat.JSON and stripped.startswith(b"{") and _first_line_is_object(stripped):
        return DataFormat.JSONL
    if by_name != DataFormat.UNSPECIFIED:
        return by_name
    if stripped.startswith(b"["):
        return DataFormat.JSON
    if stripped.startswith(b"{"):
        return DataFormat.JSONL
    first_line = stripped.split(b"\n", 1)[0]
    if b"\t" in first_line:
        return DataFormat.TSV
    if b"," in first_line:
        return DataFormat.CSV
    return DataFormat.TEXT


def _first_line_is_object(data: bytes) -> bool:
    line = data.split(b"\n", 1)[0].strip()
    try:
        return isinstance(orjson.loads(line), dict)
    except orjson.JSONDecodeError:
        return False
