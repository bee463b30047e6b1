"""What a job will cost before it starts: tokens, steps, memory per worker, time.

Memory follows the usual accounting for AdamW training in fp32 master weights
(weights 4 B, gradients 4 B and optimiser state 8 B per trained parameter) plus
activations after Korthikanti et al. 2022 (per layer s·b·h·(34 + 5·a·s/h) bytes at
16 bit, doubled at 32 bit), plus the language-model logits. On all-MiniLM-L6-v2
(batch 16 × 128, full fine-tuning, CPU) this predicts 1.44 GB against 1.46 GB measured.
Time comes from a measured throughput; without one there is no duration, not a guess.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from services.training_svc.domain.model import (
    BaseModel,
    Hyperparameters,
    LoraSettings,
    Precision,
    Task,
    TuningMethod,
)
from services.training_svc.domain.presets import steps_per_epoch

MiB = 2**20
GiB = 2**30
# Python + torch + transformers + peft + a Ray worker, measured at ~440 MiB RSS.
RUNTIME_BYTES = 450 * MiB
HEADROOM = 0.10  # allocator fragmentation and temporaries
# Fixed cost of a job on a warm head, in seconds: 13-15 s from CreateTuningJob to the
# first step (runner actor, Train controller, worker group, model and data) and ~2 s to
# write the model and end (bench/train.py, through the service).
STARTUP_SECONDS = 15.0
MULTI_WORKER_EFFICIENCY = 0.9  # gradient all-reduce over gloo
EVAL_SPEEDUP = 3.0  # a forward pass costs about a third of a training step
CHECKPOINT_BYTES_PER_SECOND = 100 * MiB
CHECKPOINTING_SLOWDOWN = 1.3  # the proto promises "about 30 % slower"
FUSED_ATTENTION = frozenset({"c_attn", "query_key_value", "qkv_proj", "Wqkv"})


@dataclass(frozen=True)
class MemoryBreakdown:
    weights_bytes: int
    gradients_bytes: int
    optimizer_bytes: int
    activations_bytes: int
    overhead_bytes: int

    @property
    def total_bytes(self) -> int:
        return (
            self.weights_bytes
            + self.gradients_bytes
            + self.optimizer_bytes
            + self.activations_bytes
            + self.overhead_bytes
        )


@dataclass(frozen=True)
class Suggestion:
    """Settings that change the estimate; `hyperparameters` holds only the changed
    fields (overrides to apply on top of the request's)."""

    hyperparameters: Hyperparameters
    explanation: str
    peak_memory_bytes: int
    fits: bool
    method: TuningMethod = TuningMethod.UNSPECIFIED  # UNSPECIFIED: unchanged
    duration_seconds: float | None = None


@dataclass(frozen=True)
class Estimate:
    train_examples: int
    train_tokens: int  # one epoch, after truncation
    truncated_examples: int
    tokens_to_process: int  # the whole run
    steps_per_epoch: int
    steps: int  # optimiser steps for the run (each worker takes the same steps)
    epochs: float
    trainable_parameter_count: int
    peak_memory_bytes: int  # per worker
    memory: MemoryBreakdown
    worker_memory_bytes: int
    fits: bool
    duration_seconds: float | None
    suggestions: list[Suggestion] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Shape:
    hidden: int
    layers: int
    heads: int
    vocab: int


def estimate(
    *,
    model: BaseModel,
    task: Task,
    method: TuningMethod,
    hp: Hyperparameters,
    train_rows: int,
    mean_tokens_per_row: float,
    samples_per_second: float | None,
    worker_memory_bytes: int,
    validation_rows: int = 0,
    token_histogram: Sequence[tuple[int, int, int]] = (),
    startup_seconds: float = STARTUP_SECONDS,
) -> Estimate:
    """Estimate a job from resolved hyperparameters. `samples_per_second` is one worker's
    measured training throughput for these settings (None: not calibrated);
    `token_histogram` is the dataset's token-length histogram as (lower, upper, rows)
    buckets, which makes the truncation figures exact rather than mean-based."""
    shape = _shape(model)
    seq = hp.max_seq_length
    tokens_per_row, truncated = _truncation(train_rows, mean_tokens_per_row, seq, token_histogram)
    per_epoch = steps_per_epoch(
        train_rows, hp.per_device_batch_size, hp.gradient_accumulation_steps, hp.num_workers
    )
    steps = hp.max_steps or per_epoch * hp.epochs
    epochs = steps / per_epoch
    train_tokens = round(tokens_per_row * train_rows)
    trainable = _trainable(model, shape, method, hp.lora)
    memory = _memory(model, shape, task, trainable, hp)
    peak = memory.total_bytes
    fits = peak <= worker_memory_bytes
    duration = _duration(
        hp, steps, per_epoch, samples_per_second, validation_rows, trainable, model, method,
        startup_seconds,
    )  # fmt: skip

    suggestions = (
        []
        if fits
        else _suggestions(
            model, shape, task, method, hp, worker_memory_bytes, steps, per_epoch,
            samples_per_second, validation_rows, startup_seconds,
        )
    )  # fmt: skip
    warnings = _warnings(
        hp, train_rows, truncated, mean_tokens_per_row, token_histogram, steps, per_epoch,
        samples_per_second, peak, worker_memory_bytes, suggestions,
    )  # fmt: skip
    return Estimate(
        train_examples=train_rows,
        train_tokens=train_tokens,
        truncated_examples=truncated,
        tokens_to_process=round(train_tokens * epochs),
        steps_per_epoch=per_epoch,
        steps=steps,
        epochs=epochs,
        trainable_parameter_count=trainable,
        peak_memory_bytes=peak,
        memory=memory,
        worker_memory_bytes=worker_memory_bytes,
        fits=fits,
        duration_seconds=duration,
        suggestions=suggestions,
        warnings=warnings,
    )


def _shape(model: BaseModel) -> _Shape:
    """The model's shape, or one consistent with its size (12·L·h² ≈ parameters)."""
    layers = model.num_layers or 12
    hidden = model.hidden_size or max(64, int(math.sqrt(model.parameter_count / (12 * layers))))
    heads = model.num_heads or max(1, hidden // 64)
    return _Shape(hidden, layers, heads, model.vocab_size or 32_000)


def _trainable(model: BaseModel, shape: _Shape, method: TuningMethod, lora: LoraSettings) -> int:
    if method == TuningMethod.FULL:
        return model.parameter_count
    rank = lora.rank or 8
    per_layer = 0
    for name in lora.target_modules or model.default_lora_target_modules:
        # A adapts h → r, B r → out; fused q/k/v projections are 3h wide.
        out = 3 * shape.hidden if name in FUSED_ATTENTION else shape.hidden
        per_layer += rank * (shape.hidden + out)
    return per_layer * shape.layers


def _memory(
    model: BaseModel, shape: _Shape, task: Task, trainable: int, hp: Hyperparameters
) -> MemoryBreakdown:
    b, s, h, a, layers = (
        hp.per_device_batch_size,
        hp.max_seq_length,
        shape.hidden,
        shape.heads,
        shape.layers,
    )
    half = hp.precision in (Precision.BF16, Precision.FP16)
    per_layer = s * b * h * (34 + 5 * a * s / h) * (1 if half else 2)
    if hp.gradient_checkpointing:
        # Only each layer's input is kept; one layer is recomputed at a time.
        activations = layers * s * b * h * (2 if half else 4) + per_layer
    else:
        activations = layers * per_layer
    if task != Task.SEQUENCE_CLASSIFICATION:
        # Logits, their log-softmax and its gradient, in fp32, over the whole vocabulary.
        activations += 3 * b * s * shape.vocab * 4
    weights = 4 * model.parameter_count + (
        4 * trainable if trainable < model.parameter_count else 0
    )
    gradients, optimizer = 4 * trainable, 8 * trainable
    subtotal = weights + gradients + optimizer + activations
    return MemoryBreakdown(
        weights_bytes=int(weights),
        gradients_bytes=int(gradients),
        optimizer_bytes=int(optimizer),
        activations_bytes=int(activations),
        overhead_bytes=int(RUNTIME_BYTES + HEADROOM * (RUNTIME_BYTES + subtotal)),
    )  # fmt: skip


def _duration(
    hp: Hyperparameters,
    steps: int,
    per_epoch: int,
    samples_per_second: float | None,
    validation_rows: int,
    trainable: int,
    model: BaseModel,
    method: TuningMethod,
    startup_seconds: float,
) -> float | None:
    if not samples_per_second or samples_per_second <= 0:
        return None
    workers = hp.num_workers
    rate = samples_per_second * workers * (1.0 if workers == 1 else MULTI_WORKER_EFFICIENCY)
    samples = steps * hp.per_device_batch_size * hp.gradient_accumulation_steps * workers
    train = samples / rate
    # Interval 0 means once per epoch; one more of each at the end.
    evals = steps // (hp.eval_interval_steps or per_epoch) + 1
    evaluation = evals * validation_rows / (rate * EVAL_SPEEDUP)
    saves = steps // (hp.checkpoint_interval_steps or per_epoch) + 1
    saved = 12 * trainable + (4 * model.parameter_count if method == TuningMethod.FULL else 0)
    checkpoints = saves * (1.0 + saved / CHECKPOINT_BYTES_PER_SECOND)
    return startup_seconds + train + evaluation + checkpoints


def _truncation(
    rows: int, mean: float, seq: int, histogram: Sequence[tuple[int, int, int]]
) -> tuple[float, int]:
    """(tokens per row after truncation, rows truncated)."""
    measured = sum(c for _, _, c in histogram)
    if not measured:
        return min(mean, seq), (rows if mean > seq else 0)
    tokens = over = 0.0
    for lower, upper, count in histogram:
        width = max(upper - lower, 1)
        above = min(max((upper - seq) / width, 0.0), 1.0)  # share of the bucket above seq
        tokens += count * (1 - above) * min((lower + min(upper, seq)) / 2, seq)
        tokens += count * above * seq
        over += count * above
    scale = rows / measured
    return tokens / measured, round(over * scale)


def _suggestions(
    model: BaseModel,
    shape: _Shape,
    task: Task,
    method: TuningMethod,
    hp: Hyperparameters,
    limit: int,
    steps: int,
    per_epoch: int,
    sps: float | None,
    validation_rows: int,
    startup: float,
) -> list[Suggestion]:
    """Settings that fit, least harmful first: same training in smaller pieces, then
    recomputation, then LoRA, then cutting the text."""

    def trial(changes: dict, method_change=TuningMethod.UNSPECIFIED, slowdown=1.0):
        lora = changes.pop("lora", hp.lora)
        new = dataclasses.replace(hp, lora=lora, **changes)
        m = method if method_change == TuningMethod.UNSPECIFIED else method_change
        trainable = _trainable(model, shape, m, new.lora)
        peak = _memory(model, shape, task, trainable, new).total_bytes
        duration = _duration(
            new, steps, per_epoch, sps, validation_rows, trainable, model, m, startup
        )
        return peak, None if duration is None else duration * slowdown

    out: list[Suggestion] = []
    b, acc, effective = (
        hp.per_device_batch_size,
        hp.gradient_accumulation_steps,
        hp.per_device_batch_size * hp.gradient_accumulation_steps,
    )
    while b > 1:
        b = max(1, b // 2)
        acc = math.ceil(effective / b)
        peak, dur = trial(
            {"per_device_batch_size": b, "gradient_accumulation_steps": acc}, slowdown=1.1
        )
        if peak <= limit:
            out.append(
                Suggestion(
                    Hyperparameters(per_device_batch_size=b, gradient_accumulation_steps=acc),
                    f"A batch of {b} with gradient accumulation {acc} keeps the effective batch of "
                    f"{b * acc} and fits in memory ({_gib(peak)}); a little slower.",
                    peak,
                    True,
                    duration_seconds=dur,
                )
            )
            break
    if not hp.gradient_checkpointing:
        peak, dur = trial({"gradient_checkpointing": True}, slowdown=CHECKPOINTING_SLOWDOWN)
        if peak <= limit:
            out.append(
                Suggestion(
                    Hyperparameters(gradient_checkpointing=True),
                    f"Gradient checkpointing recomputes activations instead of keeping them: "
                    f"{_gib(peak)}, about 30 % slower, same result.",
                    peak,
                    True,
                    duration_seconds=dur,
                )
            )
    if method == TuningMethod.FULL and model.default_lora_target_modules:
        peak, dur = trial({}, method_change=TuningMethod.LORA)
        if peak <= limit:
            out.append(
                Suggestion(
                    Hyperparameters(),
                    f"LoRA trains small adapters instead of every weight: {_gib(peak)}.",
                    peak,
                    True,
                    TuningMethod.LORA,
                    dur,
                )
            )
    seq = hp.max_seq_length
    while seq > 32:
        seq = max(32, seq // 2)
        peak, dur = trial({"max_seq_length": seq})
        if peak <= limit:
            out.append(
                Suggestion(
                    Hyperparameters(max_seq_length=seq),
                    f"Sequences of at most {seq} tokens fit ({_gib(peak)}), but longer examples "
                    "lose their ends.",
                    peak,
                    True,
                    duration_seconds=dur,
                )
            )
            break
    if not out:
        # Nothing fits alone: everything at once, and say whether even that fits.
        changes = {
            "per_device_batch_size": 1,
            "gradient_accumulation_steps": effective,
            "gradient_checkpointing": True,
            "max_seq_length": min(hp.max_seq_length, 128),
        }
        lora_ok = method == TuningMethod.FULL and model.default_lora_target_modules
        peak, dur = trial(
            dict(changes),
            TuningMethod.LORA if lora_ok else TuningMethod.UNSPECIFIED,
            CHECKPOINTING_SLOWDOWN,
        )
        out.append(
            Suggestion(
                Hyperparameters(**changes),
                f"All memory savings together{' with LoRA' if lora_ok else ''}: {_gib(peak)}"
                + (
                    "."
                    if peak <= limit
                    else "; still too big for a worker, a larger worker or a smaller model is needed."
                ),
                peak,
                peak <= limit,
                TuningMethod.LORA if lora_ok else TuningMethod.UNSPECIFIED,
                dur,
            )
        )
    return out  # fmt: skip


def _warnings(
    hp: Hyperparameters,
    rows: int,
    truncated: int,
    mean: float,
    histogram: Sequence[tuple[int, int, int]],
    steps: int,
    per_epoch: int,
    sps: float | None,
    peak: int,
    limit: int,
    suggestions: list[Suggestion],
) -> list[str]:
    out = []
    seq = hp.max_seq_length
    if peak > limit:
        out.append(
            f"Needs about {_gib(peak)} per worker but a worker has {_gib(limit)}; "
            "see the suggested settings."
        )
    elif peak > 0.8 * limit:
        out.append(
            f"Peak memory is {100 * peak / limit:.0f} % of a worker's memory; little to spare."
        )
    if truncated and histogram:
        out.append(
            f"{100 * truncated / max(rows, 1):.0f} % of examples are longer than {seq} tokens "
            "and will be truncated."
        )
    elif truncated:
        out.append(
            f"Examples average {mean:.0f} tokens, more than max_seq_length {seq}: most will "
            "be truncated."
        )
    if rows < 100:
        out.append(f"Only {rows} training examples: expect unreliable results.")
    if steps < 10:
        out.append(
            f"Only {steps} optimiser steps: the model will barely change; add epochs or data."
        )
    if hp.eval_interval_steps and hp.eval_interval_steps > steps:
        out.append(
            f"eval_interval_steps ({hp.eval_interval_steps}) is beyond the run's {steps} steps: "
            "only the final evaluation runs."
        )
    if sps is None:
        out.append("No throughput measured yet for this model and settings, so no duration: it is being "
                   "measured on the cluster now; ask again in a minute.")
    return out


def _gib(n: float) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / MiB:.0f} MiB"
