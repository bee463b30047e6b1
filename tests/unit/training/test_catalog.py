"""Base-model catalog: built-ins, the tiny GPT-2 build, configured model folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from services.common.errors import NotFound
from services.training_svc.domain import tiny_gpt2
from services.training_svc.domain.catalog import Catalog, folder_id
from services.training_svc.domain.model import Task, TuningMethod

from .conftest import SHARED_DATA


def test_builtins_are_listed_first(catalog):
    ids = [m.model_id for m in catalog.list()]
    assert ids == ["all-minilm-l6-v2", "tiny-gpt2", "tiny-gpt2-restricted"]


def test_minilm_facts_come_from_its_folder(minilm):
    assert minilm.name == "baseModels/all-minilm-l6-v2"
    assert minilm.supported_tasks == (Task.SEQUENCE_CLASSIFICATION,)
    assert minilm.supported_methods == (TuningMethod.LORA, TuningMethod.FULL)
    assert 22_000_000 < minilm.parameter_count < 23_000_000
    assert minilm.context_length == 512
    assert minilm.default_lora_target_modules == ("query", "value")
    assert not minilm.lora_fan_in_fan_out
    assert minilm.licence_name == "Apache-2.0" and not minilm.licence_requires_acknowledgement
    assert (minilm.hidden_size, minilm.num_layers, minilm.num_heads) == (384, 6, 12)
    assert minilm.is_local and Path(minilm.source, "model.safetensors").is_file()


def test_tiny_gpt2_facts(tiny):
    assert tiny.supported_tasks == (Task.CAUSAL_LM, Task.CHAT_SFT, Task.SEQUENCE_CLASSIFICATION)
    assert tiny.default_lora_target_modules == ("c_attn",)
    assert tiny.lora_fan_in_fan_out
    assert tiny.context_length == 256
    assert tiny.licence_name == "MIT" and not tiny.licence_requires_acknowledgement
    assert (tiny.hidden_size, tiny.num_layers, tiny.num_heads, tiny.vocab_size) == (64, 2, 2, 4096)
    assert tiny.size_bytes == Path(tiny.source, "model.safetensors").stat().st_size


def test_restricted_twin_needs_acknowledgement(catalog, tiny):
    restricted = catalog.get("tiny-gpt2-restricted")
    assert restricted.source == tiny.source
    assert restricted.licence_requires_acknowledgement
    assert restricted.licence_name == "MTW Test Restricted Licence"


def test_get_and_resolve(catalog, tiny):
    assert catalog.resolve("baseModels/tiny-gpt2") == tiny
    assert catalog.resolve("tiny-gpt2") == tiny
    with pytest.raises(NotFound) as info:
        catalog.resolve("baseModels/nope")
    assert info.value.message == "base model 'baseModels/nope' was not found"
    assert info.value.reason == "BASE_MODEL_NOT_FOUND"
    with pytest.raises(NotFound):
        catalog.get("")


def test_tiny_gpt2_loads_offline_and_trains_shape(tiny):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.source, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(
        tiny.source, local_files_only=True, trust_remote_code=False, use_safetensors=True
    )
    assert model.num_parameters() == tiny.parameter_count
    assert tok.pad_token == "<|pad|>" and tok.eos_token == "<|endoftext|>"
    assert tok.pad_token_id != tok.eos_token_id
    batch = tok(["The jury said", "Hi"], return_tensors="pt", padding=True)
    out = model(**batch, labels=batch["input_ids"])
    assert out.logits.shape[-1] == len(tok) and torch.isfinite(out.loss)
    assert tok.decode(tok("The jury said")["input_ids"]) == "The jury said"

    clf = AutoModelForSequenceClassification.from_pretrained(tiny.source, num_labels=3)
    assert clf(**batch).logits.shape == (2, 3)


def test_tiny_gpt2_chat_template_masks_assistant_tokens(tiny):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny.source, local_files_only=True)
    messages = [
        {"role": "user", "content": "What is AI?"},
        {"role": "assistant", "content": "A field of study."},
    ]
    enc = tok.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert tok.decode(enc["input_ids"]) == (
        "<|user|>What is AI?<|endoftext|><|assistant|>A field of study.<|endoftext|>"
    )
    answer = [i for i, m in zip(enc["input_ids"], enc["assistant_masks"]) if m]
    assert tok.decode(answer) == "A field of study.<|endoftext|>"
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|assistant|>")


def test_tiny_gpt2_build_is_deterministic_and_reused(tiny, tmp_path):
    other = tiny_gpt2.ensure_built(tmp_path / "tiny-gpt2", SHARED_DATA)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert (other / name).read_bytes() == Path(tiny.source, name).read_bytes(), name
    stamp = (other / "model.safetensors").stat().st_mtime_ns
    tiny_gpt2.ensure_built(other, SHARED_DATA)
    assert (other / "model.safetensors").stat().st_mtime_ns == stamp


def test_a_second_catalog_reuses_the_build(model_cache, tiny):
    stamp = Path(tiny.source, "model.safetensors").stat().st_mtime_ns
    again = Catalog([], model_cache, corpus_dir=Path("/nonexistent")).get("tiny-gpt2")
    assert again == tiny
    assert Path(tiny.source, "model.safetensors").stat().st_mtime_ns == stamp


def test_without_a_corpus_tiny_gpt2_is_absent(tmp_path):
    catalog = Catalog([], tmp_path, corpus_dir=None)
    catalog._corpus_dir = None  # as on a machine without ../shared/data
    assert [m.model_id for m in catalog.list()] == ["all-minilm-l6-v2"]


def _copy_model(src: str, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        if Path(src, name).exists():
            shutil.copy(Path(src, name), dst / name)
    return dst


def test_model_dirs_add_entries_with_their_licences(tmp_path, model_cache, tiny, minilm):
    root = tmp_path / "models"
    explicit = _copy_model(tiny.source, root / "My_GPT.v2")
    (explicit / "mtw_licence.json").write_text(
        json.dumps({"name": "Custom", "uri": "https://x.test/l", "requires_acknowledgement": False})
    )
    gated = _copy_model(tiny.source, root / "gated")
    (gated / "README.md").write_text("---\nlicense: other\nlicense_name: llama2\n---\n# hi\n")
    permissive = _copy_model(minilm.source, root / "encoder")
    (permissive / "README.md").write_text("---\nlanguage: en\nlicense: apache-2.0\n---\n")
    _copy_model(tiny.source, root / "plain")
    (root / "not-a-model").mkdir()
    (root / "not-a-model" / "config.json").write_text("{}")
    single = _copy_model(minilm.source, tmp_path / "single")

    catalog = Catalog([root, single, tmp_path / "missing"], model_cache, corpus_dir=SHARED_DATA)
    by_id = {m.model_id: m for m in catalog.list()}
    assert list(by_id)[:3] == ["all-minilm-l6-v2", "tiny-gpt2", "tiny-gpt2-restricted"]
    assert set(by_id) == {
        "all-minilm-l6-v2", "tiny-gpt2", "tiny-gpt2-restricted",
        "encoder", "gated", "my-gpt-v2", "plain", "single",
    }  # fmt: skip

    mine = by_id["my-gpt-v2"]
    assert (mine.licence_name, mine.licence_uri, mine.licence_requires_acknowledgement) == (
        "Custom", "https://x.test/l", False,
    )  # fmt: skip
    assert Task.CAUSAL_LM in mine.supported_tasks
    assert mine.parameter_count == tiny.parameter_count and mine.lora_fan_in_fan_out
    assert (by_id["gated"].licence_name, by_id["gated"].licence_requires_acknowledgement) == (
        "llama2", True,
    )  # fmt: skip
    assert by_id["encoder"].licence_name == "apache-2.0"
    assert not by_id["encoder"].licence_requires_acknowledgement
    assert by_id["encoder"].supported_tasks == (Task.SEQUENCE_CLASSIFICATION,)
    assert by_id["plain"].licence_name == "unknown"
    assert by_id["plain"].licence_requires_acknowledgement
    assert by_id["single"].default_lora_target_modules == ("query", "value")


def test_chat_sft_needs_a_chat_template(tmp_path, model_cache, tiny):
    folder = _copy_model(tiny.source, tmp_path / "models" / "with-template")
    shutil.copy(Path(tiny.source, "chat_template.jinja"), folder / "chat_template.jinja")
    _copy_model(tiny.source, tmp_path / "models" / "no-template")
    catalog = Catalog([tmp_path / "models"], model_cache, corpus_dir=SHARED_DATA)
    assert Task.CHAT_SFT in catalog.get("with-template").supported_tasks
    assert Task.CHAT_SFT not in catalog.get("no-template").supported_tasks


@pytest.mark.parametrize(
    ("name", "expected"),
    [("My_GPT.v2", "my-gpt-v2"), ("--x--", "x"), ("7b", "m-7b"), ("Llama 3 8B", "llama-3-8b")],
)
def test_folder_id(name, expected):
    assert folder_id(name) == expected
