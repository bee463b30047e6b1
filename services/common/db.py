"""PostgreSQL: pools, schema migrations under an advisory lock, error translation.

Each service owns one schema; its pool's ``search_path`` is ``<schema>, public`` so
queries use bare table names. Migrations are numbered ``NNN_name.sql`` files applied
in order, each in its own transaction, while holding a session advisory lock keyed by
the schema name — two processes starting together apply each file exactly once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from services.common.errors import AlreadyExists, FailedPrecondition, InvalidArgument

log = logging.getLogger(__name__)

_SCHEMA_RE = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_MIGRATION_RE = re.compile(r"(\d+)_[\w-]+\.sql")

try:  # orjson is faster and is a project dependency; json is the fallback
    import orjson

    def _dumps(value: object) -> str:
        return orjson.dumps(value).decode()

    _loads = orjson.loads
except ImportError:  # pragma: no cover
    _dumps = json.dumps
    _loads = json.loads


def _check_schema(schema: str) -> str:
    # The schema is interpolated into SQL (identifiers can't be bind parameters).
    if not _SCHEMA_RE.fullmatch(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    return schema


async def _init_connection(conn: asyncpg.Connection) -> None:
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=_dumps, decoder=_loads, schema="pg_catalog")


async def create_pool(
    database_url: str, schema: str, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool:
    """A pool whose connections use ``search_path = schema, public`` and decode json/jsonb."""
    _check_schema(schema)
    return await asyncpg.create_pool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        server_settings={"search_path": f"{schema}, public", "application_name": f"mtw-{schema}"},
    )


def _lock_key(schema: str) -> int:
    # A stable signed 64-bit key per schema (hash() is salted per process).
    return int.from_bytes(
        hashlib.sha256(f"mtw-migrate:{schema}".encode()).digest()[:8], "big", signed=True
    )


def _migration_files(migrations_dir: Path) -> list[tuple[int, Path]]:
    files = []
    for path in sorted(Path(migrations_dir).glob("*.sql")):
        m = _MIGRATION_RE.fullmatch(path.name)
        if not m:
            raise ValueError(f"migration file {path.name!r} must be named NNN_description.sql")
        files.append((int(m.group(1)), path))
    versions = [v for v, _ in files]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {migrations_dir}")
    return sorted(files)


async def migrate(pool: asyncpg.Pool, schema: str, migrations_dir: Path) -> list[int]:
    """Create ``schema`` and apply pending migrations; returns the versions applied now."""
    _check_schema(schema)
    files = _migration_files(migrations_dir)
    applied_now: list[int] = []
    async with pool.acquire() as conn:
        # Session lock (not xact) so it spans the per-file transactions.
        await conn.execute("SELECT pg_advisory_lock($1)", _lock_key(schema))
        try:
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            await conn.execute(
                f"""CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                        version integer PRIMARY KEY,
                        name text NOT NULL,
                        applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {
                r["version"]
                for r in await conn.fetch(f"SELECT version FROM {schema}.schema_migrations")
            }
            for version, path in files:
                if version in done:
                    continue
                async with conn.transaction():
                    # Files use bare names; make them land in this schema whatever the pool says.
                    await conn.execute(f"SET LOCAL search_path = {schema}, public")
                    await conn.execute(path.read_text())
                    await conn.execute(
                        f"INSERT INTO {schema}.schema_migrations (version, name) VALUES ($1, $2)",
                        version,
                        path.name,
                    )
                applied_now.append(version)
                log.info("applied migration", extra={"schema": schema, "migration": path.name})
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _lock_key(schema))
    return applied_now


def _with_database(database_url: str, dbname: str) -> str:
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(path="/" + dbname))


def database_name(database_url: str) -> str:
    """The database part of a postgres URL (``mtw`` for ``postgresql://h/mtw``)."""
    return urlsplit(database_url).path.lstrip("/") or "postgres"


async def ensure_database(database_url: str) -> bool:
    """Create the URL's database if it is missing (via the ``postgres`` db); True if created."""
    name = database_name(database_url)
    conn = await asyncpg.connect(_with_database(database_url, "postgres"))
    try:
        if await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:  # another process won the race
            return False
        return True
    finally:
        await conn.close()


async def ping(pool: asyncpg.Pool) -> bool:
    """Readiness probe: True when the database answers ``SELECT 1``."""
    try:
        async with pool.acquire(timeout=2) as conn:
            return await conn.fetchval("SELECT 1", timeout=2) == 1
    except Exception:  # noqa: BLE001 - any failure just means "not ready yet"
        return False


@contextlib.contextmanager
def translate_db_errors(kind: str = "resource", name: str = "") -> Iterator[None]:
    """Turn common constraint violations into domain errors at the store layer.

    ``with translate_db_errors("dataset", name): await conn.execute(INSERT ...)``
    """
    try:
        yield
    except asyncpg.UniqueViolationError:
        raise (
            AlreadyExists.resource(kind, name) if name else AlreadyExists(f"{kind} already exists")
        ) from None
    except asyncpg.ForeignKeyViolationError as exc:
        raise FailedPrecondition(
            f"{kind} refers to or is referred by another resource: {exc.detail or exc}"
        ) from None
    except (
        asyncpg.CheckViolationError,
        asyncpg.NotNullViolationError,
        asyncpg.StringDataRightTruncationError,
    ) as exc:
        raise InvalidArgument(f"{kind} is invalid: {exc.message}") from None
