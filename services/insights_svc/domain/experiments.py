"""A/B experiments: variants with weights, and a project's variant by stable hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime

from services.common.errors import FieldViolation, InvalidArgument
from services.common.names import valid_id

MAX_VARIANTS = 20
MAX_WEIGHT = 1_000_000


@dataclass(frozen=True)
class Variant:
    id: str
    weight: int
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    variants: tuple[Variant, ...]
    description: str = ""
    create_time: datetime | None = None


@dataclass(frozen=True)
class Assignment:
    project: str
    experiment: Experiment
    variant: Variant
    assign_time: datetime


def check_variants(variants: list[Variant]) -> None:
    """InvalidArgument naming each bad variant field."""
    bad: list[FieldViolation] = []
    if not variants:
        bad.append(FieldViolation("experiment.variants", "at least one variant is required"))
    if len(variants) > MAX_VARIANTS:
        bad.append(FieldViolation("experiment.variants", f"at most {MAX_VARIANTS} variants"))
    seen: set[str] = set()
    for i, v in enumerate(variants):
        where = f"experiment.variants[{i}]"
        if not valid_id(v.id):
            bad.append(FieldViolation(f"{where}.id", "must be 1-63 lowercase letters, digits or hyphens"))
        elif v.id in seen:
            bad.append(FieldViolation(f"{where}.id", f"'{v.id}' is used twice"))
        seen.add(v.id)
        if not 0 < v.weight <= MAX_WEIGHT:
            bad.append(FieldViolation(f"{where}.weight", f"must be between 1 and {MAX_WEIGHT}"))
    if bad:
        raise InvalidArgument(f"the experiment's variants are not valid: {bad[0].field}: {bad[0].description}", bad)


def choose_variant(experiment: Experiment, project: str) -> Variant:
    """The project's variant: a stable hash of (experiment, project) over the cumulative
    weights, so it never depends on the process, the order of calls or a restart."""
    total = sum(v.weight for v in experiment.variants)
    digest = hashlib.sha256(f"{experiment.experiment_id}\0{project}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % total
    for variant in experiment.variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    raise AssertionError("unreachable: point < total")  # pragma: no cover
