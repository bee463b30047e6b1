"""Training integration fixtures (the Ray head, ``ray_cluster``, is shared by every
integration test: ``tests/integration/conftest.py``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def s3_access(s3_endpoint: str, object_store):
    """The trainer's S3Access to the test bucket."""
    from services.training_svc.trainer import S3Access
    from tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY

    return S3Access(
        endpoint=s3_endpoint,
        access_key=S3_ACCESS_KEY,
        secret_key=S3_SECRET_KEY,
        bucket=object_store.bucket,
    )
