"""Estimates: sane numbers, monotonic in the settings, honest suggestions."""

from __future__ import annotations

import dataclasses

import pytest

from services.training_svc.domain import presets
from services.training_svc.domain.estimate import GiB, MiB, estimate
from services.training_svc.domain.model import (
    Hyperparameters,
    LoraSettings,
    LrScheduler,
    Precision,
    Preset,
    Task,
    TuningMethod,
)

CLS, LM = Task.SEQUENCE_CLASSIFICATION, Task.CAUSAL_LM
LORA, FULL = TuningMethod.LORA, TuningMethod.FULL


def _hp(model, task=CLS, method=LORA, rows=1000, **overrides):
    return presets.resolve(
        Preset.BALANCED, Hyperparameters(**overrides), task=task, model=model, method=method,
        train_rows=rows,
    )[1]  # fmt: skip


def _est(model, task=CLS, method=LORA, rows=1000, mean=100.0, sps=20.0, mem=8 * GiB, **kw):
    hp = _hp(model, task, method, rows, **kw)
    return estimate(
        model=model, task=task, method=method, hp=hp, train_rows=rows, mean_tokens_per_row=mean,
        samples_per_second=sps, worker_memory_bytes=mem,
    )  # fmt: skip


def test_counts_for_a_balanced_lora_job(minilm):
    e = _est(minilm, rows=1000, mean=100.0)
    assert (e.steps_per_epoch, e.steps, e.epochs) == (63, 189, 3.0)
    assert (e.train_tokens, e.tokens_to_process, e.truncated_examples) == (100_000, 300_000, 0)
    # LoRA rank 8 on query and value of 6 layers of width 384.
    assert e.trainable_parameter_count == 6 * 2 * 8 * (384 + 384)
    assert e.fits and e.suggestions == []
    m = e.memory
    assert m.weights_bytes >= 4 * minilm.parameter_count
    assert m.gradients_bytes == 4 * e.trainable_parameter_count
    assert m.optimizer_bytes == 8 * e.trainable_parameter_count
    assert e.peak_memory_bytes == m.total_bytes


def test_full_fine_tuning_memory_matches_a_measured_run(minilm):
    # Measured on CPU: MiniLM, batch 16 × 128 tokens, AdamW, one step: 1.46 GB peak RSS.
    e = _est(minilm, method=FULL, per_device_batch_size=16, max_seq_length=128)
    assert 1.2 * GiB < e.peak_memory_bytes < 1.6 * GiB
    assert e.trainable_parameter_count == minilm.parameter_count


def test_duration_needs_a_measured_throughput(minilm):
    e = _est(minilm, sps=None)
    assert e.duration_seconds is None
    assert any("No throughput measured" in w for w in e.warnings)
    timed = _est(minilm, sps=32.0)
    # 189 steps × 16 examples at 32/s is 94.5 s of training, plus start-up and saves.
    assert 94.5 < timed.duration_seconds < 94.5 + 60
    assert _est(minilm, sps=64.0).duration_seconds < timed.duration_seconds


@pytest.mark.parametrize(
    "field_values",
    [
        ("per_device_batch_size", [2, 8, 32, 64]),
        ("max_seq_length", [32, 64, 128, 256, 512]),
        ("lora", None),  # rank, below
    ],
)
def test_memory_grows_with_batch_and_length(minilm, field_values):
    name, values = field_values
    if values is None:
        peaks = [_est(minilm, lora=LoraSettings(rank=r)).peak_memory_bytes for r in (4, 16, 64)]
    else:
        peaks = [_est(minilm, **{name: v}).peak_memory_bytes for v in values]
    assert peaks == sorted(peaks) and len(set(peaks)) == len(peaks)


def test_more_data_and_epochs_mean_more_steps_tokens_and_time(minilm):
    small, big = _est(minilm, rows=500), _est(minilm, rows=5000)
    assert big.steps > small.steps and big.tokens_to_process > small.tokens_to_process
    assert big.duration_seconds > small.duration_seconds
    more = _est(minilm, rows=500, epochs=6)
    assert more.steps == 2 * small.steps and more.duration_seconds > small.duration_seconds


def test_full_needs_more_than_lora_and_checkpointing_less(minilm):
    lora, full = _est(minilm, method=LORA), _est(minilm, method=FULL)
    assert full.peak_memory_bytes > lora.peak_memory_bytes
    assert full.trainable_parameter_count > 100 * lora.trainable_parameter_count
    saved = _est(minilm, gradient_checkpointing=True)
    assert saved.memory.activations_bytes < lora.memory.activations_bytes


