"""Settings of the insights service (environment variables, read once at start)."""

from __future__ import annotations

from datetime import datetime

from pydantic import AliasChoices, Field

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
    # The success report asks at most this many projects' services for their records.
    insights_report_max_projects: int = 1000
    # Services whose records the report asks (host:port; empty: not asked). devstack
    # sets MTW_<SERVICE>_ENDPOINT. Needs INTERNAL_TOKEN.
    dataset_service_endpoint: str = Field(
        "127.0.0.1:50051", validation_alias=AliasChoices("dataset_service_endpoint", "mtw_dataset_endpoint"))
    training_service_endpoint: str = Field(
        "127.0.0.1:50052", validation_alias=AliasChoices("training_service_endpoint", "mtw_training_endpoint"))
    registry_service_endpoint: str = Field(
        "127.0.0.1:50054", validation_alias=AliasChoices("registry_service_endpoint", "mtw_registry_endpoint"))
