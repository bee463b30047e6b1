"""Predict and StreamPredict: a bounded cache of loaded models and micro-batching.

Loaded models live in an LRU of ``max_loaded_models`` entries (the least recently used
is dropped when another is needed). Each entry has a batcher: concurrent requests for
the same version wait up to ``predict_batch_wait_ms`` for each other and run as one
forward pass of up to ``predict_max_batch_size`` inputs, on one inference thread (torch
already uses every core for a pass; more threads would only fight over them).
Generations batch only with generations of the same settings. Streams run on their own
threads so a long generation never holds up the batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from services.common.errors import FailedPrecondition, FieldViolation, InvalidArgument, Unavailable
from services.common.modelio import LoadedModel, fetch_folder, load_for_inference
from services.common.task import Task
from services.registry_svc import inference
from services.registry_svc.app import Caller, RegistryApp
from services.registry_svc.domain.model import ModelVersion
from services.registry_svc.domain.prediction import (
    Answer,
    FinishReason,
    GenerationSettings,
    PredictInput,
    Prediction,
    StreamChunk,
    input_violations,
)
from services.registry_svc.peers import call_metadata
from services.registry_svc.settings import RegistrySettings

log = logging.getLogger(__name__)


class Retired(Exception):
    """The model was unloaded while this request was on its way to it."""


@dataclass
class _Item:
    text: str
    key: Any  # items with equal keys may share a forward pass
    future: asyncio.Future


class Batcher:
    """Collects concurrent items for one model and runs them in batches on ``executor``."""

    def __init__(self, run: Callable[[Any, list[str]], list[Any]], executor: ThreadPoolExecutor,
                 max_batch: int, wait_seconds: float) -> None:
        self._run = run
        self._executor = executor
        self._max = max(1, max_batch)
        self._wait = wait_seconds
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._task = asyncio.create_task(self._loop(), name="predict-batcher")
        self.batches = 0  # forward passes run (observability and tests)
        self.retired = False

    async def submit(self, key: Any, texts: list[str]) -> list[Any]:
        if self.retired:
            raise Retired()
        loop = asyncio.get_running_loop()
        items = [_Item(t, key, loop.create_future()) for t in texts]
        for item in items:
            self._queue.put_nowait(item)
        return list(await asyncio.gather(*(i.future for i in items)))

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            if first is None:  # retired: what was queued before has been served
                return
            pending = [first]
            deadline = loop.time() + self._wait
            while len(pending) < self._max:
                timeout = deadline - loop.time()
                try:
                    item = (self._queue.get_nowait() if timeout <= 0 and not self._queue.empty()
                            else await asyncio.wait_for(self._queue.get(), max(timeout, 0)))
                except TimeoutError:
                    break
                if item is None:
                    self._queue.put_nowait(None)  # stop after this batch
                    break
                pending.append(item)
            groups: dict[Any, list[_Item]] = {}
            for item in pending:
                groups.setdefault(item.key, []).append(item)
            for key, group in groups.items():
                live = [i for i in group if not i.future.done()]
                if not live:
                    continue
                self.batches += 1
                try:
                    results = await loop.run_in_executor(self._executor, self._run, key, [i.text for i in live])
                except Exception as exc:  # noqa: BLE001 - every caller of the batch gets the error
                    for item in live:
                        if not item.future.done():
                            item.future.set_exception(exc)
                    continue
                for item, result in zip(live, results, strict=True):
                    if not item.future.done():
                        item.future.set_result(result)

    def retire(self) -> None:
        """Serve what is queued, then stop; later submits raise Retired (the caller loads again)."""
        if not self.retired:
            self.retired = True
            self._queue.put_nowait(None)

    async def close(self) -> None:
        self.retired = True
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@dataclass
class Served:
    """A loaded model and its batcher."""

    version: str
    loaded: LoadedModel
    batcher: Batcher
    extra: dict[str, Any] = field(default_factory=dict)


class ModelCache:
    """LRU of loaded models; concurrent first uses of one model load it once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._entries: OrderedDict[str, asyncio.Future[Served]] = OrderedDict()
        self.loads = 0

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def keys(self) -> list[str]:
        return list(self._entries)

    async def get(self, key: str, load: Callable[[], Awaitable[Served]]) -> Served:
        future = self._entries.get(key)
        if future is None:
            future = asyncio.ensure_future(load())
            self._entries[key] = future
            self.loads += 1
            try:
                await asyncio.shield(future)
            except BaseException:
                if self._entries.get(key) is future:
                    del self._entries[key]
                raise
            await self._evict()
        self._entries.move_to_end(key)
        return await asyncio.shield(future)

    async def _evict(self) -> None:
        while len(self._entries) > self.capacity:
            key, future = self._entries.popitem(last=False)
            log.info("unloading %s (least recently used)", key)
            if future.done() and not future.exception():
                future.result().batcher.retire()  # requests already queued still get answers

    async def close(self) -> None:
        for future in self._entries.values():
            if future.done() and not future.exception():
                await future.result().batcher.close()
            else:
                future.cancel()
        self._entries.clear()


