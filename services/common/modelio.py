"""Trained models in, ready for inference: shared by evaluation and prediction.

``fetch_folder`` copies a Hugging Face folder from object storage (``s3://bucket/prefix``)
to a local cache keyed by its URI. Tuning-job outputs and model versions are immutable,
so a URI's bytes never change and a cached copy never goes stale. Bytes stream to disk
in chunks; the cache is bounded and drops the least recently used folders first; a
per-URI file lock makes concurrent callers (threads or processes) download once.

``load_for_inference`` loads such a folder for a task: a whole model, or a base model
plus the PEFT adapter when the folder holds ``adapter_config.json`` (the adapter is
merged into the weights, so inference costs what the plain model costs). Only
safetensors are read and ``trust_remote_code`` stays False (DESIGN: never run or
unpickle what a user uploaded).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted
from services.common.task import Task

CHUNK_BYTES = 1024 * 1024
DEFAULT_CACHE_BYTES = 20 * 1024**3
_MARKER = ".mtw-complete"  # written last: a folder without it is not (yet) a cache entry
_CACHE_LOCK = ".mtw-cache.lock"
ADAPTER_CONFIG = "adapter_config.json"
TRAINING_ARGS = "training_args.json"  # written next to the weights by the trainer
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json")


# --------------------------------------------------------------------------- object listing


def split_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` → ``("bucket", "some/prefix")``; InvalidArgument otherwise."""
    if not isinstance(uri, str) or not uri.startswith("s3://"):
        raise InvalidArgument.field("uri", f"expected s3://bucket/prefix, got '{uri}'")
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    prefix = prefix.strip("/")
    if not bucket or not prefix:
        raise InvalidArgument.field("uri", f"expected s3://bucket/prefix, got '{uri}'")
    return bucket, prefix


class _Source:
    """The two ways services hold S3: the minio-based ObjectStore and the trainer's
    pyarrow S3Access. Both list a prefix and stream an object."""

    def __init__(self, objects_or_s3: Any) -> None:
        self._minio = getattr(objects_or_s3, "client", None)
        self._fs = None if self._minio is not None else objects_or_s3.filesystem()

    def list(self, bucket: str, prefix: str) -> list[tuple[str, int]]:
        """(path relative to prefix, size) of every object under ``prefix/``."""
        base = prefix + "/"
        if self._minio is not None:
            objects = self._minio.list_objects(bucket, prefix=base, recursive=True)
            found = [(o.object_name[len(base):], int(o.size or 0)) for o in objects]
        else:
            from pyarrow import fs as pafs

            try:
                infos = self._fs.get_file_info(pafs.FileSelector(f"{bucket}/{prefix}", recursive=True))
            except FileNotFoundError:
                infos = []
            root = f"{bucket}/{prefix}/"
            found = [(i.path[len(root):], int(i.size or 0)) for i in infos if i.type == pafs.FileType.File]
        return [(rel, size) for rel, size in found if rel and not rel.endswith("/")]

    @contextlib.contextmanager
    def open(self, bucket: str, key: str) -> Iterator[Any]:
        if self._minio is not None:
            response = self._minio.get_object(bucket, key)
            try:
                yield response
            finally:
                response.close()
                response.release_conn()
        else:
            with self._fs.open_input_stream(f"{bucket}/{key}") as stream:
                yield stream


# --------------------------------------------------------------------------- the cache


