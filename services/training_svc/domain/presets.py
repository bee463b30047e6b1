"""Presets, the AUTO choice, and validation of every hyperparameter.

The proto (`hyperparameters.proto`) is the contract for what each preset means and
each field's range; the values here follow it. Overrides win field by field.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from services.common.errors import FieldViolation, InvalidArgument
from services.training_svc.domain.model import (
    BaseModel,
    Hyperparameters,
    LoraSettings,
    LrScheduler,
    Precision,
    Preset,
    Task,
    TuningMethod,
)

PRESET_DESCRIPTIONS: dict[Preset, str] = {
    Preset.QUICK: "A short run to check that everything works end to end: one pass over "
    "the data (at most 200 steps), no early stopping. Minutes, not hours.",
    Preset.BALANCED: "Sensible defaults for most datasets: 3 passes over the data, an "
    "evaluation after each, and an early stop when two evaluations in a row don't improve.",
    Preset.THOROUGH: "More passes (6) with an evaluation every half pass and patient early "
    "stopping; slower, usually a little better on small datasets.",
    Preset.AUTO: "Let MTW choose: thorough for small datasets, balanced for medium ones, "
    "quick for large ones (a text or chat example counts as four classification "
    "examples), one step lighter for models over a billion parameters.",
    Preset.CUSTOM: "Set the values yourself; anything left unset takes the balanced value.",
}

# AUTO thresholds, in classification-row equivalents.
AUTO_SMALL_ROWS = 2_000
AUTO_LARGE_ROWS = 50_000
GENERATIVE_ROW_WEIGHT = 4  # a text/chat row carries several times the tokens to learn from
BIG_MODEL_PARAMETERS = 1_000_000_000
QUICK_MAX_STEPS = 200


@dataclass(frozen=True)
class _Level:
    """What differs between presets."""

    epochs: int
    lr_lora: float
    lr_full: float
    warmup_ratio: float
    weight_decay: float
    seq_classification: int
    seq_generative: int
    evals_per_epoch: int  # 0: evaluate only when needed for early stopping
    patience: int


_LEVELS = {
    Preset.QUICK: _Level(1, 3e-4, 3e-5, 0.05, 0.0, 128, 256, 1, 0),
    Preset.BALANCED: _Level(3, 2e-4, 2e-5, 0.06, 0.01, 256, 512, 1, 2),
    Preset.THOROUGH: _Level(6, 1e-4, 1e-5, 0.1, 0.01, 512, 1024, 2, 4),
}

# Same for every preset: the safe basics.
_BASICS = {
    "lr_scheduler": LrScheduler.LINEAR,
    "per_device_batch_size": 16,
    "gradient_accumulation_steps": 1,
    "seed": 42,
    "early_stopping_threshold": 0.0,
    "num_workers": 1,
    "use_gpu": False,
    "gradient_checkpointing": False,
    "max_grad_norm": 1.0,
}
LORA_DEFAULTS = LoraSettings(rank=8, alpha=16, dropout=0.05)


def auto_preset(*, task: Task, model: BaseModel, train_rows: int) -> Preset:
    """Small data needs more passes (and they are cheap); large data learns in one."""
    weight = 1 if task == Task.SEQUENCE_CLASSIFICATION else GENERATIVE_ROW_WEIGHT
    rows = train_rows * weight
    if rows < AUTO_SMALL_ROWS:
        preset = Preset.THOROUGH
    elif rows <= AUTO_LARGE_ROWS:
        preset = Preset.BALANCED
    else:
        preset = Preset.QUICK
    if model.parameter_count >= BIG_MODEL_PARAMETERS and preset != Preset.QUICK:
        # Each step of a big model is expensive, and big models need fewer passes.
        preset = Preset.BALANCED if preset == Preset.THOROUGH else Preset.QUICK
    return preset


def steps_per_epoch(train_rows: int, batch: int, accumulation: int, workers: int) -> int:
    """Optimiser steps in one pass, as the Hugging Face Trainer counts them per worker."""
    rows_per_worker = math.ceil(max(train_rows, 1) / max(workers, 1))
    batches = math.ceil(rows_per_worker / max(batch, 1))
    return max(1, math.ceil(batches / max(accumulation, 1)))


def resolve(
    preset: Preset,
    overrides: Hyperparameters,
    *,
    task: Task,
    model: BaseModel,
    method: TuningMethod,
    train_rows: int,
    has_validation: bool = True,
) -> tuple[Preset, Hyperparameters]:
    """(the concrete preset used, every hyperparameter set). UNSPECIFIED and CUSTOM take
    BALANCED values; AUTO picks by `auto_preset`. Without a validation split there is
    nothing to stop early on, so early stopping is off."""
    if preset == Preset.AUTO:
        preset = auto_preset(task=task, model=model, train_rows=train_rows)
    elif preset == Preset.UNSPECIFIED:
        preset = Preset.BALANCED
    level = _LEVELS[Preset.BALANCED if preset == Preset.CUSTOM else preset]
    o = overrides

    seq = level.seq_classification if task == Task.SEQUENCE_CLASSIFICATION else level.seq_generative
    use_gpu = _pick(o.use_gpu, _BASICS["use_gpu"])
    h = Hyperparameters(
        epochs=_pick(o.epochs, level.epochs),
        learning_rate=_pick(o.learning_rate, level.lr_full if method == TuningMethod.FULL else level.lr_lora),
        lr_scheduler=o.lr_scheduler if o.lr_scheduler != LrScheduler.UNSPECIFIED else _BASICS["lr_scheduler"],
        warmup_ratio=_pick(o.warmup_ratio, level.warmup_ratio),
        per_device_batch_size=_pick(o.per_device_batch_size, _BASICS["per_device_batch_size"]),
        gradient_accumulation_steps=_pick(o.gradient_accumulation_steps, _BASICS["gradient_accumulation_steps"]),
        max_seq_length=_pick(o.max_seq_length, min(seq, model.context_length or seq)),
        weight_decay=_pick(o.weight_decay, level.weight_decay),
        seed=_pick(o.seed, _BASICS["seed"]),
        early_stopping_patience=_pick(o.early_stopping_patience, level.patience if has_validation else 0),
        early_stopping_threshold=_pick(o.early_stopping_threshold, _BASICS["early_stopping_threshold"]),
        num_workers=_pick(o.num_workers, _BASICS["num_workers"]),
        use_gpu=use_gpu,
        # The proto's rule: bf16 on GPUs, fp32 on CPU workers.
        precision=o.precision if o.precision != Precision.UNSPECIFIED else (Precision.BF16 if use_gpu else Precision.FP32),
        gradient_checkpointing=_pick(o.gradient_checkpointing, _BASICS["gradient_checkpointing"]),
        max_grad_norm=_pick(o.max_grad_norm, _BASICS["max_grad_norm"]),
        lora=LoraSettings(
            rank=_pick(o.lora.rank, LORA_DEFAULTS.rank),
            alpha=_pick(o.lora.alpha, LORA_DEFAULTS.alpha),
            dropout=_pick(o.lora.dropout, LORA_DEFAULTS.dropout),
            target_modules=tuple(o.lora.target_modules) or model.default_lora_target_modules,
        ),
    )  # fmt: skip

    per_epoch = steps_per_epoch(
        train_rows, h.per_device_batch_size, h.gradient_accumulation_steps, h.num_workers
    )
    max_steps = o.max_steps
    if max_steps is None:
        quick_cap = preset == Preset.QUICK and per_epoch * h.epochs > QUICK_MAX_STEPS
        max_steps = QUICK_MAX_STEPS if quick_cap else 0
    # Evaluate (and checkpoint) on a step interval so early stopping can pick the best
    # checkpoint: the Trainer needs the checkpoint interval to be a multiple of the
    # evaluation interval, so by default they are equal.
    eval_every = max(1, per_epoch // level.evals_per_epoch)
    if max_steps:
        eval_every = min(eval_every, max(1, max_steps // 2))
    eval_interval = _pick(o.eval_interval_steps, _pick(o.checkpoint_interval_steps, eval_every))
    checkpoint_interval = _pick(o.checkpoint_interval_steps, eval_interval)
    return preset, dataclasses.replace(
        h,
        max_steps=max_steps,
        eval_interval_steps=eval_interval,
        checkpoint_interval_steps=checkpoint_interval,
    )


def _pick(value, default):
    return default if value is None else value


_MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,127}")


def validate(
    h: Hyperparameters,
    *,
    field_prefix: str = "tuning_job.hyperparameters",
    max_seq_length_limit: int,
    method: TuningMethod | None = None,
) -> None:
    """Raise one InvalidArgument naming every bad field and its range. Unset fields are
    skipped, so this checks requests (overrides) and resolved values alike."""
    bad: list[FieldViolation] = []

    def check(name: str, value, low, high) -> None:
        if value is not None and (value < low or (high is not None and value > high)):
            bad.append(FieldViolation(f"{field_prefix}.{name}", _range(value, low, high)))

    check("epochs", h.epochs, 1, 100)
    check("max_steps", h.max_steps, 0, 10_000_000)
    check("learning_rate", h.learning_rate, 1e-7, 1.0)
    check("warmup_ratio", h.warmup_ratio, 0.0, 0.5)
    check("per_device_batch_size", h.per_device_batch_size, 1, 1024)
    check("gradient_accumulation_steps", h.gradient_accumulation_steps, 1, 1024)
    check("max_seq_length", h.max_seq_length, 8, max_seq_length_limit)
    check("weight_decay", h.weight_decay, 0.0, 1.0)
    check("seed", h.seed, 0, 2**32 - 1)
    check("eval_interval_steps", h.eval_interval_steps, 0, None)
    check("checkpoint_interval_steps", h.checkpoint_interval_steps, 0, None)
    check("early_stopping_patience", h.early_stopping_patience, 0, 100)
    check("early_stopping_threshold", h.early_stopping_threshold, 0.0, None)
    check("num_workers", h.num_workers, 1, 64)
    check("max_grad_norm", h.max_grad_norm, 0.0, None)
    check("lora.rank", h.lora.rank, 1, 256)
    check("lora.alpha", h.lora.alpha, 1, 1024)
    check("lora.dropout", h.lora.dropout, 0.0, 0.5)

    for i, name in enumerate(h.lora.target_modules):
        if not _MODULE_NAME.fullmatch(name or ""):
            bad.append(
                FieldViolation(
                    f"{field_prefix}.lora.target_modules[{i}]",
                    f"must be a module name such as 'query' or 'c_attn', got {name!r}",
                )
            )
    if method == TuningMethod.LORA and h.lora.target_modules == ():
        bad.append(
            FieldViolation(
                f"{field_prefix}.lora.target_modules",
                "this base model has no default LoRA target modules; name the modules to adapt",
            )
        )
    if h.precision in (Precision.BF16, Precision.FP16) and h.use_gpu is False:
        bad.append(
            FieldViolation(
                f"{field_prefix}.precision",
                f"{h.precision.name.lower()} needs GPU workers (use_gpu); CPU workers train in fp32",
            )
        )
    patience = h.early_stopping_patience or 0
    ev, ck = h.eval_interval_steps, h.checkpoint_interval_steps
    if patience > 0 and ev is not None and ck is not None and (ev == 0) != (ck == 0):
        bad.append(
            FieldViolation(
                f"{field_prefix}.checkpoint_interval_steps",
                "with early stopping, evaluate and checkpoint on the same kind of interval "
                "(both per epoch, 0, or both in steps)",
            )
        )
    elif patience > 0 and ev and ck and ck % ev:
        bad.append(
            FieldViolation(
                f"{field_prefix}.checkpoint_interval_steps",
                f"with early stopping, must be a multiple of eval_interval_steps ({ev}), got {ck}",
            )
        )
    if bad:
        details = "; ".join(f"{v.field}: {v.description}" for v in bad)
        raise InvalidArgument(
            f"invalid hyperparameters: {details}", bad, reason="INVALID_HYPERPARAMETERS"
        )


def _range(value, low, high) -> str:
    if high is None:
        return f"must be at least {_fmt(low)}, got {_fmt(value)}"
    return f"must be between {_fmt(low)} and {_fmt(high)}, got {_fmt(value)}"


def _fmt(x) -> str:
    """1e-07 → 1e-7; other numbers as Python prints them."""
    if isinstance(x, float) and x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return re.sub(
            r"e([+-])0*(\d)", lambda m: f"e{m.group(1).replace('+', '')}{m.group(2)}", f"{x:g}"
        )
    return str(x)
