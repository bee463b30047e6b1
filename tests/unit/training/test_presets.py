"""Presets, the AUTO rule, overrides and field-level validation."""

from __future__ import annotations

import dataclasses

import pytest

from services.common.errors import FieldViolation, InvalidArgument
from services.training_svc.domain import presets
from services.training_svc.domain.model import (
    Hyperparameters,
    LoraSettings,
    LrScheduler,
    Precision,
    Preset,
    Task,
    TuningMethod,
)

CLS, LM, CHAT = Task.SEQUENCE_CLASSIFICATION, Task.CAUSAL_LM, Task.CHAT_SFT
LORA, FULL = TuningMethod.LORA, TuningMethod.FULL


def _resolve(model, preset=Preset.BALANCED, task=CLS, method=LORA, rows=1000, **overrides):
    return presets.resolve(
        preset, Hyperparameters(**overrides), task=task, model=model, method=method, train_rows=rows
    )


def test_every_field_is_set_after_resolve(minilm):
    for preset in Preset:
        _, h = _resolve(minilm, preset)
        for f in dataclasses.fields(h):
            assert getattr(h, f.name) is not None, (preset, f.name)
        assert h.lr_scheduler != LrScheduler.UNSPECIFIED and h.precision != Precision.UNSPECIFIED
        assert all(v is not None for v in dataclasses.astuple(h.lora))
        presets.validate(h, max_seq_length_limit=minilm.context_length, method=LORA)


def test_balanced_matches_the_proto(minilm):
    used, h = _resolve(minilm, Preset.BALANCED, rows=1000)
    assert used is Preset.BALANCED
    assert (h.epochs, h.max_steps, h.early_stopping_patience) == (3, 0, 2)
    # 1000 rows / batch 16 = 63 steps per epoch: evaluate and checkpoint every epoch.
    assert h.eval_interval_steps == h.checkpoint_interval_steps == 63
    assert h.lr_scheduler is LrScheduler.LINEAR and h.precision is Precision.FP32
    assert h.lora == LoraSettings(rank=8, alpha=16, dropout=0.05, target_modules=("query", "value"))
    assert h.learning_rate == 2e-4
    assert _resolve(minilm, Preset.BALANCED, method=FULL)[1].learning_rate == 2e-5


def test_unspecified_and_custom_take_balanced_values(minilm):
    balanced = _resolve(minilm, Preset.BALANCED)[1]
    assert _resolve(minilm, Preset.UNSPECIFIED) == (Preset.BALANCED, balanced)
    used, custom = _resolve(minilm, Preset.CUSTOM, epochs=7)
    assert used is Preset.CUSTOM
    assert custom == dataclasses.replace(balanced, epochs=7)


def test_quick_caps_steps_and_never_stops_early(minilm):
    _, small = _resolve(minilm, Preset.QUICK, rows=320)
    assert (small.epochs, small.max_steps, small.early_stopping_patience) == (1, 0, 0)
    _, big = _resolve(minilm, Preset.QUICK, rows=100_000)
    assert big.max_steps == presets.QUICK_MAX_STEPS
    assert big.eval_interval_steps <= presets.QUICK_MAX_STEPS


def test_thorough_trains_longer_and_evaluates_more_often(minilm):
    _, balanced = _resolve(minilm, Preset.BALANCED, rows=4000)
    _, thorough = _resolve(minilm, Preset.THOROUGH, rows=4000)
    assert thorough.epochs > balanced.epochs
    assert thorough.eval_interval_steps < balanced.eval_interval_steps
    assert thorough.early_stopping_patience > balanced.early_stopping_patience


def test_sequence_length_defaults_fit_the_model(minilm, tiny):
    assert _resolve(minilm, Preset.THOROUGH)[1].max_seq_length == 512
    assert _resolve(tiny, Preset.THOROUGH, task=LM)[1].max_seq_length == 256  # context
    assert _resolve(tiny, Preset.QUICK, task=CHAT)[1].max_seq_length == 256
    assert _resolve(minilm, Preset.QUICK)[1].max_seq_length == 128


def test_overrides_win_field_by_field(tiny):
    _, h = _resolve(
        tiny,
        Preset.QUICK,
        task=LM,
        learning_rate=1e-3,
        lr_scheduler=LrScheduler.COSINE,
        per_device_batch_size=4,
        eval_interval_steps=5,
        lora=LoraSettings(rank=4, target_modules=("c_attn", "c_proj")),
    )
    assert (h.learning_rate, h.lr_scheduler, h.per_device_batch_size) == (
        1e-3,
        LrScheduler.COSINE,
        4,
    )
    assert h.eval_interval_steps == h.checkpoint_interval_steps == 5
    assert h.lora == LoraSettings(
        rank=4, alpha=16, dropout=0.05, target_modules=("c_attn", "c_proj")
    )
    _, only_ckpt = _resolve(tiny, task=LM, checkpoint_interval_steps=10)
    assert only_ckpt.eval_interval_steps == only_ckpt.checkpoint_interval_steps == 10


def test_gpu_defaults_to_bf16_and_no_validation_means_no_early_stopping(minilm):
    assert _resolve(minilm, use_gpu=True)[1].precision is Precision.BF16
    _, h = presets.resolve(
        Preset.BALANCED, Hyperparameters(), task=CLS, model=minilm, method=LORA,
        train_rows=100, has_validation=False,
    )  # fmt: skip
    assert h.early_stopping_patience == 0


