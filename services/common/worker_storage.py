"""S3 access for Ray workers (training and evaluation): a picklable description plus pyarrow
helpers to move folders between S3 and local disk."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class S3Access:
    """How workers reach the object store (crosses to Ray; builds its filesystem there)."""

    endpoint: str  # "host:port"
    access_key: str
    secret_key: str
    bucket: str
    secure: bool = False
    region: str = "us-east-1"

    def filesystem(self):
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=self.access_key,
            secret_key=self.secret_key,
            endpoint_override=self.endpoint,
            scheme="https" if self.secure else "http",
            region=self.region,
            # Fail fast instead of minutes of retries when storage is gone.
            connect_timeout=10,
            request_timeout=60,
            retry_strategy=fs.AwsStandardS3RetryStrategy(max_attempts=3),
        )

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key.lstrip('/')}"


def fs_path(uri_or_path: str) -> str:
    """``s3://bucket/key`` or ``bucket/key`` → ``bucket/key`` (pyarrow's S3 path form)."""
    return uri_or_path.removeprefix("s3://").strip("/")


def download_dir(fs, path: str, local: Path) -> Path:
    """Copy an S3 folder to a local one (created)."""
    from pyarrow import fs as pafs

    local.mkdir(parents=True, exist_ok=True)
    pafs.copy_files(
        fs_path(path),
        str(local),
        source_filesystem=fs,
        destination_filesystem=pafs.LocalFileSystem(),
    )
    return local


def upload_dir(fs, local: Path, path: str) -> int:
    """Copy a local folder to S3 (``bucket/prefix``); returns the bytes written."""
    from pyarrow import fs as pafs

    total = 0
    for root, _dirs, files in os.walk(local):
        for name in files:
            total += (Path(root) / name).stat().st_size
    pafs.copy_files(
        str(local),
        fs_path(path),
        source_filesystem=pafs.LocalFileSystem(),
        destination_filesystem=fs,
    )
    return total


def rmtree_quiet(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
