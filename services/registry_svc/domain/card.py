"""The model card of a version: a Hugging Face README.md (YAML front matter + Markdown).

Written from what the registry knows at registration (and again when evaluations are
linked): the version's lineage, the base model, the dataset version's quality report
and the linked evaluations' metrics next to the base model's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from services.common.task import Task

PIPELINE_TAGS = {Task.SEQUENCE_CLASSIFICATION: "text-classification", Task.CAUSAL_LM: "text-generation",
                 Task.CHAT_SFT: "text-generation"}
TASK_WORDS = {Task.SEQUENCE_CLASSIFICATION: "text classification", Task.CAUSAL_LM: "text continuation",
              Task.CHAT_SFT: "chat (answering the last user turn of a conversation)"}
METHOD_NAMES = {1: "LoRA", 2: "full fine-tuning"}


@dataclass(frozen=True)
class BaseFacts:
    name: str
    display_name: str = ""
    source: str = ""
    licence_name: str = ""
    licence_uri: str = ""
    parameter_count: int = 0
    context_length: int = 0


@dataclass(frozen=True)
class DataFacts:
    name: str
    split_rows: Mapping[str, int] = field(default_factory=dict)
    row_count: int = 0
    label_distribution: Sequence[tuple[str, int]] = ()
    warnings: Sequence[str] = ()
    exact_duplicate_rows: int = 0
    near_duplicate_rows: int = 0
    cross_split_duplicate_rows: int = 0
    pii_rows: int = 0


@dataclass(frozen=True)
class EvaluationFacts:
    name: str
    split: str
    summary: str
    metrics: Mapping[str, float]
    baseline: Mapping[str, float] = field(default_factory=dict)
    higher_is_better: Mapping[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class CardInput:
    version_name: str
    model_display_name: str
    description: str
    task: Task
    label_names: Sequence[str]
    is_adapter_only: bool
    base: BaseFacts
    data: DataFacts | None
    tuning_job: str
    method: int
    hyperparameters: Mapping[str, Any]
    trained_step: int
    trainable_parameter_count: int
    training_metrics: Mapping[str, float]
    evaluations: Sequence[EvaluationFacts] = ()


def headline_metrics(evaluations: Sequence[EvaluationFacts], training_metrics: Mapping[str, float]) -> dict[str, float]:
    """The version's `metrics`: the latest evaluation's, else the job's final validation metrics."""
    if evaluations and evaluations[-1].metrics:
        return dict(evaluations[-1].metrics)
    return {k: float(v) for k, v in training_metrics.items() if k.startswith("eval_")}


def render(card: CardInput) -> str:
    return _front_matter(card) + "\n" + _body(card)


def _front_matter(card: CardInput) -> str:
    meta: dict[str, Any] = {
        "license": _licence_id(card.base.licence_name),
        "base_model": card.base.source if _looks_like_hub_id(card.base.source) else card.base.name,
        "library_name": "peft" if card.is_adapter_only else "transformers",
        "pipeline_tag": PIPELINE_TAGS.get(card.task, "text-generation"),
        "tags": ["mtw", "lora" if card.method == 1 else "full-fine-tuning", card.task.name.lower()],
    }
    if card.data is not None:
        meta["datasets"] = [card.data.name]
    results = []
    for evaluation in card.evaluations:
        metrics = [{"type": k, "name": k, "value": round(float(v), 6)} for k, v in evaluation.metrics.items()]
        if metrics:
            results.append({"task": {"type": meta["pipeline_tag"]},
                            "dataset": {"name": card.data.name if card.data else "", "type": "mtw",
                                        "split": evaluation.split},
                            "metrics": metrics})
    if results:
        meta["model-index"] = [{"name": card.version_name, "results": results}]
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _body(card: CardInput) -> str:
    out: list[str] = [f"# {card.model_display_name} — {card.version_name}", ""]
    if card.description:
        out += [card.description.strip(), ""]
    out += ["## Intended use", "", _intended_use(card), ""]
    out += _data_section(card.data, card.task)
    out += _training_section(card)
    out += _evaluation_section(card)
    out += _usage_section(card)
    out += ["## Licence", "",
            f"The weights build on **{card.base.display_name or card.base.name}**, licensed under "
            f"**{card.base.licence_name or 'an unknown licence'}**"
            + (f" ({card.base.licence_uri})" if card.base.licence_uri else "")
            + ". Its terms apply to this model too; check them before you ship it.", ""]
    out += ["## Limitations", "", *_limitations(card), ""]
    return "\n".join(out)


def _intended_use(card: CardInput) -> str:
    what = TASK_WORDS.get(card.task, card.task.name.lower())
    text = f"Fine-tuned for {what}"
    if card.task is Task.SEQUENCE_CLASSIFICATION and card.label_names:
        text += " into the classes " + ", ".join(f"`{n}`" for n in card.label_names)
    text += (". Use it on text like its training data (below); it was not checked on anything else, "
             "and its answers are not to be trusted for decisions about people without review.")
    return text


