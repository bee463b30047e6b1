"""Typed service configuration from environment variables (no prefix), read once at start.

Services subclass :class:`ServiceSettings` to add their own fields, e.g.::

    class DatasetSettings(ServiceSettings):
        dataset_max_upload_bytes: int = 10 * 2**30   # env DATASET_MAX_UPLOAD_BYTES
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

# Only good for local runs; deploy/ sets PAGE_TOKEN_SECRET.
DEV_PAGE_TOKEN_SECRET = "mtw-dev-page-token-secret-change-me"


class ServiceSettings(BaseSettings):
    """Settings every MTW service shares. Env var names are the upper-cased field names."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    database_url: str = "postgresql://postgres@127.0.0.1:5432/mtw"
    s3_endpoint: str = "127.0.0.1:9000"  # host:port, no scheme (minio client style)
    s3_access_key: str = "mtw-dev"
    s3_secret_key: str = "mtw-dev-secret"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    s3_bucket: str = "mtw"
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 0  # 0 = pick a free port (tests); devstack sets one per service
    otel_exporter_otlp_endpoint: str | None = None
    log_level: str = "INFO"
    page_token_secret: str = DEV_PAGE_TOKEN_SECRET
    service_name: str = "mtw"
    # Server folders (separated by os.pathsep) from which callers may name local models.
    model_dirs: str = ""
    # Shared secret services use to call each other on a project's behalf when no
    # caller's key is at hand (e.g. follow-up work after a job ends). Empty: disabled.
    internal_token: str = ""

    @property
    def model_dir_paths(self) -> list[Path]:
        return [Path(p) for p in self.model_dirs.split(os.pathsep) if p]
