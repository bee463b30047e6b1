"""Batched inference per task: one forward pass per batch, per-example results out.

Rows arrive in read batches; within one, rows are ordered by length before they are cut
into model batches, so a batch pads to similar lengths (the order of results does not
matter: each carries its row). Everything runs under ``torch.inference_mode``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from services.common.modelio import LoadedModel
from services.common.task import Task
from services.eval_svc.runner.data import DataError, Row

INPUT_CHARS = 8000  # ExampleResult.input is cut to this


@dataclass
class Scored:
    """One example's result plus what the aggregate metrics need of it."""

    row: int
    input: str
    prediction: str
    reference: str
    score: float | None = None
    correct: bool | None = None
    loss: float | None = None
    label_probabilities: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    truncated: bool = False
    reference_index: int = -1  # classification
    probabilities: np.ndarray | None = None  # classification, float32 (C,)
    loss_sum: float = 0.0  # generation: summed token loss
    tokens: int = 0  # generation: tokens scored


def _batches(items: Sequence, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


class ClassificationScorer:
    def __init__(self, loaded: LoadedModel, max_len: int, batch_size: int) -> None:
        self.model, self.tokenizer = loaded.model, loaded.tokenizer
        self.labels = list(loaded.label_names)
        self.index = {name: i for i, name in enumerate(self.labels)}
        self.max_len, self.batch_size = max_len, batch_size

    def score(self, rows: list[Row]) -> list[Scored]:
        import torch

        for r in rows:
            if r.label not in self.index:
                raise DataError(f"label '{r.label}' is not one of the model's classes {self.labels}", r.row)
        encoded = self.tokenizer([r.text for r in rows], truncation=True, max_length=self.max_len,
                                 return_offsets_mapping=True)
        order = sorted(range(len(rows)), key=lambda i: len(encoded["input_ids"][i]))
        out: list[Scored] = []
        for chunk in _batches(order, self.batch_size):
            batch = self.tokenizer.pad({"input_ids": [encoded["input_ids"][i] for i in chunk],
                                        "attention_mask": [encoded["attention_mask"][i] for i in chunk]},
                                       return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(**batch).logits.float()
            probabilities = torch.softmax(logits, dim=-1).numpy()
            for i, p in zip(chunk, probabilities, strict=True):
                r = rows[i]
                offsets = [o for o in encoded["offset_mapping"][i] if o[1] > o[0]]
                truncated = bool(offsets) and offsets[-1][1] < len(r.text.rstrip())
                predicted = int(p.argmax())
                reference = self.index[r.label]
                out.append(Scored(
                    row=r.row, input=r.text[:INPUT_CHARS], prediction=self.labels[predicted], reference=r.label,
                    score=float(p[predicted]), correct=predicted == reference,
                    loss=float(-math.log(max(float(p[reference]), 1e-15))),
                    label_probabilities={name: float(p[j]) for j, name in enumerate(self.labels)},
                    truncated=truncated, reference_index=reference, probabilities=p.astype(np.float32)))
        return out


class GenerationScorer:
    """Causal LM and chat: loss of the reference tokens (teacher forcing) and, when text
    metrics or samples are wanted, a generated answer.

    Chat: the prompt is the conversation up to the last assistant turn (chat template,
    generation prompt added); the reference is that turn. Causal LM: the loss covers the
    whole text; a generated continuation starts from the first half of it.
    """

    def __init__(self, loaded: LoadedModel, task: Task, max_len: int, batch_size: int, *, max_new_tokens: int,
                 temperature: float, generate_for, text_metrics: Sequence[str], seed: int) -> None:
        self.model, self.tokenizer, self.task = loaded.model, loaded.tokenizer, task
        self.max_len, self.batch_size = max_len, batch_size
        self.max_new_tokens, self.temperature = max_new_tokens, temperature
        self.generate_for = generate_for  # row -> bool: generate an answer for this example?
        self.text_metrics = tuple(text_metrics)
        self.seed = seed
        if task is Task.CHAT_SFT and self.tokenizer.chat_template is None:
            raise DataError("the model's tokenizer has no chat template, so conversations cannot be scored")

    def _split(self, r: Row) -> tuple[list[int], list[int], str, str, bool]:
        """(prompt ids, reference ids, prompt text, reference text, truncated)."""
        tok = self.tokenizer
        if self.task is Task.CHAT_SFT:
            history, answer = list(r.messages[:-1]), r.messages[-1]["content"]
            prompt = tok.apply_chat_template(history, tokenize=False, add_generation_prompt=True)
            full = tok.apply_chat_template(list(r.messages), tokenize=False)
            prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
            full_ids = tok(full, add_special_tokens=False)["input_ids"]
            reference_ids = full_ids[len(prompt_ids):] if full_ids[:len(prompt_ids)] == prompt_ids else \
                tok(full[len(prompt):], add_special_tokens=False)["input_ids"]
            text_reference = answer
        else:
            ids = tok(r.text, add_special_tokens=False)["input_ids"]
            if tok.eos_token_id is not None:
                ids = ids + [tok.eos_token_id]
            half = max(1, min(len(ids) // 2, self.max_len // 2))
            prompt_ids, reference_ids = ids[:half], ids[half:]
            prompt = tok.decode(prompt_ids, skip_special_tokens=True)
            text_reference = tok.decode(reference_ids[:self.max_new_tokens], skip_special_tokens=True)
        truncated = len(prompt_ids) + len(reference_ids) > self.max_len
        # Keep the end of a long prompt (what the answer follows) and the start of the answer.
        keep_reference = min(len(reference_ids), max(1, self.max_len // 2))
        reference_ids = reference_ids[:max(keep_reference, self.max_len - len(prompt_ids))]
        prompt_ids = prompt_ids[-max(1, self.max_len - len(reference_ids)):]
        return prompt_ids, reference_ids, prompt, text_reference, truncated

    def score(self, rows: list[Row]) -> list[Scored]:
        import torch

        parts = [self._split(r) for r in rows]
        order = sorted(range(len(rows)), key=lambda i: len(parts[i][0]) + len(parts[i][1]))
        pad = self.tokenizer.pad_token_id
        out: dict[int, Scored] = {}
        for chunk in _batches(order, self.batch_size):
            width = max(len(parts[i][0]) + len(parts[i][1]) for i in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            labels = torch.full((len(chunk), width), -100, dtype=torch.long)
            for b, i in enumerate(chunk):
                prompt_ids, reference_ids = parts[i][0], parts[i][1]
                seq = prompt_ids + reference_ids
                ids[b, :len(seq)] = torch.tensor(seq)
                mask[b, :len(seq)] = 1
                # Causal LM scores every token after the first; chat only the answer's.
                first = 1 if self.task is Task.CAUSAL_LM else len(prompt_ids)
                labels[b, first:len(seq)] = torch.tensor(seq[first:])
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
            shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
            token_loss = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)), shift_labels.reshape(-1), ignore_index=-100,
                reduction="none").view(shift_labels.shape)
            valid = shift_labels != -100
            sums = (token_loss * valid).sum(dim=1).tolist()
            counts = valid.sum(dim=1).tolist()
            for b, i in enumerate(chunk):
                r, (_p, _ref, prompt, reference, truncated) = rows[i], parts[i]
                mean = sums[b] / counts[b] if counts[b] else 0.0
                out[i] = Scored(row=r.row, input=prompt[-INPUT_CHARS:], prediction="", reference=reference,
                                loss=mean, truncated=truncated, loss_sum=float(sums[b]), tokens=int(counts[b]))
        self._generate(rows, parts, out)
        return [out[i] for i in range(len(rows))]

    def _generate(self, rows, parts, out: dict[int, Scored]) -> None:
        import torch

        from services.eval_svc.domain.metrics import text_scores

        chosen = [i for i, r in enumerate(rows) if self.text_metrics or self.generate_for(r.row)]
        if not chosen:
            return
        tok = self.tokenizer
        room = max(1, self.max_len - self.max_new_tokens)
        for chunk in _batches(sorted(chosen, key=lambda i: len(parts[i][0])), self.batch_size):
            prompts = [parts[i][0][-room:] for i in chunk]
            width = max(len(p) for p in prompts)
            ids = torch.full((len(chunk), width), tok.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for b, p in enumerate(prompts):  # left padding: every prompt ends where generation starts
                ids[b, width - len(p):] = torch.tensor(p)
                mask[b, width - len(p):] = 1
            kwargs = {"max_new_tokens": self.max_new_tokens, "pad_token_id": tok.pad_token_id,
                      "eos_token_id": tok.eos_token_id}
            if self.temperature > 0:
                torch.manual_seed(self.seed)
                kwargs.update(do_sample=True, temperature=self.temperature)
            else:
                kwargs.update(do_sample=False)
            with torch.inference_mode():
                generated = self.model.generate(input_ids=ids, attention_mask=mask, **kwargs)
            texts = tok.batch_decode(generated[:, width:], skip_special_tokens=True)
            for i, text in zip(chunk, texts, strict=True):
                out[i].prediction = text.strip()
        if self.text_metrics:
            predictions = [out[i].prediction for i in chosen]
            references = [out[i].reference for i in chosen]
            for name, values in text_scores(predictions, references, self.text_metrics).items():
                for i, value in zip(chosen, values, strict=True):
                    out[i].metrics[name] = float(value)
            main = "rouge_l" if "rouge_l" in self.text_metrics else self.text_metrics[0]
            for i in chosen:
                out[i].score = out[i].metrics.get(main)
                if "exact_match" in out[i].metrics:
                    out[i].correct = out[i].metrics["exact_match"] == 1.0
