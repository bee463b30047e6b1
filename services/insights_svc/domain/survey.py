"""The satisfaction survey: what a valid answer is, and masking its free text."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from services.common.errors import FieldViolation, InvalidArgument

# The dataset service's detector, so surveys and datasets mask the same things.
from services.dataset_svc.domain.pii import mask_pii

STEPS = ("DATASET", "TRAINING", "EVALUATION", "SAVE")
MAX_COMMENT_CHARS = 5000


@dataclass(frozen=True)
class SurveyAnswer:
    project: str
    model: str
    version: str
    skipped: bool
    overall: int | None = None
    step_ease: dict[str, int] = field(default_factory=dict)  # step -> 1..5
    comment: str = ""  # masked
    variants: dict[str, str] = field(default_factory=dict)
    create_time: datetime | None = None


def validate(skipped: bool, overall: int, step_ease: list[tuple[str, int]], comment: str) -> None:
    bad: list[FieldViolation] = []
    if skipped:
        if overall or step_ease or comment:
            bad.append(FieldViolation("survey_response.skipped", "a skipped survey carries no answers"))
    else:
        if not 1 <= overall <= 5:
            bad.append(FieldViolation("survey_response.overall", "must be 1 to 5 (or skip the survey)"))
        seen: set[str] = set()
        for i, (step, ease) in enumerate(step_ease):
            where = f"survey_response.step_ease[{i}]"
            if step not in STEPS:
                bad.append(FieldViolation(f"{where}.step", f"must be one of {', '.join(STEPS)}"))
            elif step in seen:
                bad.append(FieldViolation(f"{where}.step", f"{step} is rated twice"))
            seen.add(step)
            if not 1 <= ease <= 5:
                bad.append(FieldViolation(f"{where}.ease", "must be 1 to 5"))
        if len(comment) > MAX_COMMENT_CHARS:
            bad.append(FieldViolation("survey_response.comment", f"at most {MAX_COMMENT_CHARS} characters"))
    if bad:
        raise InvalidArgument(f"{bad[0].field}: {bad[0].description}", bad)


def masked_comment(text: str) -> str:
    """The free text as stored: stripped, personal data replaced by placeholders."""
    return mask_pii(text.strip())
