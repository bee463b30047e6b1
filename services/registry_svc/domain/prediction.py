"""Prediction requests and answers as plain types, and the checks on them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from services.common.errors import FieldViolation

MAX_INPUTS = 64
MAX_STOP_SEQUENCES = 8
MAX_NEW_TOKENS = 4096
CHAT_ROLES = ("system", "user", "assistant")


class FinishReason(enum.Enum):
    UNSPECIFIED = 0
    END_OF_SEQUENCE = 1
    MAX_TOKENS = 2
    STOP_SEQUENCE = 3
    CONTEXT_LENGTH = 4


@dataclass(frozen=True)
class ChatTurn:
    role: str
    content: str


@dataclass(frozen=True)
class PredictInput:
    """Exactly one of ``text`` and ``conversation``."""

    text: str | None = None
    conversation: tuple[ChatTurn, ...] | None = None


@dataclass(frozen=True)
class GenerationSettings:
    max_new_tokens: int = 128
    temperature: float = 0.7
    top_p: float = 1.0
    top_k: int = 0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def violations(self, prefix: str) -> list[FieldViolation]:
        out = []
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            out.append(FieldViolation(f"{prefix}.max_new_tokens", f"must be 1-{MAX_NEW_TOKENS:,}"))
        if not 0 <= self.temperature <= 2:
            out.append(FieldViolation(f"{prefix}.temperature", "must be in [0, 2]"))
        if not 0 < self.top_p <= 1:
            out.append(FieldViolation(f"{prefix}.top_p", "must be in (0, 1]"))
        if self.top_k < 0:
            out.append(FieldViolation(f"{prefix}.top_k", "must not be negative"))
        if len(self.stop) > MAX_STOP_SEQUENCES:
            out.append(FieldViolation(f"{prefix}.stop_sequences", f"at most {MAX_STOP_SEQUENCES}"))
        if any(not s for s in self.stop):
            out.append(FieldViolation(f"{prefix}.stop_sequences", "must not contain empty strings"))
        return out


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True)
class Classification:
    label: str
    score: float
    scores: tuple[LabelScore, ...]


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: FinishReason
    input_token_count: int
    output_token_count: int


@dataclass(frozen=True)
class Prediction:
    classification: Classification | None = None
    generation: Generation | None = None
    input_truncated: bool = False


@dataclass(frozen=True)
class StreamChunk:
    text_delta: str = ""
    finish_reason: FinishReason = FinishReason.UNSPECIFIED
    input_token_count: int = 0
    output_token_count: int = 0


@dataclass(frozen=True)
class Answer:
    """What Predict returns: the version that answered (canonical name) and one prediction per input."""

    model_version: str
    predictions: list[Prediction] = field(default_factory=list)


def input_violations(inputs: list[PredictInput], *, chat: bool, prefix: str = "inputs") -> list[FieldViolation]:
    """Every problem with the inputs, by field."""
    out = []
    if not inputs:
        return [FieldViolation(prefix, "required: 1-64 inputs")]
    if len(inputs) > MAX_INPUTS:
        out.append(FieldViolation(prefix, f"at most {MAX_INPUTS} inputs per call; split the batch"))
    for i, item in enumerate(inputs):
        field_name = f"{prefix}[{i}]" if prefix == "inputs" else prefix
        if item.text is None and item.conversation is None:
            out.append(FieldViolation(field_name, "set text or conversation"))
        elif item.conversation is not None:
            if not chat:
                out.append(FieldViolation(f"{field_name}.conversation",
                                          "this model is not a chat model; send text instead"))
            elif not item.conversation:
                out.append(FieldViolation(f"{field_name}.conversation.messages", "at least one message"))
            else:
                for j, turn in enumerate(item.conversation):
                    if turn.role not in CHAT_ROLES:
                        out.append(FieldViolation(f"{field_name}.conversation.messages[{j}].role",
                                                  f"'{turn.role}' is not one of {', '.join(CHAT_ROLES)}"))
                if item.conversation[-1].role != "user":
                    out.append(FieldViolation(f"{field_name}.conversation.messages",
                                              "the last message must be the user's"))
        elif not item.text.strip():
            out.append(FieldViolation(f"{field_name}.text", "must not be empty"))
    return out


def cut_at_stop(text: str, stops: tuple[str, ...]) -> tuple[str, bool]:
    """``text`` up to the first stop string (excluded), and whether one was found."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)