def cache_key(uri: str) -> str:
    return hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:32]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def fetch_folder(
    objects_or_s3: Any,
    uri: str,
    cache_root: Path,
    *,
    max_cache_bytes: int = DEFAULT_CACHE_BYTES,
    required: Sequence[str] = (),
    exclude: Sequence[str] = (),
) -> Path:
    """A local copy of the folder at ``uri`` (downloaded unless already cached).

    ``objects_or_s3``: an ``ObjectStore`` or an ``S3Access``. ``required``: file names that
    must be in the folder (FailedPrecondition otherwise); ``exclude``: relative path
    prefixes not to fetch (e.g. ``merged/`` next to an adapter). NotFound when nothing is
    stored under ``uri``; ResourceExhausted when the folder alone exceeds the cache.
    """
    bucket, prefix = split_uri(uri)
    cache_root = Path(cache_root)
    key = cache_key(uri + "".join(f"|-{e}" for e in sorted(exclude)))
    final = cache_root / key
    with _locked(cache_root / f"{key}.lock"):
        if (final / _MARKER).is_file():
            _touch(final / _MARKER)
            return final
        source = _Source(objects_or_s3)
        files = [(rel, size) for rel, size in source.list(bucket, prefix)
                 if not any(rel.startswith(e) for e in exclude)]
        if not files:
            raise NotFound.resource("model folder", uri, reason="MODEL_FOLDER_NOT_FOUND")
        missing = [name for name in required if name not in {rel for rel, _ in files}]
        if missing:
            raise FailedPrecondition(f"the model folder {uri} has no {', '.join(missing)}",
                                     reason="MODEL_FOLDER_INCOMPLETE")
        total = sum(size for _, size in files)
        if total > max_cache_bytes:
            raise ResourceExhausted(
                f"the model folder {uri} holds {total:,} bytes, more than the model cache's "
                f"{max_cache_bytes:,}; raise the cache size", reason="MODEL_CACHE_TOO_SMALL")
        _evict(cache_root, max_cache_bytes - total, keep=key)
        staging = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache_root))
        try:
            for rel, _size in files:
                target = staging / rel
                if ".." in Path(rel).parts:  # keys are ours, but never write outside the folder
                    raise InvalidArgument.field("uri", f"object name '{rel}' leaves the folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                with source.open(bucket, f"{prefix}/{rel}") as stream, open(target, "wb") as out:
                    while chunk := stream.read(CHUNK_BYTES):
                        out.write(chunk)
            (staging / _MARKER).write_text(json.dumps({"uri": uri, "bytes": total}))
            _touch(staging / _MARKER)
            shutil.rmtree(final, ignore_errors=True)  # a half-made copy of an earlier crash
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return final


def _touch(marker: Path) -> None:
    """The marker's mtime is the entry's last use. Set from the clock in nanoseconds: the
    file system's own timestamps are coarse (milliseconds), and quick uses would tie."""
    now = time.time_ns()
    os.utime(marker, ns=(now, now))


def _evict(cache_root: Path, budget: int, keep: str) -> None:
    """Remove least recently used entries until the others fit in ``budget`` bytes."""
    with _locked(cache_root / _CACHE_LOCK):
        entries = []
        for folder in cache_root.iterdir():
            marker = folder / _MARKER
            if folder.name == keep or not marker.is_file():
                continue
            try:
                size = int(json.loads(marker.read_text()).get("bytes") or _folder_bytes(folder))
                entries.append((marker.stat().st_mtime_ns, size, folder))
            except (OSError, ValueError):
                continue
        used = sum(size for _, size, _ in entries)
        for _mtime, size, folder in sorted(entries, key=lambda e: e[0]):
            if used <= budget:
                break
            # Under the entry's own lock, so no caller is halfway through fetching it.
            with _locked(cache_root / f"{folder.name}.lock"):
                doomed = folder.with_name(f".evicted-{folder.name}-{time.monotonic_ns()}")
                with contextlib.suppress(OSError):
                    os.rename(folder, doomed)
                    shutil.rmtree(doomed, ignore_errors=True)
            used -= size


# --------------------------------------------------------------------------- loading


@dataclass
class LoadedModel:
    """A model ready for inference (eval mode, no gradients needed)."""

    model: Any
    tokenizer: Any
    task: Task
    label_names: tuple[str, ...] = ()  # classification: names in logit order
    folder: Path | None = None
    is_adapter: bool = False
    base_source: str = ""  # the base model an adapter was applied to
    context_length: int = 512
    extra: dict[str, Any] = field(default_factory=dict)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _context_length(config) -> int:
    for attr in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return 512


def _has_tokenizer(folder: Path) -> bool:
    return any((folder / name).is_file() for name in _TOKENIZER_FILES)


def folder_label_names(folder: Path) -> tuple[str, ...]:
    """Class names in logit order, from the trainer's notes or the model config."""
    names = _read_json(folder / TRAINING_ARGS).get("label_names")
    if names:
        return tuple(str(n) for n in names)
    id2label = _read_json(folder / "config.json").get("id2label") or {}
    try:
        ordered = [id2label[k] for k in sorted(id2label, key=int)]
    except (TypeError, ValueError):
        return ()
    # transformers' placeholders (LABEL_0…) are not names.
    return () if all(str(n).startswith("LABEL_") for n in ordered) else tuple(ordered)


def load_for_inference(
    folder: Path,
    task: Task | str,
    *,
    base_source: str | None = None,
    label_names: Sequence[str] | None = None,
    torch_threads: int | None = None,
) -> LoadedModel:
    """Load ``folder`` for ``task``.

    With ``adapter_config.json`` in the folder, the base comes from ``base_source`` (a
    local folder or a Hugging Face id, offline), else from the adapter's own
    ``base_model_name_or_path``; the adapter is merged into it. ``label_names``
    (classification) overrides what the folder says. FailedPrecondition when the folder
    cannot be loaded for the task, with what to do about it.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    task = Task[task] if isinstance(task, str) else task
    if task is Task.UNSPECIFIED:
        raise InvalidArgument.field("task", "a task is required to load a model")
    folder = Path(folder)
    if torch_threads:
        torch.set_num_threads(torch_threads)
    adapter = _read_json(folder / ADAPTER_CONFIG) if (folder / ADAPTER_CONFIG).is_file() else None
    base = base_source or (adapter or {}).get("base_model_name_or_path") or ""
    if adapter is not None and not base:
        raise FailedPrecondition(f"the adapter in {folder} does not say which base model it needs",
                                 reason="ADAPTER_BASE_UNKNOWN")
    weights_source = base if adapter is not None else str(folder)
    tokenizer_source = str(folder) if _has_tokenizer(folder) else weights_source
    names = tuple(label_names or ()) or folder_label_names(folder)
    if task is Task.SEQUENCE_CLASSIFICATION and not names:
        raise FailedPrecondition(f"the model in {folder} does not name its classes",
                                 reason="LABEL_NAMES_UNKNOWN")
    common = {"trust_remote_code": False, "use_safetensors": True}
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source, trust_remote_code=False)
        if task is Task.SEQUENCE_CLASSIFICATION:
            model = AutoModelForSequenceClassification.from_pretrained(
                weights_source, num_labels=len(names), id2label=dict(enumerate(names)),
                label2id={n: i for i, n in enumerate(names)}, ignore_mismatched_sizes=True, **common)
        else:
            model = AutoModelForCausalLM.from_pretrained(weights_source, **common)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(folder), is_trainable=False).merge_and_unload()
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise FailedPrecondition(
            f"the model in {folder} could not be loaded for {task.name}"
            f"{f' on the base model {base}' if adapter is not None else ''}: {exc}",
            reason="MODEL_NOT_LOADABLE") from exc
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    model.requires_grad_(False)
    return LoadedModel(model=model, tokenizer=tokenizer, task=task, label_names=names, folder=folder,
                       is_adapter=adapter is not None, base_source=base if adapter is not None else "",
                       context_length=_context_length(model.config))


__all__ = ["LoadedModel", "cache_key", "fetch_folder", "folder_label_names", "load_for_inference",
           "split_uri"]
