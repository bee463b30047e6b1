"""Session fixtures shared by every test: a throwaway database, an S3 server, settings.

Fixture names are a contract other test packages rely on: ``database_url``,
``s3_endpoint``, ``object_store``, ``service_settings`` (plus ``key_store`` and
``api_key`` for authenticated calls).
"""

from __future__ import annotations

import os

# Tests never download from the hub; must be set before datasets/transformers import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from services.common.settings import ServiceSettings

ADMIN_URL = os.environ.get(
    "TEST_DATABASE_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
S3_ACCESS_KEY = "mtw-test"
S3_SECRET_KEY = "mtw-test-secret"


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


@contextlib.asynccontextmanager
async def fresh_database() -> AsyncIterator[str]:
    """A new, empty database ``mtw_test_<random>`` (its URL), dropped on exit."""
    name = f"mtw_test_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield _with_db(ADMIN_URL, name)
    finally:
        admin = await asyncpg.connect(ADMIN_URL)
        try:
            # Pools a test forgot to close must not keep the database alive.
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            await admin.close()


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    """A fresh, empty database shared by the session's tests, dropped after it."""
    async with fresh_database() as url:
        yield url


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An in-process moto S3 server on a free loopback port: yields ``"127.0.0.1:PORT"``."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
async def object_store(s3_endpoint: str):
    """An ObjectStore on the test S3 server, with its own random, existing bucket."""
    from services.common.objectstore import ObjectStore

    store = ObjectStore(
        s3_endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, f"mtw-test-{secrets.token_hex(4)}"
    )
    await store.ensure_bucket()
    yield store
    store.close()


def settings_factory(database_url: str, s3_endpoint: str, bucket: str, access_key: str = S3_ACCESS_KEY,
                     secret_key: str = S3_SECRET_KEY) -> Callable[..., ServiceSettings]:
    """Factory: ``make(DatasetSettings, dataset_max_upload_bytes=10)`` → settings on that PG/S3.

    The class defaults to ServiceSettings; ``grpc_port`` is 0 so each server gets a free port.
    """

    def make(cls: type[ServiceSettings] = ServiceSettings, **overrides: Any) -> ServiceSettings:
        values: dict[str, Any] = dict(  # noqa: C408 - reads like settings
            database_url=database_url,
            s3_endpoint=s3_endpoint,
            s3_access_key=access_key,
            s3_secret_key=secret_key,
            s3_bucket=bucket,
            s3_secure=False,
            grpc_host="127.0.0.1",
            grpc_port=0,
            page_token_secret="test-page-token-secret",
            service_name="test",
        )
        values.update(overrides)
        return cls(**values)

    return make


@pytest.fixture(scope="session")
def service_settings(
    database_url: str, s3_endpoint: str, object_store
) -> Callable[..., ServiceSettings]:
    """``settings_factory`` on the test PostgreSQL database and S3 server."""
    return settings_factory(database_url, s3_endpoint, object_store.bucket)


@pytest.fixture(scope="session")
async def key_store(database_url: str):
    """A KeyStore on the test database with the ``iam`` schema migrated."""
    from services.common import db
    from services.common.auth import KeyStore, migrate_iam

    pool = await db.create_pool(database_url, "iam", min_size=1, max_size=4)
    await migrate_iam(pool)
    yield KeyStore(pool)
    await pool.close()


@pytest.fixture(scope="session")
def api_key(key_store) -> Callable[..., Any]:
    """Factory: ``await api_key("proj")`` creates the project if needed and returns a new key."""

    async def make(project: str = "test-project") -> str:
        await key_store.create_project(project)
        return await key_store.create_api_key(project)

    return make
