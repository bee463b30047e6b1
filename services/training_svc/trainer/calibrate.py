"""Measured training throughput for one model/task/method/shape on this machine, for
time estimates. Runs a few real optimizer steps on synthetic text (call it inside a
Ray task so it measures a worker's cores; cache the figure)."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from services.training_svc.domain.model import Task, TuningMethod

_WORDS = [
    "the",
    "model",
    "reads",
    "data",
    "and",
    "learns",
    "from",
    "every",
    "passage",
    "of",
    "text",
    "that",
    "people",
    "write",
    "about",
    "the",
    "world",
    "science",
    "history",
    "music",
    "food",
    "travel",
    "law",
    "sport",
    "weather",
    "money",
    "health",
    "art",
]


def measure_throughput(
    model_source: str,
    is_local: bool,
    task: Task,
    method: TuningMethod,
    max_seq_length: int,
    batch_size: int,
    fan_in_fan_out: bool,
    *,
    target_modules: Sequence[str] = (),
    steps: int = 6,
    warmup_steps: int = 2,
) -> float:
    """Training samples per second (forward, backward and optimizer step) of one worker."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    del is_local  # the loaders take a local folder and a hub id alike
    tok = AutoTokenizer.from_pretrained(model_source, trust_remote_code=False)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.unk_token
    common = dict(trust_remote_code=False, use_safetensors=True)  # noqa: C408
    classify = task is Task.SEQUENCE_CLASSIFICATION
    if classify:
        model = AutoModelForSequenceClassification.from_pretrained(
            model_source, num_labels=2, **common
        )
    else:
        model = AutoModelForCausalLM.from_pretrained(model_source, **common)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    if method is TuningMethod.LORA:
        config = LoraConfig(
            task_type=TaskType.SEQ_CLS if classify else TaskType.CAUSAL_LM,
            r=8,
            lora_alpha=16,
            target_modules=list(target_modules) or None,
            fan_in_fan_out=fan_in_fan_out,
        )
        model = get_peft_model(model, config)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    rng = random.Random(0)
    # Texts long enough to fill max_seq_length, so the figure is for full-length rows.
    texts = [
        " ".join(rng.choice(_WORDS) for _ in range(max_seq_length * 2)) for _ in range(batch_size)
    ]
    batch = tok(
        texts, truncation=True, max_length=max_seq_length, padding="max_length", return_tensors="pt"
    )
    if classify:
        batch["labels"] = torch.tensor([i % 2 for i in range(batch_size)])
    else:
        batch["labels"] = batch["input_ids"].clone()
    elapsed = 0.0
    for i in range(warmup_steps + steps):
        t0 = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if i >= warmup_steps:
            elapsed += time.perf_counter() - t0
    return steps * batch_size / elapsed
