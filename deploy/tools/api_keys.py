"""Projects and API keys of a deployed MTW, from inside any service container.

    python deploy/tools/api_keys.py create PROJECT [--display-name NAME]   # prints the new key
    python deploy/tools/api_keys.py list PROJECT
    python deploy/tools/api_keys.py revoke KEY_ID

e.g. ``docker compose -f deploy/compose/compose.yaml exec dataset python deploy/tools/api_keys.py
create team-a`` or ``kubectl -n mtw exec deploy/mtw-dataset -- python deploy/tools/api_keys.py
create team-a``. Reads DATABASE_URL like the services do. A key is shown once, when made.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

# Run as a script from /app (the image) or the repository root.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from services.common import db
from services.common.auth import KeyStore, migrate_iam
from services.common.settings import ServiceSettings


async def run(args: argparse.Namespace) -> int:
    pool = await db.create_pool(ServiceSettings().database_url, "iam", min_size=1, max_size=2)
    try:
        await migrate_iam(pool)
        keys = KeyStore(pool)
        if args.command == "create":
            await keys.create_project(args.project, args.display_name)
            print(await keys.create_api_key(args.project))
        elif args.command == "list":
            for key in await keys.list_api_keys(args.project):
                revoked = f"revoked {key['revoke_time']:%Y-%m-%d}" if key["revoke_time"] else "active"
                print(f"{key['key_id']}\t{key['create_time']:%Y-%m-%d %H:%M}\t{revoked}")
        else:
            await keys.revoke_api_key(args.key_id)
            print(f"revoked {args.key_id}")
    finally:
        await pool.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Projects and API keys of a deployed MTW.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser("create", help="create the project if needed and a new key for it")
    create.add_argument("project")
    create.add_argument("--display-name", default="")
    commands.add_parser("list", help="a project's keys (ids only)").add_argument("project")
    commands.add_parser("revoke", help="revoke a key by its id").add_argument("key_id")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except Exception as error:  # noqa: BLE001 - one readable line for the operator
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
