"""ExportModelVersion's job: merge a LoRA version into its base, check it, offer it.

The check is what makes an export trustworthy: the version's own predictions are made
with the adapter applied to the base (unmerged, through peft), the export is loaded back
from disk with nothing but ``transformers``, and both must agree on the examples stored
with the version — same answers, probabilities within the dtype's tolerance. An export
that fails the check ends FAILED and its files are deleted; nothing unchecked is offered.

Exports run in this process, one at a time by default, on their own threads; exports
left unfinished by a restart are started again when the service starts.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.common.errors import MtwError
from services.common.modelio import fetch_folder
from services.common.task import Task
from services.registry_svc import artifacts as art
from services.registry_svc.domain.model import (
    ExportDtype,
    ExportState,
    ExportVerification,
    ModelExport,
    ModelVersion,
)

log = logging.getLogger(__name__)

# Largest probability difference accepted between the version and its export.
TOLERANCE = {ExportDtype.UNSPECIFIED: 1e-4, ExportDtype.FLOAT32: 1e-4, ExportDtype.FLOAT16: 2e-2,
             ExportDtype.BFLOAT16: 5e-2}
FALLBACK_EXAMPLES = ("The committee will meet on Tuesday to discuss the budget.",
                     "She looked out of the window and smiled.")
CHECK_NEW_TOKENS = 12


@dataclass(frozen=True)
class Outputs:
    """What a model answered on the examples: probabilities (classes, or the next token), and
    the answers compared exactly (top class, or greedy text)."""

    probabilities: list[list[float]]
    answers: list[str]


def _torch_dtype(dtype: ExportDtype):
    import torch

    return {ExportDtype.FLOAT32: torch.float32, ExportDtype.FLOAT16: torch.float16,
            ExportDtype.BFLOAT16: torch.bfloat16}.get(dtype)


def _load_base(task: Task, base: str, labels: tuple[str, ...]):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    common = {"trust_remote_code": False, "use_safetensors": True}
    if task is Task.SEQUENCE_CLASSIFICATION:
        return AutoModelForSequenceClassification.from_pretrained(
            base, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={n: i for i, n in enumerate(labels)}, ignore_mismatched_sizes=True, **common)
    return AutoModelForCausalLM.from_pretrained(base, **common)


def outputs(model: Any, tokenizer: Any, task: Task, texts: list[str]) -> Outputs:
    """Probabilities and answers of ``model`` on ``texts``, in float32."""
    import torch

    model.eval()
    probabilities, answers = [], []
    with torch.inference_mode():
        for text in texts:  # one at a time: no padding effects in the comparison
            enc = tokenizer([text], return_tensors="pt", truncation=True, max_length=256)
            if task is Task.SEQUENCE_CLASSIFICATION:
                probs = torch.softmax(model(**enc).logits.float(), dim=-1)[0]
                probabilities.append(probs.tolist())
                answers.append(str(int(probs.argmax())))
            else:
                logits = model(**enc).logits[0, -1].float()
                probabilities.append(torch.softmax(logits, dim=-1).tolist())
                out = model.generate(**enc, max_new_tokens=CHECK_NEW_TOKENS, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id)
                answers.append(tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True))
    return Outputs(probabilities, answers)


def compare(reference: Outputs, exported: Outputs, dtype: ExportDtype) -> ExportVerification:
    diff = max((abs(a - b) for ra, rb in zip(reference.probabilities, exported.probabilities, strict=True)
                for a, b in zip(ra, rb, strict=True)), default=0.0)
    matching = sum(a == b for a, b in zip(reference.answers, exported.answers, strict=True))
    count = len(reference.answers)
    return ExportVerification(example_count=count, matching_count=matching, max_abs_difference=diff,
                              passed=count > 0 and matching == count and diff <= TOLERANCE[dtype])


def merge_and_check(folder: Path, task: Task, base: str, labels: tuple[str, ...], dtype: ExportDtype,
                    examples: list[str], out: Path, card: str) -> ExportVerification:
    """Writes the merged model to ``out`` and checks it against the unmerged adapter."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    adapted = PeftModel.from_pretrained(_load_base(task, base, labels), str(folder), is_trainable=False)
    if adapted.config.pad_token_id is None:
        adapted.config.pad_token_id = tokenizer.pad_token_id
    reference = outputs(adapted, tokenizer, task, examples)
    merged = adapted.merge_and_unload()
    torch_dtype = _torch_dtype(dtype)
    if torch_dtype is not None:
        merged = merged.to(torch_dtype)
    merged.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    (out / art.CARD_FILE).write_text(card)
    del adapted, merged
    # Loaded back the way a user would: plain transformers, nothing of peft or MTW.
    auto = AutoModelForSequenceClassification if task is Task.SEQUENCE_CLASSIFICATION else AutoModelForCausalLM
    reloaded = auto.from_pretrained(str(out), trust_remote_code=False, use_safetensors=True)
    exported = outputs(reloaded.float(), AutoTokenizer.from_pretrained(str(out)), task, examples)
    return compare(reference, exported, dtype)


