"""Gateway configuration from environment variables, read once at start."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from mtw.client.config import SERVICES, ServiceSpec, resolve_endpoint


class GatewaySettings(BaseSettings):
    """Env var names are the upper-cased field names (``HTTP_PORT``…).

    The services are found as the SDK finds them: ``MTW_<SERVICE>_ENDPOINT``, then
    ``MTW_ENDPOINT``, then 127.0.0.1 on the service's default port.
    """

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    http_host: str = "127.0.0.1"
    http_port: int = 8080  # 0 = a free port (tests)
    service_name: str = "gateway"
    log_level: str = "INFO"
    otel_exporter_otlp_endpoint: str | None = None
    # Bytes per upload message to the dataset service (it takes up to 4 MiB).
    upload_chunk_bytes: int = 1024 * 1024
    # Deadline of unary calls; streams (uploads, watches) have none.
    rpc_timeout_seconds: float = 300.0
    # An SSE comment after this much silence keeps proxies from closing the stream.
    sse_keepalive_seconds: float = 15.0
    # Set behind HTTPS so the sign-in cookie is only ever sent encrypted.
    cookie_secure: bool = False
    # Largest gRPC message the gateway accepts from a service.
    max_response_bytes: int = 64 * 1024 * 1024
    # The A/B experiment whose variant shapes the wizard (its `preset` parameter is the
    # preset step 2 starts from). The insights service's INSIGHTS_PRIMARY_EXPERIMENT
    # names it too, so one variable sets both and metrics carry the same variant.
    wizard_experiment: str = Field(
        "", validation_alias=AliasChoices("wizard_experiment", "insights_primary_experiment"))

    def endpoints(self, env: Mapping[str, str] | None = None) -> dict[str, str]:
        """Short service name (``dataset``) → ``host:port``, for the SDK's known services
        and any other ``MTW_<NAME>_ENDPOINT`` in the environment."""
        env = os.environ if env is None else env
        specs = dict(SERVICES)
        for key in env:
            if key.startswith("MTW_") and key.endswith("_ENDPOINT") and key != "MTW_ENDPOINT":
                name = key[4:-9].lower()
                specs.setdefault(name, ServiceSpec(name, 0))
        return {name: resolve_endpoint(spec, None, env) for name, spec in specs.items()
                if spec.default_port or env.get(spec.env_var)}
