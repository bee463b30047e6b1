"""API keys, the request principal, project checks and the audit log.

Keys look like ``mtw_<key_id>_<secret>``; PostgreSQL (schema ``iam``) keeps only the
key id, the SHA-256 of the whole key and the project it belongs to. The auth
interceptor (``interceptors.py``) authenticates each call and puts the
:class:`Principal` in a contextvar that :func:`current_principal` reads.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from services.common import db
from services.common.errors import InvalidArgument, NotFound, PermissionDenied, Unauthenticated
from services.common.names import check_id
from services.common.rollout import RolloutGate

IAM_SCHEMA = "iam"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
KEY_PREFIX = "mtw_"


# Metadata a service sends with the internal token: the project it acts for.
ON_BEHALF_OF = "x-mtw-project"
SERVICE_KEY_PREFIX = "service:"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the project their key belongs to, and which key
    (``service:<name>`` when another MTW service calls with the internal token)."""

    project: str
    key_id: str
    # Admin keys may call the admin API (rollout, experiments, success report).
    is_admin: bool = False

    @property
    def is_service(self) -> bool:
        return self.key_id.startswith(SERVICE_KEY_PREFIX)


def service_metadata(internal_token: str, project: str, service: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata for a service-to-service call on ``project``'s behalf."""
    return (("authorization", f"Bearer {internal_token}"), (ON_BEHALF_OF, project),
            ("x-mtw-service", service))


_principal: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "mtw_principal", default=None
)


def current_principal() -> Principal:
    """The authenticated caller of the current RPC; Unauthenticated if there is none."""
    p = _principal.get()
    if p is None:
        raise Unauthenticated("this call is not authenticated", reason="NO_PRINCIPAL")
    return p


def current_principal_or_none() -> Principal | None:
    return _principal.get()


@contextlib.contextmanager
def as_principal(principal: Principal | None) -> Iterator[None]:
    """Run a block as ``principal`` (the interceptor uses it; so can tests and background tasks)."""
    token = _principal.set(principal)
    try:
        yield
    finally:
        try:
            _principal.reset(token)
        except ValueError:  # exited from another context (e.g. a generator closed by GC)
            _principal.set(None)


def require_admin() -> Principal:
    """The current principal if it holds an admin key; PermissionDenied otherwise."""
    p = current_principal()
    if not p.is_admin:
        raise PermissionDenied("this call needs an admin API key", reason="ADMIN_KEY_REQUIRED")
    return p


def check_project(project: str, kind: str, name: str) -> None:
    """NotFound (never PermissionDenied) when ``project`` isn't the caller's, so existence stays hidden."""
    if project != current_principal().project:
        raise NotFound.resource(kind, name)


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_key(token: str) -> tuple[str, str]:
    """Split ``mtw_<key_id>_<secret>`` into (key_id, secret); Unauthenticated if malformed."""
    if not token.startswith(KEY_PREFIX):
        raise Unauthenticated(
            "the API key is malformed (expected mtw_<id>_<secret>)", reason="API_KEY_MALFORMED"
        )
    parts = token.split("_", 2)
    if len(parts) != 3 or not parts[1].isalnum() or len(parts[2]) < 16:
        raise Unauthenticated(
            "the API key is malformed (expected mtw_<id>_<secret>)", reason="API_KEY_MALFORMED"
        )
    return parts[1], parts[2]


async def migrate_iam(pool: asyncpg.Pool) -> list[int]:
    """Apply the ``iam`` schema migrations (every service does this at start)."""
    return await db.migrate(pool, IAM_SCHEMA, MIGRATIONS_DIR)


