"""A dataset version's split, read from object storage the way the trainer reads it:
Parquet record batches streamed from S3, this worker's rows only (``index % world ==
rank``), so memory holds one batch of rows at a time, never the split."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from services.common.task import Task

_COLUMNS = {
    Task.SEQUENCE_CLASSIFICATION: ["text", "label"],
    Task.CAUSAL_LM: ["text"],
    Task.CHAT_SFT: ["messages"],
}
READ_BATCH_ROWS = 2048


class DataError(ValueError):
    """The split cannot be evaluated (a column is missing, a row is malformed)."""

    def __init__(self, message: str, row: int | None = None) -> None:
        super().__init__(message if row is None else f"row {row}: {message}")
        self.row = row


@dataclass(frozen=True)
class Row:
    row: int  # 1-based row of the source file (the dataset's source_row)
    text: str = ""  # classification / causal LM
    label: str = ""
    messages: tuple[dict, ...] = ()


def sample_indices(total: int, max_examples: int, seed: int) -> np.ndarray | None:
    """Split positions a run evaluates: all (None), or a reproducible sample."""
    if not max_examples or max_examples >= total:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(total, size=max_examples, replace=False))


def read_rows(fs, path: str, task: Task, *, rank: int = 0, world: int = 1,
              sample: np.ndarray | None = None) -> Iterator[list[Row]]:
    """Lists of this worker's rows, one list per Parquet record batch."""
    import pyarrow.parquet as pq

    with fs.open_input_file(path) as f:
        parquet = pq.ParquetFile(f)
        names = set(parquet.schema_arrow.names)
        missing = [c for c in _COLUMNS[task] if c not in names]
        if missing:
            raise DataError(f"the split has no column {', '.join(missing)} (columns: {sorted(names)})")
        columns = _COLUMNS[task] + (["source_row"] if "source_row" in names else [])
        index = 0  # position in the split
        taken = 0  # position among the sampled rows (the sharding key when sampling)
        for batch in parquet.iter_batches(batch_size=READ_BATCH_ROWS, columns=columns):
            mine: list[Row] = []
            for record in batch.to_pylist():
                position = index
                index += 1
                if sample is not None:
                    if taken >= len(sample) or sample[taken] != position:
                        continue
                    key = taken
                    taken += 1
                else:
                    key = position
                if key % world != rank:
                    continue
                source_row = record.get("source_row")
                row = int(source_row) + 1 if source_row is not None else position + 1
                mine.append(_row(task, row, record))
            if mine:
                yield mine


def _row(task: Task, row: int, record: dict) -> Row:
    if task is Task.CHAT_SFT:
        messages = record.get("messages") or []
        clean = []
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("system", "user", "assistant") \
                    or not isinstance(m.get("content"), str):
                raise DataError(f"malformed message {m!r}", row)
            clean.append({"role": m["role"], "content": m["content"]})
        if not clean or clean[-1]["role"] != "assistant":
            while clean and clean[-1]["role"] != "assistant":
                clean.pop()
        if not clean:
            raise DataError("the conversation has no assistant reply to compare with", row)
        return Row(row, messages=tuple(clean))
    text = record.get("text")
    if not isinstance(text, str):
        raise DataError("the text is missing", row)
    label = record.get("label")
    return Row(row, text=text, label="" if label is None else str(label))
