"""`python -m services.insights_svc.admin_key PROJECT`: create an admin API key (printed
once) for the admin API — rollout, experiments, success report. Uses DATABASE_URL."""

from __future__ import annotations

import asyncio
import sys

from services.common import db
from services.common.auth import IAM_SCHEMA, KeyStore, migrate_iam
from services.common.settings import ServiceSettings


async def create_admin_key(database_url: str, project: str) -> str:
    """Create ``project`` if needed and return a new admin key of it."""
    pool = await db.create_pool(database_url, IAM_SCHEMA, max_size=2)
    try:
        await migrate_iam(pool)
        keys = KeyStore(pool)
        await keys.create_project(project)
        return await keys.create_api_key(project, admin=True)
    finally:
        await pool.close()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m services.insights_svc.admin_key PROJECT", file=sys.stderr)
        return 2
    print(asyncio.run(create_admin_key(ServiceSettings().database_url, argv[0])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