def test_workers_share_the_steps(minilm):
    one, two = _est(minilm, rows=2000), _est(minilm, rows=2000, num_workers=2)
    assert (one.steps, two.steps) == (3 * 125, 3 * 63)  # 2000 rows, batch 16, per worker
    assert two.duration_seconds < one.duration_seconds


def test_causal_lm_counts_the_logits(tiny):
    cls = _est(tiny, task=CLS, max_seq_length=256)
    lm = _est(tiny, task=LM, max_seq_length=256)
    assert lm.memory.activations_bytes - cls.memory.activations_bytes == 3 * 16 * 256 * 4096 * 4


def test_truncation_from_the_mean_and_from_a_histogram(minilm):
    e = _est(minilm, mean=300.0, max_seq_length=128)
    assert e.truncated_examples == 1000 and e.train_tokens == 128_000
    assert any("average 300 tokens" in w for w in e.warnings)
    hp = _hp(minilm, max_seq_length=128)
    # 100 rows measured: 78 short (0-100), 22 long (200-400); the split has 1000 rows.
    e = estimate(
        model=minilm, task=CLS, method=LORA, hp=hp, train_rows=1000, mean_tokens_per_row=0,
        samples_per_second=None, worker_memory_bytes=8 * GiB,
        token_histogram=[(0, 100, 78), (200, 400, 22)],
    )  # fmt: skip
    assert e.truncated_examples == 220
    assert e.train_tokens == round((78 * 50 + 22 * 128) / 100 * 1000)
    assert "22 % of examples are longer than 128 tokens and will be truncated." in e.warnings


def _set_fields(h: Hyperparameters) -> dict:
    return {
        f.name: getattr(h, f.name)
        for f in dataclasses.fields(h)
        if f.name != "lora"
        and getattr(h, f.name) not in (None, LrScheduler.UNSPECIFIED, Precision.UNSPECIFIED)
    }


def test_too_big_for_a_worker_offers_settings_that_fit(minilm):
    request = {"per_device_batch_size": 32, "max_seq_length": 256}
    e = _est(minilm, method=FULL, mem=2000 * MiB, **request)
    assert not e.fits
    assert e.warnings[0].startswith("Needs about 3.7 GiB per worker but a worker has 2.0 GiB")
    assert [_set_fields(s.hyperparameters) for s in e.suggestions] == [
        {"per_device_batch_size": 8, "gradient_accumulation_steps": 4},  # same effective batch
        {"gradient_checkpointing": True},
        {"max_seq_length": 128},
    ]
    assert "keeps the effective batch of 32" in e.suggestions[0].explanation
    for s in e.suggestions:  # each one, applied, really fits
        assert s.fits and s.peak_memory_bytes <= 2000 * MiB
        again = _est(
            minilm, method=FULL, mem=2000 * MiB, **{**request, **_set_fields(s.hyperparameters)}
        )
        assert again.fits and again.peak_memory_bytes == s.peak_memory_bytes, s.explanation
    assert e.suggestions[1].duration_seconds > e.duration_seconds  # recomputation costs time


def test_lora_is_suggested_when_weights_are_the_problem(minilm):
    e = _est(minilm, method=FULL, mem=3600 * MiB, per_device_batch_size=32, max_seq_length=256)
    lora = [s for s in e.suggestions if s.method is LORA]
    assert len(lora) == 1 and lora[0].fits and "LoRA" in lora[0].explanation


def test_nothing_fits_says_so(minilm):
    e = _est(minilm, method=FULL, mem=300 * MiB)
    assert not e.fits and len(e.suggestions) == 1
    assert not e.suggestions[0].fits
    assert "still too big" in e.suggestions[0].explanation


def test_small_runs_are_warned_about(minilm):
    e = _est(minilm, rows=40, epochs=1, eval_interval_steps=50)
    text = " ".join(e.warnings)
    assert "Only 40 training examples" in text
    assert "Only 3 optimiser steps" in text
    assert "only the final evaluation runs" in text


def test_unknown_shape_falls_back_to_the_parameter_count(minilm):
    shapeless = dataclasses.replace(minilm, hidden_size=0, num_layers=0, num_heads=0)
    a, b = _est(minilm), _est(shapeless)
    assert 0.5 < b.peak_memory_bytes / a.peak_memory_bytes < 2