def _data_section(data: DataFacts | None, task: Task) -> list[str]:
    if data is None:
        return ["## Training data", "", "The dataset version could not be read when this card was written.", ""]
    splits = ", ".join(f"{name} {rows:,}" for name, rows in data.split_rows.items() if rows)
    out = ["## Training data", "", f"Dataset version `{data.name}`: {data.row_count:,} rows ({splits}).", ""]
    if task is Task.SEQUENCE_CLASSIFICATION and data.label_distribution:
        total = sum(c for _, c in data.label_distribution) or 1
        out += ["| class | rows | share |", "| --- | ---: | ---: |"]
        out += [f"| {label} | {count:,} | {count / total:.1%} |" for label, count in data.label_distribution]
        out.append("")
    out += ["Quality report summary:", "",
            f"- exact duplicates: {data.exact_duplicate_rows:,} rows; near duplicates: {data.near_duplicate_rows:,}",
            f"- rows shared between splits: {data.cross_split_duplicate_rows:,}",
            f"- rows with personal data found: {data.pii_rows:,}"]
    out += [f"- warning: {w}" for w in data.warnings[:10]]
    out.append("")
    return out


def _training_section(card: CardInput) -> list[str]:
    method = METHOD_NAMES.get(card.method, "fine-tuning")
    out = ["## Training procedure", "",
           f"Trained by tuning job `{card.tuning_job}` with {method} on `{card.base.name}`"
           + (f" ({card.base.parameter_count:,} parameters)" if card.base.parameter_count else "")
           + f"; weights of step {card.trained_step:,} kept"
           + (f", {card.trainable_parameter_count:,} parameters trained" if card.trainable_parameter_count else "")
           + ".", "", "| parameter | value |", "| --- | --- |"]
    for key, value in _flatten(card.hyperparameters):
        out.append(f"| {key} | {value} |")
    out.append("")
    if card.training_metrics:
        out += ["Final metrics of the run: " + ", ".join(
            f"{k} {v:.4g}" for k, v in sorted(card.training_metrics.items())) + ".", ""]
    return out


def _evaluation_section(card: CardInput) -> list[str]:
    out = ["## Evaluation", ""]
    if not card.evaluations:
        return out + [("No evaluation was linked when this card was written; the figures above are from the "
                      "validation split during training."), ""]
    for evaluation in card.evaluations:
        out += [f"Evaluation `{evaluation.name}` on the `{evaluation.split}` split."
                + (f" {evaluation.summary}" if evaluation.summary else ""), "",
                "| metric | this model | base model | change |", "| --- | ---: | ---: | ---: |"]
        for metric, value in evaluation.metrics.items():
            base = evaluation.baseline.get(metric)
            if base is None:
                out.append(f"| {metric} | {value:.4g} | — | — |")
                continue
            better = evaluation.higher_is_better.get(metric, True)
            delta = value - base
            word = "better" if (delta > 0) == better and delta != 0 else ("worse" if delta else "same")
            out.append(f"| {metric} | {value:.4g} | {base:.4g} | {delta:+.4g} ({word}) |")
        out.append("")
    return out


def _usage_section(card: CardInput) -> list[str]:
    auto = "AutoModelForSequenceClassification" if card.task is Task.SEQUENCE_CLASSIFICATION else "AutoModelForCausalLM"
    base = card.base.source or card.base.name
    lines = ["## How to use", "", "```python", f"from transformers import AutoTokenizer, {auto}"]
    if card.is_adapter_only:
        lines += ["from peft import PeftModel", "",
                  "tokenizer = AutoTokenizer.from_pretrained(\"./model\")  # this folder"]
        if card.task is Task.SEQUENCE_CLASSIFICATION:
            labels = list(card.label_names)
            lines += [f"labels = {labels!r}",
                      f"base = {auto}.from_pretrained(\"{base}\", num_labels=len(labels),",
                      "    id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})"]
        else:
            lines += [f"base = {auto}.from_pretrained(\"{base}\")"]
        lines += ["model = PeftModel.from_pretrained(base, \"./model\")"]
    else:
        lines += ["", "tokenizer = AutoTokenizer.from_pretrained(\"./model\")",
                  f"model = {auto}.from_pretrained(\"./model\")"]
    lines += ["```", "", "Or through MTW: `mtw models predict " + card.version_name + " \"your text\"`.", ""]
    if card.is_adapter_only:
        lines += [("This folder holds the LoRA adapter only; the base model is needed to run it. "
                  "ExportModelVersion makes a standalone merged copy."), ""]
    return lines


def _limitations(card: CardInput) -> list[str]:
    out = [("- It knows only what its training data showed; text of another kind, language or era may get "
           "confident wrong answers.")]
    if card.task is Task.SEQUENCE_CLASSIFICATION:
        out.append("- It always picks one of its classes, even for text that fits none; read the scores.")
    else:
        out.append("- Generated text can be fluent and false; check facts before using them.")
    if card.base.context_length:
        out.append(f"- Inputs longer than {card.base.context_length:,} tokens are refused by Predict.")
    if card.data is not None and card.data.pii_rows:
        out.append(f"- Its training data had personal data in {card.data.pii_rows:,} rows; the model may "
                   "repeat some of it.")
    if card.data is not None and card.data.warnings:
        out.append("- The quality report raised warnings about the training data (above).")
    return out


def _flatten(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in values.items():
        if isinstance(value, Mapping):
            out += _flatten(value, f"{prefix}{key}.")
        elif isinstance(value, list):
            out.append((f"{prefix}{key}", ", ".join(map(str, value))))
        else:
            out.append((f"{prefix}{key}", str(value)))
    return out


def _licence_id(name: str) -> str:
    known = {"apache-2.0": "apache-2.0", "mit": "mit", "llama3.1": "llama3.1"}
    return known.get((name or "").strip().lower(), "other")


def _looks_like_hub_id(source: str) -> bool:
    return bool(source) and "/" in source and not source.startswith(("/", ".", "s3://"))
