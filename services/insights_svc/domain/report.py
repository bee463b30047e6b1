"""The success report, aggregated from the insights tables' grouped rows."""

from __future__ import annotations

import calendar
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

FUNNEL = ("WIZARD_STARTED", "DATASET_VALID", "JOB_STARTED", "JOB_SUCCEEDED", "EVALUATION_VIEWED",
          "MODEL_SAVED")


@dataclass
class Satisfaction:
    group: str
    responses: int = 0
    skips: int = 0
    overall_sum: int = 0
    ease_sums: dict[str, list[int]] = field(default_factory=dict)  # step -> [sum, count]
    models_created: int = 0

    @property
    def mean_overall(self) -> float:
        return self.overall_sum / self.responses if self.responses else 0.0

    @property
    def mean_ease(self) -> dict[str, float]:
        return {step: s / n for step, (s, n) in sorted(self.ease_sums.items()) if n}

    def add(self, responses: int, skips: int, overall_sum: int, eases: list[dict] | None) -> None:
        self.responses += responses
        self.skips += skips
        self.overall_sum += overall_sum
        for ease in eases or ():
            for step, value in ease.items():
                acc = self.ease_sums.setdefault(step, [0, 0])
                acc[0] += int(value)
                acc[1] += 1


@dataclass(frozen=True)
class FunnelStepCount:
    step: str
    projects: int
    events: int
    drop_off: float
    mean_step_seconds: float


@dataclass(frozen=True)
class Comment:
    survey_response: str
    overall: int | None
    text: str
    create_time: datetime


@dataclass
class SuccessReport:
    models_created: int
    models_target: int
    target_start: datetime | None
    target_end: datetime | None
    models_per_month: list[tuple[datetime, int]]
    models_per_project: dict[str, int]
    funnel: list[FunnelStepCount]
    failures_by_category: dict[str, int]
    satisfaction: list[Satisfaction]
    comments: list[Comment]
    recorded_funnel: list[FunnelStepCount] = field(default_factory=list)
    unavailable_sources: list[str] = field(default_factory=list)
    projects_counted: int = 0


def add_months(when: datetime, months: int) -> datetime:
    """``when`` plus whole calendar months, the day clipped to the target month's length."""
    month0 = when.month - 1 + months
    year, month = when.year + month0 // 12, month0 % 12 + 1
    return when.replace(year=year, month=month, day=min(when.day, calendar.monthrange(year, month)[1]))


def funnel_counts(rows) -> list[FunnelStepCount]:
    """The funnel in wizard order; drop-off is the share of the previous step's projects lost."""
    by_step = {r["step"]: r for r in rows}
    out: list[FunnelStepCount] = []
    previous: int | None = None
    for step in FUNNEL:
        r = by_step.get(step)
        projects = r["projects"] if r else 0
        drop = 0.0 if not previous else max(0.0, 1 - projects / previous)
        out.append(FunnelStepCount(step, projects, r["events"] if r else 0, drop,
                                   float(r["seconds"] or 0) if r else 0.0))
        previous = projects
    return out


# Which service's records show each step.
RECORD_SOURCES = {"DATASET_VALID": "dataset", "JOB_STARTED": "training", "JOB_SUCCEEDED": "training",
                  "MODEL_SAVED": "registry"}


def recorded_counts(steps: dict[str, list[int]], unavailable: set[str]) -> list[FunnelStepCount]:
    """Steps whose service answered for every project (a partial count would mislead)."""
    return [FunnelStepCount(step, projects, total, 0.0, 0.0) for step, (projects, total) in steps.items()
            if RECORD_SOURCES[step] not in unavailable]


def satisfaction_groups(rows, models_per_variant) -> list[Satisfaction]:
    """Everyone (`all`), per month (`YYYY-MM`) and per variant (`experiment/variant`)."""
    groups: dict[str, Satisfaction] = defaultdict(lambda: Satisfaction(""))
    for r in rows:
        keys = ["all", r["month"]] if r["experiment_id"] is None else [f"{r['experiment_id']}/{r['variant']}"]
        for key in keys:
            groups[key].group = key
            groups[key].add(r["responses"], r["skips"], r["overall_sum"], r["eases"])
    for r in models_per_variant:
        key = f"{r['experiment_id']}/{r['variant']}"
        groups[key].group = key
        groups[key].models_created = r["n"]
    order = {"all": 0}
    return sorted(groups.values(), key=lambda g: (order.get(g.group, 1 if g.group[:1].isdigit() else 2), g.group))