@pytest.mark.parametrize(
    ("task", "rows", "expected"),
    [
        (CLS, 400, Preset.THOROUGH),
        (CLS, 1_999, Preset.THOROUGH),
        (CLS, 8_368, Preset.BALANCED),
        (CLS, 50_000, Preset.BALANCED),
        (CLS, 50_001, Preset.QUICK),
        (CHAT, 400, Preset.THOROUGH),
        (CHAT, 898, Preset.BALANCED),  # a chat row counts four times
        (LM, 20_000, Preset.QUICK),
    ],
)
def test_auto_picks_by_data_size_and_task(minilm, task, rows, expected):
    assert presets.auto_preset(task=task, model=minilm, train_rows=rows) is expected
    assert _resolve(minilm, Preset.AUTO, task=task, rows=rows)[0] is expected


def test_auto_is_one_step_lighter_for_big_models(minilm):
    big = dataclasses.replace(minilm, parameter_count=7_000_000_000)
    assert presets.auto_preset(task=CLS, model=big, train_rows=400) is Preset.BALANCED
    assert presets.auto_preset(task=CLS, model=big, train_rows=8000) is Preset.QUICK
    assert presets.auto_preset(task=CLS, model=big, train_rows=90_000) is Preset.QUICK


def test_every_preset_is_described():
    assert set(presets.PRESET_DESCRIPTIONS) == set(Preset) - {Preset.UNSPECIFIED}
    assert all(len(text) > 40 for text in presets.PRESET_DESCRIPTIONS.values())


def test_steps_per_epoch():
    assert presets.steps_per_epoch(1000, 16, 1, 1) == 63
    assert presets.steps_per_epoch(1000, 16, 2, 1) == 32
    assert presets.steps_per_epoch(1000, 16, 1, 2) == 32
    assert presets.steps_per_epoch(0, 16, 1, 1) == 1


def test_one_error_lists_every_bad_field():
    h = Hyperparameters(
        epochs=0,
        learning_rate=5.0,
        warmup_ratio=0.9,
        per_device_batch_size=2048,
        gradient_accumulation_steps=0,
        max_seq_length=4,
        weight_decay=-0.1,
        eval_interval_steps=-1,
        early_stopping_patience=101,
        early_stopping_threshold=-1.0,
        num_workers=65,
        max_grad_norm=-1.0,
        lora=LoraSettings(rank=0, alpha=5000, dropout=0.9, target_modules=("c_attn", "bad name")),
    )
    with pytest.raises(InvalidArgument) as info:
        presets.validate(h, max_seq_length_limit=512)
    got = {
        v.field.removeprefix("tuning_job.hyperparameters."): v.description
        for v in info.value.violations
    }
    assert got == {
        "epochs": "must be between 1 and 100, got 0",
        "learning_rate": "must be between 1e-7 and 1.0, got 5.0",
        "warmup_ratio": "must be between 0.0 and 0.5, got 0.9",
        "per_device_batch_size": "must be between 1 and 1024, got 2048",
        "gradient_accumulation_steps": "must be between 1 and 1024, got 0",
        "max_seq_length": "must be between 8 and 512, got 4",
        "weight_decay": "must be between 0.0 and 1.0, got -0.1",
        "eval_interval_steps": "must be at least 0, got -1",
        "early_stopping_patience": "must be between 0 and 100, got 101",
        "early_stopping_threshold": "must be at least 0.0, got -1.0",
        "num_workers": "must be between 1 and 64, got 65",
        "max_grad_norm": "must be at least 0.0, got -1.0",
        "lora.rank": "must be between 1 and 256, got 0",
        "lora.alpha": "must be between 1 and 1024, got 5000",
        "lora.dropout": "must be between 0.0 and 0.5, got 0.9",
        "lora.target_modules[1]": "must be a module name such as 'query' or 'c_attn', got 'bad name'",
    }
    assert info.value.reason == "INVALID_HYPERPARAMETERS"
    assert info.value.message.startswith(
        "invalid hyperparameters: tuning_job.hyperparameters.epochs: must be between 1 and 100, "
        "got 0; tuning_job.hyperparameters.learning_rate: "
    )


def test_max_seq_length_is_bounded_by_the_model_and_prefix_is_configurable():
    with pytest.raises(InvalidArgument) as info:
        presets.validate(
            Hyperparameters(max_seq_length=1024), max_seq_length_limit=256, field_prefix="h"
        )
    assert info.value.violations == (
        FieldViolation("h.max_seq_length", "must be between 8 and 256, got 1024"),
    )


def test_unset_fields_pass():
    presets.validate(Hyperparameters(), max_seq_length_limit=8)


def test_cross_field_rules():
    with pytest.raises(InvalidArgument, match="precision") as info:
        presets.validate(
            Hyperparameters(precision=Precision.FP16, use_gpu=False), max_seq_length_limit=512
        )
    assert "needs GPU workers" in info.value.violations[0].description
    with pytest.raises(InvalidArgument) as info:
        presets.validate(
            Hyperparameters(
                early_stopping_patience=2, eval_interval_steps=10, checkpoint_interval_steps=15
            ),
            max_seq_length_limit=512,
        )
    assert info.value.violations[0].description == (
        "with early stopping, must be a multiple of eval_interval_steps (10), got 15"
    )
    presets.validate(
        Hyperparameters(
            early_stopping_patience=2, eval_interval_steps=10, checkpoint_interval_steps=30
        ),
        max_seq_length_limit=512,
    )
    with pytest.raises(InvalidArgument, match="no default LoRA target modules"):
        presets.validate(Hyperparameters(), max_seq_length_limit=512, method=LORA)
