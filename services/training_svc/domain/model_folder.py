"""What a Hugging Face model folder says about itself, read without loading it.

Only `config.json`, the safetensors headers, the tokenizer config and the README are
read: listing the catalog must stay cheap, and a folder's code is never run.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from services.training_svc.domain.model import Task

# Encoders are fine-tuned for classification only.
ENCODER_TYPES = frozenset(
    {
        "albert", "bert", "camembert", "deberta", "deberta-v2", "distilbert", "electra",
        "modernbert", "mpnet", "roberta", "xlm-roberta",
    }
)  # fmt: skip

# Attention projections LoRA adapts, by the leaf names found in the weights; the first
# set whose names all occur wins (so no per-architecture table to keep current).
LORA_TARGET_CANDIDATES: tuple[tuple[str, ...], ...] = (
    ("c_attn",),  # GPT-2
    ("query", "value"),  # BERT family
    ("q_proj", "v_proj"),  # Llama, Mistral, Qwen, OPT, GPT-J
    ("query_key_value",),  # GPT-NeoX, Falcon, BLOOM
    ("q_lin", "v_lin"),  # DistilBERT
    ("query_proj", "value_proj"),  # DeBERTa-v2
    ("qkv_proj",),  # Phi-3
    ("Wqkv",),  # ModernBERT
    ("q", "v"),  # MPNet
)

# Licences that ask nothing of the user beyond attribution.
PERMISSIVE_LICENCES = frozenset(
    {"apache-2.0", "mit", "bsd", "bsd-2-clause", "bsd-3-clause", "cc0-1.0", "cc-by-4.0",
     "isc", "unlicense", "zlib"}
)  # fmt: skip

LICENCE_FILE = "mtw_licence.json"


@dataclass(frozen=True)
class FolderFacts:
    config: dict
    architecture: str
    model_type: str
    tasks: tuple[Task, ...]
    parameter_count: int
    size_bytes: int
    context_length: int
    hidden_size: int
    num_layers: int
    num_heads: int
    vocab_size: int
    lora_targets: tuple[str, ...]
    lora_fan_in_fan_out: bool


@dataclass(frozen=True)
class Licence:
    name: str
    uri: str
    requires_acknowledgement: bool


def is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("*.safetensors"))


def inspect(path: Path) -> FolderFacts:
    """Facts from config.json and the safetensors headers; OSError, ValueError or
    TypeError when the folder is not a readable Hugging Face model."""
    config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise TypeError("config.json is not an object")
    architectures = [str(a) for a in config.get("architectures") or []]
    model_type = str(config.get("model_type", ""))
    parameters, size, names = 0, 0, set()
    for file in sorted(path.glob("*.safetensors")):
        count, tensor_names = _safetensors_header(file)
        parameters += count
        size += file.stat().st_size
        names.update(tensor_names)
    modules = {part for name in names for part in name.split(".")}
    targets = next((c for c in LORA_TARGET_CANDIDATES if set(c) <= modules), ())
    return FolderFacts(
        config=config,
        architecture=architectures[0] if architectures else model_type,
        model_type=model_type,
        tasks=_tasks(architectures, model_type, _has_chat_template(path)),
        parameter_count=parameters,
        size_bytes=size,
        context_length=_first_int(
            config, "n_positions", "max_position_embeddings", "n_ctx", "seq_length"
        )
        or 512,
        hidden_size=_first_int(config, "hidden_size", "n_embd", "d_model", "dim"),
        num_layers=_first_int(config, "num_hidden_layers", "n_layer", "num_layers", "n_layers"),
        num_heads=_first_int(config, "num_attention_heads", "n_head", "num_heads", "n_heads"),
        vocab_size=_first_int(config, "vocab_size"),
        lora_targets=targets,
        # GPT-2 stores its projections as Conv1D (in × out), which LoRA must be told.
        lora_fan_in_fan_out=model_type == "gpt2",
    )


def read_licence(path: Path) -> Licence:
    """From `mtw_licence.json`, else the README's front matter, else unknown — and an
    unknown licence must be acknowledged."""
    explicit = path / LICENCE_FILE
    if explicit.is_file():
        data = json.loads(explicit.read_text(encoding="utf-8"))
        return Licence(
            name=str(data.get("name") or "unknown"),
            uri=str(data.get("uri") or ""),
            requires_acknowledgement=bool(data.get("requires_acknowledgement", True)),
        )
    front = _front_matter(path / "README.md")
    licence = front.get("license", "").lower()
    if not licence:
        return Licence("unknown", "", True)
    name = (front.get("license_name") or licence) if licence == "other" else licence
    return Licence(name, front.get("license_link", ""), licence not in PERMISSIVE_LICENCES)


def _safetensors_header(file: Path) -> tuple[int, list[str]]:
    """(parameter count, tensor names) from the JSON header at the start of the file."""
    with open(file, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > 100 * 2**20:
            raise ValueError(f"{file.name}: implausible safetensors header")
        header = json.loads(f.read(length))
    count, names = 0, []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        n = 1
        for dim in info["shape"]:
            n *= int(dim)
        count += n
        names.append(name)
    return count, names


def _tasks(architectures: list[str], model_type: str, chat_template: bool) -> tuple[Task, ...]:
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        # A decoder also classifies (from its last token); chat needs a template.
        tasks = [Task.CAUSAL_LM, Task.SEQUENCE_CLASSIFICATION]
        if chat_template:
            tasks.insert(1, Task.CHAT_SFT)
        return tuple(tasks)
    if model_type in ENCODER_TYPES:
        return (Task.SEQUENCE_CLASSIFICATION,)
    return ()


def _has_chat_template(path: Path) -> bool:
    if (path / "chat_template.jinja").is_file():
        return True
    try:
        data = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(data, dict) and data.get("chat_template"))


def _first_int(config: dict, *keys: str) -> int:
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return 0


_FRONT_LINE = re.compile(r"^([A-Za-z_]+):\s*(.*?)\s*$")


def _front_matter(readme: Path) -> dict[str, str]:
    """Top-level `key: value` lines of a README's YAML front matter (no YAML needed
    for the few scalar keys read here)."""
    try:
        lines = readme.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {}
    if not lines or lines[0].strip() != "---":
        return {}
    out: dict[str, str] = {}
    for line in lines[1:]:
        if line.strip() == "---":
            break
        match = _FRONT_LINE.match(line)
        if match and match.group(2):
            out[match.group(1)] = match.group(2).strip("'\"")
    return out
