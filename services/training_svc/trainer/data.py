"""Canonical splits → tokenised examples, per task.

Workers read the Parquet split from S3 in record batches and keep only their own rows
(``row % world == rank``), so memory holds one shard plus one batch. A row that can't
become a training example raises ``BadDataError(row, message)`` with its ``source_row``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from services.training_svc.domain.failures import BadDataError
from services.training_svc.domain.model import Task

IGNORE_INDEX = -100
_COLUMNS = {
    Task.SEQUENCE_CLASSIFICATION: ["text", "label"],
    Task.CAUSAL_LM: ["text"],
    Task.CHAT_SFT: ["messages"],
}


def read_rows(
    fs, path: str, task: Task, *, rank: int = 0, world: int = 1
) -> Iterator[dict[str, Any]]:
    """This worker's rows of a canonical split (``source_row`` included when present)."""
    import pyarrow.parquet as pq

    with fs.open_input_file(path) as f:
        pf = pq.ParquetFile(f)
        names = set(pf.schema_arrow.names)
        missing = [c for c in _COLUMNS[task] if c not in names]
        if missing:
            raise BadDataError(
                None, f"the split has no column {', '.join(missing)} (columns: {sorted(names)})"
            )
        columns = _COLUMNS[task] + (["source_row"] if "source_row" in names else [])
        index = 0
        for batch in pf.iter_batches(batch_size=2048, columns=columns):
            for row in batch.to_pylist():
                if index % world == rank:
                    row.setdefault("source_row", index)
                    yield row
                index += 1


def encode_classification(rows, tokenizer, label_names: Sequence[str], max_len: int) -> list[dict]:
    label_id = {name: i for i, name in enumerate(label_names)}
    out = []
    for row in rows:
        text, label = row.get("text"), row.get("label")
        if not isinstance(text, str) or not text.strip():
            raise BadDataError(row["source_row"], "the text is empty")
        if label is None or str(label) not in label_id:
            raise BadDataError(
                row["source_row"],
                f"label {label!r} is not one of the dataset's labels {list(label_names)}",
            )
        enc = tokenizer(text, truncation=True, max_length=max_len)
        out.append(
            {
                "input_ids": enc["input_ids"],
                "attention_mask": enc["attention_mask"],
                "labels": label_id[str(label)],
            }
        )
    return out


def encode_causal_lm(rows, tokenizer, max_len: int) -> list[dict]:
    """Texts joined with EOS and cut into full blocks of ``max_len`` tokens (packing)."""
    eos = tokenizer.eos_token_id
    buffer: list[int] = []
    out = []
    for row in rows:
        text = row.get("text")
        if not isinstance(text, str):
            raise BadDataError(row["source_row"], "the text is missing")
        if not text.strip():
            continue
        buffer.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        if eos is not None:
            buffer.append(eos)
        while len(buffer) >= max_len:
            block, buffer = buffer[:max_len], buffer[max_len:]
            out.append({"input_ids": block, "attention_mask": [1] * max_len, "labels": list(block)})
    if buffer and (
        not out or len(buffer) >= 8
    ):  # keep a short tail rather than lose small datasets
        out.append(
            {"input_ids": buffer, "attention_mask": [1] * len(buffer), "labels": list(buffer)}
        )
    return out


def encode_chat(rows, tokenizer, max_len: int) -> list[dict]:
    """Chat template applied; labels only on assistant tokens (the rest is -100).

    Assistant spans are found by rendering growing prefixes of the conversation, so any
    prefix-stable template works (no ``{% generation %}`` markers needed).
    """
    if tokenizer.chat_template is None:
        raise BadDataError(None, "the base model's tokenizer has no chat template")
    out = []
    for row in rows:
        messages = row.get("messages")
        if not messages:
            raise BadDataError(row["source_row"], "the conversation has no messages")
        msgs = []
        for m in messages:
            if (
                not isinstance(m, dict)
                or not isinstance(m.get("content"), str)
                or m.get("role") not in ("system", "user", "assistant")
            ):
                raise BadDataError(row["source_row"], f"malformed message {m!r}")
            msgs.append({"role": m["role"], "content": m["content"]})
        if not any(m["role"] == "assistant" for m in msgs):
            raise BadDataError(
                row["source_row"], "the conversation has no assistant reply to learn from"
            )
        spans: list[tuple[int, int]] = []
        previous = ""
        try:
            for i, m in enumerate(msgs):
                rendered = tokenizer.apply_chat_template(msgs[: i + 1], tokenize=False)
                if m["role"] == "assistant":
                    # From the reply's first character (not the role header) to the end of the
                    # turn, so the end-of-turn token is learnt too.
                    base = len(previous) if rendered.startswith(previous) else 0
                    start = rendered.find(m["content"], base) if m["content"] else -1
                    spans.append((start if start >= 0 else base, len(rendered)))
                previous = rendered
        except Exception as exc:
            raise BadDataError(row["source_row"], f"the chat template failed: {exc}") from exc
        enc = tokenizer(
            previous,
            add_special_tokens=False,
            truncation=True,
            max_length=max_len,
            return_offsets_mapping=True,
        )
        labels = [
            tok if any(s <= a and b <= e and b > a for s, e in spans) else IGNORE_INDEX
            for tok, (a, b) in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
        ]
        if all(x == IGNORE_INDEX for x in labels):
            continue  # the reply was cut off by max_seq_length: nothing to learn here
        out.append(
            {
                "input_ids": enc["input_ids"],
                "attention_mask": enc["attention_mask"],
                "labels": labels,
            }
        )
    return out


def encode(task: Task, rows, tokenizer, *, label_names: Sequence[str], max_len: int) -> list[dict]:
    if task is Task.SEQUENCE_CLASSIFICATION:
        return encode_classification(rows, tokenizer, label_names, max_len)
    if task is Task.CAUSAL_LM:
        return encode_causal_lm(rows, tokenizer, max_len)
    if task is Task.CHAT_SFT:
        return encode_chat(rows, tokenizer, max_len)
    raise ValueError(f"unsupported task {task}")


def equalise(examples: list[dict], count: int) -> list[dict]:
    """Pad a shard to ``count`` examples by repeating its own (DDP needs equal batches)."""
    if not examples:
        return examples
    out = list(examples)
    i = 0
    while len(out) < count:
        out.append(examples[i % len(examples)])
        i += 1
    return out[:count] if len(out) > count else out


class Collator:
    """Pads input_ids/attention_mask (and token labels with -100) to the batch's longest."""

    def __init__(self, pad_id: int, token_labels: bool) -> None:
        self.pad_id = pad_id
        self.token_labels = token_labels

    def __call__(self, batch: list[dict]) -> dict:
        import torch

        width = max(len(b["input_ids"]) for b in batch)
        ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids[i, :n] = torch.tensor(b["input_ids"])
            mask[i, :n] = torch.tensor(b["attention_mask"])
        out = {"input_ids": ids, "attention_mask": mask}
        if self.token_labels:
            labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
            for i, b in enumerate(batch):
                labels[i, : len(b["labels"])] = torch.tensor(b["labels"])
            out["labels"] = labels
        else:
            out["labels"] = torch.tensor([b["labels"] for b in batch], dtype=torch.long)
        return out
