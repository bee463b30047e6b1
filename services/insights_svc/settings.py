"""Settings of the insights service (environment variables, read once at start)."""

from __future__ import annotations

from datetime import datetime

from services.common.settings import ServiceSettings


class InsightsSettings(ServiceSettings):
    service_name: str = "insights-svc"
    # Custom models to create in the target window (launch: 100 in six months).
    insights_models_target: int = 100
    insights_target_months: int = 6
    # Start of the target window; unset: the first model created.
    insights_target_start: datetime | None = None
    # The experiment whose variant labels metrics (`variant` attribute); unset: "none".
    insights_primary_experiment: str = ""
