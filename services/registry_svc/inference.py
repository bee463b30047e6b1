"""Running a loaded model: a batch of classifications, a batch of generations, one
streamed generation. Synchronous torch code; the predictor calls it from its threads."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from services.common.modelio import LoadedModel
from services.common.task import Task
from services.registry_svc.domain.prediction import (
    ChatTurn,
    Classification,
    FinishReason,
    Generation,
    GenerationSettings,
    LabelScore,
    PredictInput,
    cut_at_stop,
)


def prepare(loaded: LoadedModel) -> LoadedModel:
    """Decoder-only models generate batches left-padded."""
    if loaded.task is not Task.SEQUENCE_CLASSIFICATION:
        loaded.tokenizer.padding_side = "left"
    return loaded


def prompt_text(loaded: LoadedModel, item: PredictInput) -> str:
    """The text the model sees: the input text, or the conversation rendered by the
    model's chat template (a plain `role: content` layout when it has none)."""
    if item.conversation is None and (loaded.task is not Task.CHAT_SFT or item.text is None):
        return item.text or ""
    turns = item.conversation or (ChatTurn("user", item.text or ""),)
    tokenizer = loaded.tokenizer
    messages = [{"role": t.role, "content": t.content} for t in turns]
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return "".join(f"{t.role}: {t.content}\n" for t in turns) + "assistant:"


def token_counts(loaded: LoadedModel, texts: Sequence[str]) -> list[int]:
    return [len(ids) for ids in loaded.tokenizer(list(texts), add_special_tokens=True)["input_ids"]]


def classify(loaded: LoadedModel, texts: Sequence[str], top_k: int = 0) -> list[Classification]:
    import torch

    enc = loaded.tokenizer(list(texts), padding=True, truncation=True, max_length=loaded.context_length,
                           return_tensors="pt")
    with torch.inference_mode():
        probs = torch.softmax(loaded.model(**enc).logits.float(), dim=-1)
    names = loaded.label_names or tuple(str(i) for i in range(probs.shape[-1]))
    out = []
    for row in probs.tolist():
        ranked = sorted(zip(names, row, strict=True), key=lambda p: -p[1])
        shown = ranked[:top_k] if top_k > 0 else ranked
        out.append(Classification(label=ranked[0][0], score=ranked[0][1],
                                  scores=tuple(LabelScore(n, s) for n, s in shown)))
    return out


def class_probabilities(loaded: LoadedModel, texts: Sequence[str]) -> list[list[float]]:
    """Probabilities in logit order (export checks compare these)."""
    import torch

    enc = loaded.tokenizer(list(texts), padding=True, truncation=True, max_length=loaded.context_length,
                           return_tensors="pt")
    with torch.inference_mode():
        return torch.softmax(loaded.model(**enc).logits.float(), dim=-1).tolist()


def _generate_kwargs(loaded: LoadedModel, s: GenerationSettings, max_new: int) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"max_new_tokens": max_new, "pad_token_id": loaded.tokenizer.pad_token_id,
                              "do_sample": not s.greedy}
    if not s.greedy:
        kwargs.update(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k or None)
    else:  # the model's generation_config may ask for sampling; greedy means greedy
        kwargs.update(temperature=None, top_p=None, top_k=None)
    return kwargs


def _seed(s: GenerationSettings) -> None:
    if s.seed is not None and not s.greedy:
        import torch

        torch.manual_seed(s.seed)


def generate(loaded: LoadedModel, prompts: Sequence[str], s: GenerationSettings, max_new: int,
             capped: bool) -> list[Generation]:
    """One batch of generations with the same settings. ``capped``: ``max_new`` was lowered to fit
    the context, so running out of it means the context was full."""
    import torch

    tok = loaded.tokenizer
    enc = tok(list(prompts), return_tensors="pt", padding=True)
    _seed(s)
    with torch.inference_mode():
        out = loaded.model.generate(**enc, **_generate_kwargs(loaded, s, max_new))
    width = enc["input_ids"].shape[1]
    input_counts = enc["attention_mask"].sum(dim=1).tolist()
    eos = _eos_ids(loaded)
    results = []
    for row, n_in in zip(out[:, width:].tolist(), input_counts, strict=True):
        ended = next((i for i, t in enumerate(row) if t in eos), None)
        ids = row if ended is None else row[:ended]
        text, stopped = cut_at_stop(tok.decode(ids, skip_special_tokens=True), s.stop)
        if stopped:
            reason = FinishReason.STOP_SEQUENCE
            count = len(tok(text, add_special_tokens=False)["input_ids"])
        else:
            count = len(ids)
            reason = (FinishReason.END_OF_SEQUENCE if ended is not None
                      else FinishReason.CONTEXT_LENGTH if capped else FinishReason.MAX_TOKENS)
        results.append(Generation(text, reason, int(n_in), count))
    return results


def _eos_ids(loaded: LoadedModel) -> set[int]:
    value = loaded.model.generation_config.eos_token_id
    if value is None:
        value = loaded.tokenizer.eos_token_id
    ids = value if isinstance(value, list) else [value]
    return {i for i in ids if i is not None}


def stream(loaded: LoadedModel, prompt: str, s: GenerationSettings, max_new: int,
           stop_flag: threading.Event) -> tuple[Iterator[str], Callable[[], Any]]:
    """Start generating ``prompt`` token by token. Returns the text pieces as they come (a
    blocking iterator) and a ``run`` function to call in a worker thread; setting
    ``stop_flag`` ends generation at the next token. ``run`` returns the generated ids."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

    class _Flag(StoppingCriteria):
        def __call__(self, input_ids, scores, **kwargs):
            return torch.full((input_ids.shape[0],), stop_flag.is_set(), dtype=torch.bool)

    tok = loaded.tokenizer
    enc = tok([prompt], return_tensors="pt")
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True, timeout=600)

    def run():
        _seed(s)
        try:
            with torch.inference_mode():
                out = loaded.model.generate(**enc, streamer=streamer,
                                            stopping_criteria=StoppingCriteriaList([_Flag()]),
                                            **_generate_kwargs(loaded, s, max_new))
        except BaseException:
            streamer.end()  # never leave the reader waiting
            raise
        return out[0, enc["input_ids"].shape[1]:].tolist()

    return iter(streamer), run


def finish_reason(loaded: LoadedModel, ids: Sequence[int], max_new: int, capped: bool) -> FinishReason:
    if any(t in _eos_ids(loaded) for t in ids):
        return FinishReason.END_OF_SEQUENCE
    if len(ids) >= max_new:
        return FinishReason.CONTEXT_LENGTH if capped else FinishReason.MAX_TOKENS
    return FinishReason.MAX_TOKENS
