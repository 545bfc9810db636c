"""``python -m functions.asset_sync migrate|replay|status``: look after the mirror database.

    migrate   create or upgrade the tables (the function also does this on first use)
    replay    rebuild the mirror (assets, folders) from the event log, in one transaction; quarantined
              events are tried again (applied once their cause is fixed)
    status    schema version, events by type, assets live and deleted, quarantined and partly applied
              events (the newest listed with the reason), as JSON
    reconcile compare the mirror with Cloudinary's Search API (missing, stale, vanished assets); --apply writes
              the differences as `reconcile` events; stops before the hourly rate limit, resumable (reconcile.py)

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
from functions.asset_sync import reconcile as reconcile_module
from functions.asset_sync.handler import APPLIERS, DEFAULT_DATABASE_URL, OWN_APPLIERS, plan_for
from functions.asset_sync.mirror import Plan
from shared.errors import ConfigError, WebhookError


def planner(notification_type: str, payload: str, own: bool = False) -> Plan | None:
    """The plan of a logged event (its payload as signed; ``own``: unsigned, written by asset_sync itself), or None
    for a type this version does not apply. The same as the live request's: values the databases cannot hold get
    the same stand-ins."""
    if notification_type not in (OWN_APPLIERS if own else APPLIERS):
        return None
    parsed = json.loads(payload)
    return plan_for(notification_type, parsed, payload, own=own) if isinstance(parsed, Mapping) else None


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
    reconcile = commands.add_parser(
        "reconcile", help="compare the mirror with Cloudinary's Search API; --apply writes the differences",
        description="Page through Cloudinary's Search API (500 assets per call, with tags, context and structured "
                    "metadata) and compare each asset with the mirror: missing, stale, and (after a search over "
                    "every asset reached its last page) vanished. Prints one line per difference and a progress "
                    "line per page (stderr). --apply writes each difference as a `reconcile` event through the "
                    "notifications' merge rules: a notification newer than the search wins. Needs CLOUDINARY_URL. "
                    f"Exit status: 0 done, {reconcile_module.EXIT_STOPPED} stopped before the end (rate limit, "
                    "Cloudinary unavailable, another run busy: resume later), 1 error.")
    reconcile.add_argument("--expression", metavar="EXPR",
                           help="a Search API expression (default: every asset), e.g. 'folder:shop/*'")
    reconcile.add_argument("--since", metavar="T",
                           help="only assets uploaded or changed at or after T: 2024-05-01, 2024-05-01T12:00:00Z, "
                                "or a span back from now: 36h, 7d, 2w")
    reconcile.add_argument("--apply", action="store_true",
                           help="write the differences (default: print them, write nothing)")
    where = reconcile.add_mutually_exclusive_group()
    where.add_argument("--resume", action="store_true",
                       help="continue the unfinished pass stored in the database (its expression and cursor)")
    where.add_argument("--cursor", metavar="C", help="start from this next_cursor (of the same expression)")
    reconcile.add_argument("--reserve", metavar="N", type=_count, default=reconcile_module.DEFAULT_RESERVE,
                           help="Admin API calls per hour to leave to everything else: stop (or --wait) when "
                                f"X-FeatureRateLimit-Remaining reaches N (default {reconcile_module.DEFAULT_RESERVE})")
    reconcile.add_argument("--wait", action="store_true",
                           help="at the reserve, wait for the hourly reset (X-FeatureRateLimit-Reset) and go on")
    reconcile.add_argument("--max-vanished", metavar="N", type=_count, default=reconcile_module.DEFAULT_MAX_VANISHED,
                           help="mark at most N vanished assets deleted; more (or more than half the mirror) is "
                                "taken for a wrong CLOUDINARY_URL and none is written "
                                f"(default {reconcile_module.DEFAULT_MAX_VANISHED})")
    return parser


def _count(text: str) -> int:
    if not (text.strip().isascii() and text.strip().isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 0")
    return int(text)


def run_reconcile(args: argparse.Namespace, url: str) -> int:
    """The reconcile command: differences on stdout as found, progress on stderr, the outcome last."""
    if args.resume and (args.expression or args.since):
        raise ConfigError("--resume continues the stored pass with its own expression: leave out --expression "
                          "and --since")
    options = reconcile_module.Options(expression=args.expression, since=args.since, apply=args.apply,
                                       cursor=args.cursor, resume=args.resume, reserve=args.reserve, wait=args.wait,
                                       max_vanished=args.max_vanished)

    def show(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def progress(line: str) -> None:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()

    report = reconcile_module.Reconciler(options, url, show=show, progress=progress).run()
    show(reconcile_module.describe(report))
    if report.status == "stopped":
        hint = reconcile_module.resume_hint(report, options)
        if hint:
            show(hint)
    return 0 if report.status in ("complete", "up_to_date") else reconcile_module.EXIT_STOPPED


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    url = args.database_url or os.environ.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL
    try:
        dialect, target = db.parse_url(url)
        if dialect == "sqlite" and (args.command != "reconcile" or args.apply):  # a dry run creates nothing
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        store = db.store(url)
        if args.command == "reconcile":
            return run_reconcile(args, url)
        if args.command == "migrate":
            applied = store.migrate()
            result: dict[str, Any] = {"database": dialect, "applied": applied}
        elif args.command == "replay":
            result = {"database": dialect, **store.replay(planner)}
        else:
            result = store.status()
    except WebhookError as error:
        detail = db.redact(error.log_detail or "", url)
        message = detail if isinstance(error, ConfigError) and detail else f"{error.message} {detail}"
        sys.stderr.write(f"asset_sync: {message}".rstrip() + "\n")
        return 1
    finally:
        db.close_all()
    sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
