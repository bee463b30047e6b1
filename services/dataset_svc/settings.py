"""Settings of the dataset service (environment variables, read once at start)."""

from __future__ import annotations

from services.common.settings import ServiceSettings


class DatasetSettings(ServiceSettings):
    service_name: str = "dataset-svc"
    # Largest single upload (DATASET_MAX_UPLOAD_BYTES).
    dataset_max_upload_bytes: int = 20 * 2**30
    # Bytes a project may keep in dataset versions: raw uploads plus canonical copies.
    dataset_project_quota_bytes: int = 100 * 2**30
    # Longest accepted text field, in characters.
    dataset_max_field_chars: int = 100_000
    # Scratch space for canonical Parquet files while an upload is processed.
    dataset_work_dir: str = ""
    # Uploads whose process died are cleaned up after this many seconds.
    dataset_stale_upload_seconds: int = 6 * 3600
