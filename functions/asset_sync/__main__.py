"""``python -m functions.asset_sync migrate|replay|status``: look after the mirror database.

    migrate   create or upgrade the tables (the function also does this on first use)
    replay    rebuild the mirror (assets, folders) from the event log, in one transaction; quarantined
              events are tried again (applied once their cause is fixed)
    status    schema version, events by type, assets live and deleted, quarantined and partly applied
              events (the newest listed with the reason), as JSON

The database is ``--database-url``, else ``DATABASE_URL``, else the function's default SQLite file.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from functions.asset_sync import db
from functions.asset_sync.handler import APPLIERS, DEFAULT_DATABASE_URL, plan_for
from functions.asset_sync.mirror import Plan
from shared.errors import WebhookError


def planner(notification_type: str, payload: str) -> Plan | None:
    """The plan of a logged event (its payload as signed), or None for a type this version does not apply.
    The same as the live request's: values the databases cannot hold get the same stand-ins."""
    if notification_type not in APPLIERS:
        return None
    parsed = json.loads(payload)
    return plan_for(notification_type, parsed, payload) if isinstance(parsed, Mapping) else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m functions.asset_sync",
        description="Look after asset_sync's mirror database: migrate it, rebuild it from the event log, "
                    "or show what it holds.",
        epilog="DATABASE_URL forms: sqlite:///relative/file.sqlite3, sqlite:////absolute/file.sqlite3, "
               "postgresql://user:password@host:5432/dbname (see functions/asset_sync/README.md).",
    )
    parser.add_argument("--database-url", metavar="URL",
                        help=f"the database (default: $DATABASE_URL, else {DEFAULT_DATABASE_URL})")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("migrate", help="create or upgrade the tables; safe to run at every deploy",
                        description="Create or upgrade asset_sync's tables (cloudinary_*). Idempotent.")
    commands.add_parser("replay", help="rebuild the assets and folders tables from the event log",
                        description="Delete the mirror rows and re-apply every logged event, in one "
                                    "transaction: readers see the old mirror until the new one is complete. "
                                    "Quarantined events are tried again: applied once their cause is fixed.")
    commands.add_parser("status", help="schema version, event counts, assets, quarantined events (JSON)",
                        description="Print what the database holds, as JSON: events by type, assets live, "
                                    "deleted and known only by public ID, and the events quarantined (kept but "
                                    "not applied: the database refused them) or partly applied.")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    url = args.database_url or os.environ.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL
    try:
        dialect, target = db.parse_url(url)
        if dialect == "sqlite":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        store = db.store(url)
        if args.command == "migrate":
            applied = store.migrate()
            result: dict[str, Any] = {"database": dialect, "applied": applied}
        elif args.command == "replay":
            result = {"database": dialect, **store.replay(planner)}
        else:
            result = store.status()
    except WebhookError as error:
        detail = db.redact(error.log_detail or "", url)
        sys.stderr.write(f"asset_sync: {error.message} {detail}".rstrip() + "\n")
        return 1
    finally:
        db.close_all()
    sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
