"""The wizard's rollout gate: beta projects plus a percentage of all projects.

A project is in the rollout when it is on the allow-list or its stable bucket (the
first 8 bytes of ``sha256(project)`` modulo 10 000) is below the configured share in
basis points. Raising the share only ever adds projects. The setting lives in
``iam.rollout`` (no row: everyone allowed) and :class:`RolloutGate` re-reads it at
most every ``ttl`` seconds, so an admin's change reaches every service without a
restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from services.common.errors import PermissionDenied

log = logging.getLogger(__name__)

BUCKETS = 10_000
DEFAULT_CONTACT = "your MTW administrator to add it to the beta"


def project_bucket(project: str) -> int:
    """The project's stable rollout bucket in [0, 10000)."""
    return int.from_bytes(hashlib.sha256(project.encode()).digest()[:8], "big") % BUCKETS


@dataclass(frozen=True)
class RolloutConfig:
    """Who may use the wizard. The default (nothing configured) allows everyone."""

    percent_bp: int = BUCKETS
    allowed_projects: frozenset[str] = field(default_factory=frozenset)
    contact: str = ""
    update_time: datetime | None = None
    revision: int = 0

    @property
    def percent(self) -> float:
        return self.percent_bp / 100

    def allows(self, project: str) -> bool:
        return project in self.allowed_projects or project_bucket(project) < self.percent_bp

    def denial(self, project: str) -> PermissionDenied:
        return PermissionDenied(
            f"the Model Training Wizard is not yet available to project '{project}'; "
            f"ask {self.contact or DEFAULT_CONTACT}",
            reason="WIZARD_NOT_AVAILABLE_FOR_PROJECT",
            metadata={"project": project},
        )


def _from_row(row) -> RolloutConfig:
    if row is None:
        return RolloutConfig()
    return RolloutConfig(row["percent_bp"], frozenset(row["allowed_projects"]), row["contact"],
                         row["update_time"], row["revision"])


async def read_config(conn: asyncpg.Connection | asyncpg.Pool) -> RolloutConfig:
    return _from_row(await conn.fetchrow(
        "SELECT percent_bp, allowed_projects, contact, update_time, revision FROM iam.rollout WHERE id = 1"))


async def write_config(conn: asyncpg.Connection | asyncpg.Pool, percent_bp: int,
                       allowed_projects: list[str], contact: str) -> RolloutConfig:
    """Replace the rollout setting (callers validate and audit)."""
    return _from_row(await conn.fetchrow(
        "INSERT INTO iam.rollout (id, percent_bp, allowed_projects, contact) VALUES (1, $1, $2, $3) "
        "ON CONFLICT (id) DO UPDATE SET percent_bp = $1, allowed_projects = $2, contact = $3, "
        "update_time = now(), revision = rollout.revision + 1 "
        "RETURNING percent_bp, allowed_projects, contact, update_time, revision",
        percent_bp, sorted(set(allowed_projects)), contact))


class RolloutGate:
    """Checks a project against the rollout, re-reading the setting at most every ``ttl`` s."""

    def __init__(self, pool: asyncpg.Pool, ttl: float = 5.0) -> None:
        self.pool = pool
        self.ttl = ttl
        self._config: RolloutConfig | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def config(self) -> RolloutConfig:
        if self._config is not None and time.monotonic() < self._expires:
            return self._config
        async with self._lock:  # one reader refreshes; concurrent calls wait for it
            if self._config is None or time.monotonic() >= self._expires:
                try:
                    self._config = await read_config(self.pool)
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as err:
                    if self._config is None:
                        raise
                    # A database blip must not turn every authenticated call into an
                    # error: keep the last setting read and try again after the TTL.
                    log.warning("could not re-read the rollout setting, keeping the last one: %s", err)
                self._expires = time.monotonic() + self.ttl
        return self._config

    def forget(self) -> None:
        """Re-read on the next check (this process just changed the setting)."""
        self._expires = 0.0

    async def check(self, project: str) -> None:
        """PermissionDenied (reason WIZARD_NOT_AVAILABLE_FOR_PROJECT) when outside the rollout."""
        config = await self.config()
        if not config.allows(project):
            raise config.denial(project)
