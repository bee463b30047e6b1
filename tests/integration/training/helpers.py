"""Test data for training runs: canonical Parquet splits in S3, a tiny GPT-2, specs."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from services.training_svc.domain.model import (
    Hyperparameters,
    LoraSettings,
    LrScheduler,
    Precision,
    Task,
    TrainingSpec,
    TuningMethod,
)

SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
GENRES = ("government", "fiction_romance", "press_reviews")


def brown_rows(n_train: int = 400, n_val: int = 90, seed: int = 3) -> tuple[list[dict], list[dict]]:
    table = pacsv.read_csv(SHARED_DATA / "brown_genres.csv")
    rows = [r for r in table.select(["text", "label"]).to_pylist() if r["label"] in GENRES]
    rng = random.Random(seed)
    rng.shuffle(rows)
    per = {g: [r for r in rows if r["label"] == g] for g in GENRES}
    train, val = [], []
    for g in GENRES:
        train += per[g][: n_train // len(GENRES)]
        val += per[g][n_train // len(GENRES) : n_train // len(GENRES) + n_val // len(GENRES)]
    rng.shuffle(train)
    return train, val


def chat_rows(limit: int = 200) -> list[dict]:
    rows = []
    with open(SHARED_DATA / "chatterbot_qa_en.jsonl", encoding="utf-8") as f:
        for line in f:
            rows.append({"messages": json.loads(line)["messages"]})
            if len(rows) >= limit:
                break
    return rows


def text_rows(limit: int = 300) -> list[dict]:
    table = pacsv.read_csv(SHARED_DATA / "brown_genres.csv")
    return [{"text": t} for t in table.column("text").to_pylist()[:limit]]


def put_split(s3, key: str, rows: list[dict]) -> str:
    """Write rows as a canonical split (with source_row); returns its s3:// URI."""
    rows = [{**r, "source_row": i} for i, r in enumerate(rows)]
    fs = s3.filesystem()
    with fs.open_output_stream(f"{s3.bucket}/{key}") as out:
        pq.write_table(pa.Table.from_pylist(rows), out)
    return s3.uri(key)


def tiny_gpt2(cache_dir: Path) -> Path:
    """The catalog's tiny GPT-2 (built once into cache_dir)."""
    from services.training_svc.domain.catalog import Catalog

    return Path(Catalog(cache_dir=cache_dir).get("tiny-gpt2").source)


def hyperparameters(**overrides) -> Hyperparameters:
    base = Hyperparameters(
        epochs=2,
        max_steps=0,
        learning_rate=2e-3,
        lr_scheduler=LrScheduler.LINEAR,
        warmup_ratio=0.0,
        per_device_batch_size=16,
        gradient_accumulation_steps=1,
        max_seq_length=64,
        weight_decay=0.0,
        seed=7,
        eval_interval_steps=10,
        checkpoint_interval_steps=10,
        early_stopping_patience=0,
        early_stopping_threshold=0.0,
        num_workers=2,
        use_gpu=False,
        precision=Precision.FP32,
        gradient_checkpointing=False,
        max_grad_norm=1.0,
        lora=LoraSettings(rank=8, alpha=16, dropout=0.0, target_modules=("query", "value")),
    )
    return replace(base, **overrides)


def spec(
    *,
    task: Task,
    model: str,
    train_uri: str,
    validation_uri: str = "",
    label_names=(),
    method: TuningMethod = TuningMethod.LORA,
    fan_in_fan_out: bool = False,
    hp: Hyperparameters | None = None,
    **extra,
) -> TrainingSpec:
    job = uuid.uuid4().hex[:8]
    return TrainingSpec(
        job_name=f"projects/test/tuningJobs/{job}",
        run_name=f"run-{job}",
        task=task,
        base_model_source=model,
        base_model_is_local=True,
        lora_fan_in_fan_out=fan_in_fan_out,
        method=method,
        hyperparameters=hp or hyperparameters(),
        train_uri=train_uri,
        validation_uri=validation_uri,
        label_names=tuple(label_names),
        output_prefix=f"training/projects/test/tuningJobs/{job}/output",
        storage_path=extra.pop("storage_path", None) or "",
        **extra,
    )


class PidSinkFactory:
    """Like ActorSinkFactory, and first tells the collector which process rank 0 is."""

    def __init__(self, actor) -> None:
        self.actor = actor

    def __call__(self):
        import os

        from services.training_svc.trainer.events import ActorSink

        sink = ActorSink(self.actor)
        sink.emit("log", {"level": "DEBUG", "message": "sink ready", "pid": os.getpid()})
        return sink