class ExportRunner:
    def __init__(self, app: Any, settings: Any) -> None:
        self.app = app
        self.settings = settings
        self._gate = asyncio.Semaphore(max(1, settings.max_concurrent_exports))
        self._tasks: set[asyncio.Task] = set()

    def submit(self, export: ModelExport) -> None:
        task = asyncio.create_task(self._run(export), name=f"export {export.name}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resume_unfinished(self) -> int:
        unfinished = await self.app.store.unfinished_exports()
        for export in unfinished:
            self.submit(export)
        return len(unfinished)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _run(self, export: ModelExport) -> None:
        store, files = self.app.store, self.app.files
        prefix = f"{art.version_prefix(export.project, export.model_id, export.version)}/exports/{export.export_id}"
        async with self._gate:
            await store.mark_export_running(export)
            workdir = Path(tempfile.mkdtemp(prefix="export-"))
            try:
                version: ModelVersion = await store.get_version(export.project, export.model_id, export.version)
                if version.is_deleted:
                    raise _Failed("the version was deleted before the export ran", "CANCELLED_BY_USER")
                base = (version.lineage.card_facts.get("base") or {}).get("source", "")
                if not base:
                    raise _Failed("the version does not record where its base model is", "MODEL_ACCESS")
                folder = await asyncio.to_thread(fetch_folder, files.objects, version.artifacts.uri,
                                                 self.settings.model_cache_path,
                                                 max_cache_bytes=self.settings.model_cache_bytes)
                if base.startswith("s3://"):
                    base = str(await asyncio.to_thread(fetch_folder, files.objects, base,
                                                       self.settings.model_cache_path,
                                                       max_cache_bytes=self.settings.model_cache_bytes))
                examples = list(version.examples) or list(FALLBACK_EXAMPLES)
                out = workdir / "merged"
                verification = await asyncio.to_thread(
                    merge_and_check, folder, version.task, base, version.label_names, export.dtype, examples,
                    out, version.model_card)
                if not verification.passed:
                    await store.finish_export(export, ExportState.FAILED, verification=verification, failure={
                        "category": "INTERNAL",
                        "message": f"the merged model did not reproduce the version: {verification.matching_count}"
                                   f"/{verification.example_count} answers the same, largest probability "
                                   f"difference {verification.max_abs_difference:.2e}",
                        "hint": "Try dtype FLOAT32; if that fails too, report it to the operators."})
                    return
                size = 0
                for path in sorted(p for p in out.rglob("*") if p.is_file()):
                    size += await files.objects.put_file(f"{prefix}/{path.relative_to(out)}", path)
                await store.finish_export(export, ExportState.SUCCEEDED, uri=files.objects.uri(prefix),
                                          size_bytes=size, verification=verification)
                log.info("export %s: %d bytes, check %s", export.name, size, verification)
            except asyncio.CancelledError:
                await files.delete_quietly(prefix + "/")
                raise
            except Exception as exc:
                log.exception("export %s failed", export.name)
                await files.delete_quietly(prefix + "/")
                category = exc.category if isinstance(exc, _Failed) else "INTERNAL"
                message = exc.message if isinstance(exc, MtwError) else f"{type(exc).__name__}: {exc}"
                await store.finish_export(export, ExportState.FAILED, failure={
                    "category": category, "message": message, "hint": "Export again; if it keeps failing, "
                    "tell the operators."})
            finally:
                shutil.rmtree(workdir, ignore_errors=True)


class _Failed(MtwError):
    def __init__(self, message: str, category: str) -> None:
        super().__init__(message)
        self.category = category
