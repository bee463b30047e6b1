"""Pages of canonical rows, read from the split's Parquet file in object storage.

Only the row groups that hold the page are fetched (ranged reads), so previewing the
millionth row of a large split costs the same as the first."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from services.common.objectstore import ObjectStore


@dataclass(frozen=True)
class PreviewPage:
    columns: list[str]
    rows: list[dict[str, Any]]
    total_rows: int
    next_page_token: str = field(default="")


def read_rows(objects: ObjectStore, key: str, offset: int, limit: int) -> PreviewPage:
    """Rows [offset, offset + limit) of the Parquet object `key`."""
    fs, path = objects.arrow_filesystem(), f"{objects.bucket}/{key}"
    with fs.open_input_file(path) as source:
        parquet = pq.ParquetFile(source)
        meta = parquet.metadata
        columns = parquet.schema_arrow.names
        tables, start = [], 0
        for index in range(meta.num_row_groups):
            rows = meta.row_group(index).num_rows
            end = start + rows
            if end > offset and start < offset + limit:
                group = parquet.read_row_group(index)
                lo = max(offset - start, 0)
                tables.append(group.slice(lo, min(offset + limit, end) - start - lo))
            start = end
            if start >= offset + limit:
                break
    table = pa.concat_tables(tables) if tables else pa.table({c: [] for c in columns})
    return PreviewPage(columns=columns, rows=table.to_pylist(), total_rows=meta.num_rows)
