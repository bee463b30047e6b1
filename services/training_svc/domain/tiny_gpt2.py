"""The offline test model: a tiny GPT-2 built from a config, with a byte-level BPE
tokenizer trained on the shared data's text.

Nothing here downloads. The build is seeded and reads the corpus in file order, so two
machines with the same data and library versions get byte-identical folders; the folder
carries a recipe hash so a changed recipe rebuilds instead of reusing a stale one.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Bump when anything below changes what gets built (the hash covers the rest).
RECIPE_VERSION = 1
SEED = 1234
VOCAB_SIZE = 4096
CONTEXT_LENGTH = 256
CONFIG = {"n_layer": 2, "n_head": 2, "n_embd": 64, "n_positions": CONTEXT_LENGTH}

EOS = "<|endoftext|>"
PAD = "<|pad|>"
ROLE_TOKENS = ("<|system|>", "<|user|>", "<|assistant|>")

# `{% generation %}` marks the assistant's tokens, so the trainer can ask
# `apply_chat_template(..., return_assistant_tokens_mask=True)` for the loss mask.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|endoftext|>' }}{% endgeneration %}"
    "{% else %}{{ message['content'] + '<|endoftext|>' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"
)

CORPUS_FILES = ("brown_genres.csv", "chatterbot_qa_en.jsonl")
# Every third Brown passage is plenty for a 4k vocabulary and keeps the build quick.
BROWN_STRIDE = 3
STAMP = "mtw_build.json"


def default_corpus_dir() -> Path | None:
    """`<repo>/../shared/data` when it holds the corpus (dev machines and CI)."""
    repo = Path(__file__).resolve().parents[3]
    candidate = repo.parent / "shared" / "data"
    return candidate if all((candidate / f).is_file() for f in CORPUS_FILES) else None


def recipe_hash() -> str:
    recipe = {
        "version": RECIPE_VERSION,
        "seed": SEED,
        "vocab": VOCAB_SIZE,
        "config": CONFIG,
        "template": CHAT_TEMPLATE,
        "special": [EOS, PAD, *ROLE_TOKENS],
        "brown_stride": BROWN_STRIDE,
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def is_built(folder: Path) -> bool:
    try:
        stamp = json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return stamp.get("recipe") == recipe_hash() and (folder / "model.safetensors").is_file()


def ensure_built(folder: Path, corpus_dir: Path) -> Path:
    """Build the model into `folder` unless an identical build is already there."""
    if is_built(folder):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and rename, so concurrent builders (service, Ray
    # workers, tests) never see a half-written folder.
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        _build(tmp, corpus_dir)
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)  # stale recipe
        try:
            os.rename(tmp, folder)
        except OSError:
            if not is_built(folder):  # lost a race to a builder that failed
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def corpus_texts(corpus_dir: Path) -> Iterator[str]:
    """Every BROWN_STRIDE-th Brown passage, then every chat turn, in file order."""
    with open(corpus_dir / "brown_genres.csv", newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f)):
            if i % BROWN_STRIDE == 0:
                yield row["text"]
    with open(corpus_dir / "chatterbot_qa_en.jsonl", encoding="utf-8") as f:
        for line in f:
            if line.strip():
                for message in json.loads(line)["messages"]:
                    yield message["content"]


def _build(out: Path, corpus_dir: Path) -> None:
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    # Offsets are needed for the chat template's assistant-token mask.
    bpe.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=[EOS, PAD, *ROLE_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus_texts(corpus_dir), trainer=trainer)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=CONTEXT_LENGTH,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(out)

    config = GPT2Config(
        vocab_size=bpe.get_vocab_size(),
        bos_token_id=bpe.token_to_id(EOS),
        eos_token_id=bpe.token_to_id(EOS),
        pad_token_id=bpe.token_to_id(PAD),
        architectures=["GPT2LMHeadModel"],
        **CONFIG,
    )
    # A private generator state keeps the build deterministic without touching the
    # caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = GPT2LMHeadModel(config)
    model.save_pretrained(out, safe_serialization=True)
    (out / STAMP).write_text(json.dumps({"recipe": recipe_hash(), "seed": SEED}) + "\n")
