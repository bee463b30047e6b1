"""services.common db + auth against the real PostgreSQL."""

import asyncio
from pathlib import Path

import pytest

from services.common import db
from services.common.auth import (
    KeyStore,
    Principal,
    as_principal,
    audit,
    check_project,
    current_principal,
    migrate_iam,
)
from services.common.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated


async def test_migrations_concurrently_apply_once(database_url, tmp_path: Path):
    (tmp_path / "001_init.sql").write_text(
        "CREATE TABLE things (id int PRIMARY KEY); INSERT INTO things VALUES (1);"
    )
    (tmp_path / "002_more.sql").write_text(
        "ALTER TABLE things ADD COLUMN name text; INSERT INTO things VALUES (2, 'b');"
    )
    p1 = await db.create_pool(database_url, "mig_test")
    p2 = await db.create_pool(database_url, "mig_test")
    try:
        a, b = await asyncio.gather(
            db.migrate(p1, "mig_test", tmp_path), db.migrate(p2, "mig_test", tmp_path)
        )
        assert sorted(a + b) == [1, 2]  # each file applied by exactly one of them
        assert (
            await p1.fetchval("SELECT count(*) FROM things") == 2
        )  # search_path reaches the schema
        assert await db.migrate(p1, "mig_test", tmp_path) == []
        versions = await p1.fetch("SELECT version FROM mig_test.schema_migrations ORDER BY version")
        assert [r["version"] for r in versions] == [1, 2]
    finally:
        await p1.close()
        await p2.close()


async def test_failed_migration_rolls_back(database_url, tmp_path: Path):
    (tmp_path / "001_bad.sql").write_text("CREATE TABLE t1 (id int); SELECT no_such_function();")
    pool = await db.create_pool(database_url, "mig_bad")
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever asyncpg raises for a bad function
            await db.migrate(pool, "mig_bad", tmp_path)
        assert await pool.fetchval("SELECT to_regclass('mig_bad.t1')") is None
        assert await pool.fetchval("SELECT count(*) FROM mig_bad.schema_migrations") == 0
    finally:
        await pool.close()


async def test_jsonb_codec_and_translate(database_url):
    pool = await db.create_pool(database_url, "codec_test")
    try:
        await pool.execute("CREATE SCHEMA IF NOT EXISTS codec_test")
        await pool.execute(
            "CREATE TABLE IF NOT EXISTS codec_test.j (id text PRIMARY KEY, doc jsonb)"
        )
        await pool.execute("INSERT INTO j VALUES ($1, $2)", "a", {"x": [1, 2], "y": None})
        assert await pool.fetchval("SELECT doc FROM j WHERE id = 'a'") == {"x": [1, 2], "y": None}
        with (
            pytest.raises(AlreadyExists) as err,
            db.translate_db_errors("dataset", "projects/p/datasets/a"),
        ):
            await pool.execute("INSERT INTO j VALUES ($1, $2)", "a", {})
        assert err.value.reason == "DATASET_ALREADY_EXISTS"
        assert await db.ping(pool)
    finally:
        await pool.close()


async def test_ensure_database(database_url):
    other = database_url + "_extra"
    assert await db.ensure_database(other) is True
    assert await db.ensure_database(other) is False
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP DATABASE "{db.database_name(other)}"')
    finally:
        await conn.close()


async def test_api_keys(key_store: KeyStore, database_url):
    assert await migrate_iam(key_store.pool) == []  # fixture already migrated: idempotent
    await key_store.create_project("acme", "Acme")
    await key_store.create_project("acme", "Acme again")  # idempotent
    key = await key_store.create_api_key("acme")
    assert key.startswith("mtw_")
    principal = await key_store.authenticate(key)
    assert principal == Principal("acme", key.split("_")[1])
    assert await key_store.authenticate_cached(key) == principal

    # Stored hashed: the plaintext (or its secret part) is nowhere in the table.
    rows = await key_store.pool.fetch("SELECT * FROM iam.api_keys")
    dump = repr([dict(r) for r in rows])
    assert key not in dump and key.split("_", 2)[2] not in dump

    for bad, reason in [
        (None, "API_KEY_MISSING"),
        ("", "API_KEY_MISSING"),
        ("nope", "API_KEY_MALFORMED"),
        ("mtw_abc", "API_KEY_MALFORMED"),
        (key[:-2] + "xx", "API_KEY_INVALID"),
        ("mtw_ffffffffffff_" + "a" * 43, "API_KEY_INVALID"),
    ]:
        with pytest.raises(Unauthenticated) as err:
            await key_store.authenticate(bad)
        assert err.value.reason == reason, bad

    await key_store.revoke_api_key(principal.key_id)
    with pytest.raises(Unauthenticated) as err:
        await key_store.authenticate_cached(key)  # local cache is invalidated on revoke
    assert err.value.reason == "API_KEY_REVOKED"
    with pytest.raises(NotFound):
        await key_store.revoke_api_key("doesnotexist")
    with pytest.raises(NotFound):
        await key_store.create_api_key("no-such-project")
    with pytest.raises(InvalidArgument):
        await key_store.create_project("Bad_Project")


async def test_principal_check_project_and_audit(key_store: KeyStore):
    with pytest.raises(Unauthenticated):
        current_principal()
    p = Principal("acme", "k1")
    with as_principal(p):
        assert current_principal() == p
        check_project("acme", "dataset", "projects/acme/datasets/d")
        with pytest.raises(NotFound) as err:
            check_project("other", "dataset", "projects/other/datasets/d")
        assert err.value.message == "dataset 'projects/other/datasets/d' was not found"
        await audit(
            key_store.pool,
            "datasets.create",
            "projects/acme/datasets/d",
            {"bytes": 3},
            service="dataset",
        )
    row = await key_store.pool.fetchrow("SELECT * FROM iam.audit_log ORDER BY id DESC LIMIT 1")
    assert (row["project"], row["key_id"], row["service"], row["action"]) == (
        "acme",
        "k1",
        "dataset",
        "datasets.create",
    )
    assert row["details"] == {"bytes": 3}


async def test_service_calls_with_the_internal_token(key_store: KeyStore):
    from services.common.auth import service_metadata

    services = KeyStore(key_store.pool, internal_token="s3cret-internal-token-0123456789")
    metadata = service_metadata("s3cret-internal-token-0123456789", "alpha", "training")
    principal = await services.authenticate_call("s3cret-internal-token-0123456789", metadata)
    assert principal == Principal(project="alpha", key_id="service:training") and principal.is_service
    with pytest.raises(Unauthenticated, match="x-mtw-project"):
        await services.authenticate_call("s3cret-internal-token-0123456789", metadata[:1])
    # A wrong token is an API key like any other, and not a valid one.
    with pytest.raises(Unauthenticated, match="malformed"):
        await services.authenticate_call("s3cret-internal-token-012345678X", metadata)
    # Without a configured token the internal path is closed.
    with pytest.raises(Unauthenticated):
        await key_store.authenticate_call("s3cret-internal-token-0123456789", metadata)