class Predictor:
    def __init__(self, settings: RegistrySettings, app: RegistryApp) -> None:
        self.settings = settings
        self.app = app
        self.cache = ModelCache(settings.max_loaded_models)
        self._infer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._streams = ThreadPoolExecutor(max_workers=2, thread_name_prefix="predict-stream")
        self._base_sources: dict[str, str] = {}

    async def close(self) -> None:
        await self.cache.close()
        self._infer.shutdown(wait=False, cancel_futures=True)
        self._streams.shutdown(wait=False, cancel_futures=True)

    # --- loading ---------------------------------------------------------------------

    async def served(self, caller: Caller, version: ModelVersion) -> Served:
        return await self.cache.get(version.name, partial(self._load, caller, version))

    async def _submit(self, caller: Caller, version: ModelVersion, key: Any, texts: list[str]) -> list[Any]:
        for _attempt in range(3):
            served = await self.served(caller, version)
            try:
                return await served.batcher.submit(key, texts)
            except Retired:
                continue  # unloaded in between: load it again
        raise Unavailable("the model was unloaded repeatedly while answering; try again",
                          reason="MODEL_CACHE_BUSY")

    async def _load(self, caller: Caller, version: ModelVersion) -> Served:
        cache_root = self.settings.model_cache_path
        folder = await asyncio.to_thread(fetch_folder, self.app.files.objects, version.artifacts.uri, cache_root,
                                         max_cache_bytes=self.settings.model_cache_bytes)
        base = await self._base_source(caller, version) if version.is_adapter_only else None
        threads = self.settings.predict_torch_threads or None
        loaded = await asyncio.get_running_loop().run_in_executor(
            self._infer, partial(load_for_inference, folder, version.task, base_source=base,
                                 label_names=version.label_names or None, torch_threads=threads))
        inference.prepare(loaded)
        batcher = Batcher(partial(self._run_batch, loaded), self._infer, self.settings.predict_max_batch_size,
                          self.settings.predict_batch_wait_ms / 1000)
        log.info("loaded %s for prediction", version.name)
        return Served(version.name, loaded, batcher)

    async def _base_source(self, caller: Caller, version: ModelVersion) -> str:
        """Where the base model of an adapter is: a local folder, or an S3 folder fetched into the cache."""
        source = self._base_sources.get(version.base_model)
        if source is None:
            metadata = call_metadata(caller.principal, caller.api_key, self.settings.internal_token)
            source = (await self.app.peers.base_model(version.base_model, metadata)).source
            self._base_sources[version.base_model] = source
        if source.startswith("s3://"):
            folder = await asyncio.to_thread(fetch_folder, self.app.files.objects, source,
                                             self.settings.model_cache_path,
                                             max_cache_bytes=self.settings.model_cache_bytes)
            return str(folder)
        return source

    @staticmethod
    def _run_batch(loaded: LoadedModel, key: Any, texts: list[str]) -> list[Any]:
        if loaded.task is Task.SEQUENCE_CLASSIFICATION:
            return inference.classify(loaded, texts, top_k=key)
        settings, max_new, capped = key
        return inference.generate(loaded, texts, settings, max_new, capped)

    # --- Predict -----------------------------------------------------------------------

    async def predict(self, caller: Caller, name: str, inputs: list[PredictInput], top_k: int,
                      settings: GenerationSettings) -> Answer:
        version = await self.app.resolve_active(name)
        violations = input_violations(inputs, chat=version.task is Task.CHAT_SFT)
        violations += settings.violations("generation_config")
        if top_k < 0:
            violations.append(FieldViolation("top_k", "must not be negative"))
        if violations:
            raise InvalidArgument(_summary(violations), violations)
        served = await self.served(caller, version)
        loaded = served.loaded
        prompts = [inference.prompt_text(loaded, item) for item in inputs]
        counts = inference.token_counts(loaded, prompts)
        _check_lengths(counts, loaded.context_length, "inputs", [f"inputs[{i}]" for i in range(len(inputs))])
        if loaded.task is Task.SEQUENCE_CLASSIFICATION:
            results = await self._submit(caller, version, top_k, prompts)
            return Answer(version.name, [Prediction(classification=r) for r in results])
        # Inputs that leave less room than max_new_tokens get less, and say so.
        jobs = []
        for prompt, count in zip(prompts, counts, strict=True):
            room = loaded.context_length - count
            max_new = min(settings.max_new_tokens, room)
            jobs.append(self._submit(caller, version, (settings, max_new, max_new < settings.max_new_tokens),
                                     [prompt]))
        results = [r[0] for r in await asyncio.gather(*jobs)]
        return Answer(version.name, [Prediction(generation=r) for r in results])

    # --- StreamPredict -------------------------------------------------------------------

    async def stream(self, caller: Caller, name: str, item: PredictInput,
                     settings: GenerationSettings) -> AsyncIterator[tuple[str, StreamChunk]]:
        version = await self.app.resolve_active(name)
        if version.task is Task.SEQUENCE_CLASSIFICATION:
            raise FailedPrecondition(f"model version '{version.name}' is a classifier; StreamPredict is for "
                                     "generative models, call Predict", reason="NOT_GENERATIVE")
        violations = input_violations([item], chat=version.task is Task.CHAT_SFT, prefix="input")
        violations += settings.violations("generation_config")
        if violations:
            raise InvalidArgument(_summary(violations), violations)
        loaded = (await self.served(caller, version)).loaded
        prompt = inference.prompt_text(loaded, item)
        count = inference.token_counts(loaded, [prompt])[0]
        _check_lengths([count], loaded.context_length, "input", ["input"])
        max_new = min(settings.max_new_tokens, loaded.context_length - count)
        capped = max_new < settings.max_new_tokens

        stop_flag = threading.Event()
        pieces, run = inference.stream(loaded, prompt, settings, max_new, stop_flag)
        loop = asyncio.get_running_loop()
        generation = loop.run_in_executor(self._streams, run)
        held = ""  # text not sent yet: it may be the start of a stop string
        hold = max((len(s) for s in settings.stop), default=1) - 1
        sent_tokens = 0
        stopped = False
        first = True
        try:
            while True:
                piece = await loop.run_in_executor(None, next, pieces, None)
                if piece is None:
                    break
                held += piece
                sent_tokens += 1
                if settings.stop:
                    cut = min((i for i in (held.find(s) for s in settings.stop) if i >= 0), default=-1)
                    if cut >= 0:
                        held, stopped = held[:cut], True
                        stop_flag.set()
                        break
                ready = held[:len(held) - hold] if hold else held
                held = held[len(ready):]
                if ready:
                    yield version.name if first else "", StreamChunk(text_delta=ready, output_token_count=sent_tokens)
                    first = False
            ids = await generation
        finally:
            stop_flag.set()  # a client that went away stops the generation too
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(generation), 30)
        reason = FinishReason.STOP_SEQUENCE if stopped else inference.finish_reason(loaded, ids, max_new, capped)
        yield version.name if first else "", StreamChunk(
            text_delta=held, finish_reason=reason, input_token_count=count,
            output_token_count=sent_tokens if stopped else len(ids))


def _check_lengths(counts: list[int], limit: int, what: str, fields: list[str]) -> None:
    violations = [FieldViolation(f, f"{n:,} tokens, more than the model's context of {limit:,}; shorten it")
                  for f, n in zip(fields, counts, strict=True) if n >= limit]
    if violations:
        raise InvalidArgument(f"{len(violations)} {what} too long for the model: "
                              + "; ".join(f"{v.field}: {v.description}" for v in violations[:3]),
                              violations, reason="INPUT_TOO_LONG")


def _summary(violations: list[FieldViolation]) -> str:
    head = "; ".join(f"{v.field}: {v.description}" for v in violations[:3])
    more = f" (and {len(violations) - 3} more)" if len(violations) > 3 else ""
    return f"the prediction request is invalid: {head}{more}"