class KeyStore:
    """Projects and API keys in the ``iam`` schema, with a short positive-lookup cache."""

    def __init__(self, pool: asyncpg.Pool, cache_ttl: float = 30.0, cache_size: int = 1024,
                 internal_token: str = "", rollout_ttl: float = 5.0) -> None:
        self.internal_token = internal_token
        self.pool = pool
        self.rollout = RolloutGate(pool, rollout_ttl)
        self._ttl = cache_ttl
        self._size = cache_size
        # sha256(token) -> (expires_at, principal); only successes are cached so a
        # freshly created key works at once and garbage can't evict good entries cheaply.
        self._cache: OrderedDict[str, tuple[float, Principal]] = OrderedDict()

    async def create_project(self, project_id: str, display_name: str = "") -> None:
        """Create a project; a no-op if it already exists."""
        check_id(project_id, "project_id")
        await self.pool.execute(
            "INSERT INTO iam.projects (project_id, display_name) VALUES ($1, $2) "
            "ON CONFLICT (project_id) DO NOTHING",
            project_id,
            display_name,
        )

    async def project_exists(self, project_id: str) -> bool:
        return bool(
            await self.pool.fetchval("SELECT 1 FROM iam.projects WHERE project_id = $1", project_id)
        )

    async def create_api_key(self, project_id: str, admin: bool = False) -> str:
        """Make a key for the project and return its plaintext — the only time it is visible."""
        if not await self.project_exists(project_id):
            raise NotFound.resource("project", f"projects/{project_id}")
        key_id = secrets.token_hex(6)
        token = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        await self.pool.execute(
            "INSERT INTO iam.api_keys (key_id, key_sha256, project_id, is_admin) VALUES ($1, $2, $3, $4)",
            key_id,
            _sha256(token),
            project_id,
            admin,
        )
        return token

    async def revoke_api_key(self, key_id: str) -> None:
        """Revoke a key (NotFound if unknown). Other processes' caches forget it within the TTL."""
        row = await self.pool.fetchrow(
            "UPDATE iam.api_keys SET revoke_time = coalesce(revoke_time, now()) WHERE key_id = $1 RETURNING key_id",
            key_id,
        )
        if row is None:
            raise NotFound(f"API key '{key_id}' was not found", reason="API_KEY_NOT_FOUND")
        for k in [k for k, (_, p) in self._cache.items() if p.key_id == key_id]:
            del self._cache[k]

    async def list_api_keys(self, project_id: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT key_id, project_id, is_admin, create_time, revoke_time FROM iam.api_keys "
            "WHERE project_id = $1 ORDER BY create_time",
            project_id,
        )
        return [dict(r) for r in rows]

    async def authenticate(self, token: str | None) -> Principal:
        """Check a key against the database; Unauthenticated (with why) if it isn't valid."""
        if not token:
            raise Unauthenticated(
                "missing API key: send metadata 'authorization: Bearer mtw_…'",
                reason="API_KEY_MISSING",
            )
        key_id, _ = parse_key(token)
        row = await self.pool.fetchrow(
            "SELECT key_sha256, project_id, revoke_time, is_admin FROM iam.api_keys WHERE key_id = $1",
            key_id,
        )
        if row is None or not hmac.compare_digest(row["key_sha256"], _sha256(token)):
            raise Unauthenticated("the API key is not valid", reason="API_KEY_INVALID")
        if row["revoke_time"] is not None:
            raise Unauthenticated("the API key has been revoked", reason="API_KEY_REVOKED")
        return Principal(project=row["project_id"], key_id=key_id, is_admin=row["is_admin"])

    async def authenticate_call(self, token: str | None, metadata) -> Principal:
        """The principal of one call: a service with the internal token acting for the
        project it names, else an API key (:meth:`authenticate_cached`)."""
        if token and self.internal_token and hmac.compare_digest(token, self.internal_token):
            values = {k.lower(): v for k, v in metadata or ()}
            project = values.get(ON_BEHALF_OF, "")
            if not project:
                raise Unauthenticated(f"a service call must name its project in '{ON_BEHALF_OF}'",
                                      reason="SERVICE_PROJECT_MISSING")
            return Principal(project=project, key_id=SERVICE_KEY_PREFIX + values.get("x-mtw-service", "unknown"))
        return await self.authenticate_cached(token)

    async def authorize(self, principal: Principal) -> None:
        """PermissionDenied when the caller's project is outside the wizard's rollout.

        Services (internal token) and admin keys are exempt: follow-up work on a
        project must finish, and an admin must be able to change the rollout.
        """
        if principal.is_service or principal.is_admin:
            return
        await self.rollout.check(principal.project)

    async def authenticate_cached(self, token: str | None) -> Principal:
        """:meth:`authenticate` with a bounded LRU of recent successes (TTL ``cache_ttl``)."""
        if not token:
            return await self.authenticate(token)
        digest = _sha256(token)
        now = time.monotonic()
        hit = self._cache.get(digest)
        if hit and hit[0] > now:
            self._cache.move_to_end(digest)
            return hit[1]
        principal = await self.authenticate(token)
        self._cache[digest] = (now + self._ttl, principal)
        self._cache.move_to_end(digest)
        while len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return principal


async def audit(
    conn_or_pool: asyncpg.Connection | asyncpg.Pool,
    action: str,
    resource: str,
    details: dict[str, Any] | None = None,
    service: str = "",
    principal: Principal | None = None,
) -> None:
    """Append an audit_log row for the current principal (or ``principal``, e.g. for system tasks).

    Pass the connection of the surrounding transaction so the record commits with the change.
    """
    p = principal or _principal.get()
    if not action:
        raise InvalidArgument("audit action must not be empty")
    await conn_or_pool.execute(
        "INSERT INTO iam.audit_log (project, key_id, service, action, resource, details) "
        "VALUES ($1, $2, $3, $4, $5, $6)",
        p.project if p else None,
        p.key_id if p else None,
        service,
        action,
        resource,
        details or {},
    )
