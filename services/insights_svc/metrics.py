"""The success metrics as OpenTelemetry instruments (any metrics back-end can chart them).

Every instrument carries ``project`` and ``variant`` (the project's variant of the
primary experiment, ``none`` without one); the funnel and survey ones add ``step``.
"""

from __future__ import annotations

from opentelemetry import metrics

NO_VARIANT = "none"


class WizardMetrics:
    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        meter = (meter_provider or metrics.get_meter_provider()).get_meter("mtw.insights")
        self.models_created = meter.create_counter(
            "mtw.wizard.models_created", unit="{model}", description="Custom model versions saved")
        self.funnel_steps = meter.create_counter(
            "mtw.wizard.funnel_steps", unit="{event}", description="Wizard funnel steps reached")
        self.step_duration = meter.create_histogram(
            "mtw.wizard.step_duration", unit="s", description="Time spent in a wizard step")
        self.failures = meter.create_counter(
            "mtw.wizard.failures", unit="{failure}", description="Wizard failures by category")
        self.survey_overall = meter.create_histogram(
            "mtw.wizard.survey.overall", unit="{score}", description="Overall satisfaction 1-5")
        self.survey_ease = meter.create_histogram(
            "mtw.wizard.survey.ease", unit="{score}", description="Ease of a wizard step 1-5")
        self.survey_skips = meter.create_counter(
            "mtw.wizard.survey.skips", unit="{survey}", description="Surveys skipped")

    def funnel_event(self, project: str, variant: str, step: str, seconds: float | None,
                     failure_category: str) -> None:
        attrs = {"project": project, "variant": variant, "step": step}
        if failure_category:
            self.failures.add(1, {**attrs, "failure_category": failure_category})
            return
        self.funnel_steps.add(1, attrs)
        if seconds is not None:
            self.step_duration.record(seconds, attrs)
        if step == "MODEL_SAVED":
            self.models_created.add(1, {"project": project, "variant": variant})

    def survey(self, project: str, variant: str, skipped: bool, overall: int | None,
               step_ease: dict[str, int]) -> None:
        attrs = {"project": project, "variant": variant}
        if skipped:
            self.survey_skips.add(1, attrs)
            return
        self.survey_overall.record(overall, attrs)
        for step, ease in step_ease.items():
            self.survey_ease.record(ease, {**attrs, "step": step})
