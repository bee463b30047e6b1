"""The development project ``dev`` and its API key, kept in ``.run/mtw.env`` across runs."""

from __future__ import annotations

from pathlib import Path

from services.common import db
from services.common.auth import KeyStore, migrate_iam
from services.common.errors import Unauthenticated

DEV_PROJECT = "dev"


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                values[key] = value
    return values


async def dev_api_key(database_url: str, env_file: Path) -> tuple[str, bool]:
    """(key, created): reuse the key in ``env_file`` if it still authenticates for ``dev``."""
    pool = await db.create_pool(database_url, "iam", max_size=2)
    try:
        await migrate_iam(pool)  # services do it too; the advisory lock makes it safe
        store = KeyStore(pool)
        await store.create_project(DEV_PROJECT, "Development")
        old = read_env_file(env_file).get("MTW_API_KEY")
        if old:
            try:
                if (await store.authenticate(old)).project == DEV_PROJECT:
                    return old, False
            except Unauthenticated:
                pass  # another database, or revoked: make a new one
        return await store.create_api_key(DEV_PROJECT), True
    finally:
        await pool.close()


def write_env_file(path: Path, key: str, env: dict[str, str]) -> None:
    """MTW_API_KEY, MTW_PROJECT and the endpoints, in ``export $(cat …)`` form."""
    lines = [f"MTW_API_KEY={key}", f"MTW_PROJECT={DEV_PROJECT}"]
    # A bare host: the SDK adds each service's default port; the per-service lines
    # below win whenever devstack had to use another port.
    lines.append("MTW_ENDPOINT=127.0.0.1")
    lines += sorted(
        f"{k}={v}" for k, v in env.items() if k.startswith("MTW_") and k.endswith("_ENDPOINT")
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # it holds a credential
