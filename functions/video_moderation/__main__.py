"""``python -m functions.video_moderation sweep``: catch up on missed Google video moderation notifications.

Run from the project root (where ``functions/`` and ``shared/`` are), with the function's environment.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable

from functions.video_moderation.moderation import Policy
from functions.video_moderation.sweep import (
    DEFAULT_MAX_SECONDS,
    DEFAULT_MAX_VIDEOS,
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    QUEUES,
    Report,
    sweep,
)
from shared import config
from shared.errors import ConfigError

Out = Callable[[str], object]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _page_size(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_PAGE_SIZE:
        raise argparse.ArgumentTypeError(f"the Admin API returns at most {MAX_PAGE_SIZE} per page")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m functions.video_moderation",
        description="Tools of the video_moderation function.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = commands.add_parser(
        "sweep",
        help="apply the moderation rules to videos whose notification was missed",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "Page through the google_video_moderation queues (rejected first, then approved) with\n"
            "next_cursor and apply the webhook's rules to each listed video: confirm its status with\n"
            "the Admin API, then publish approved videos (access_control anonymous) and delete rejected\n"
            "ones (or, with VIDEO_MODERATION_ON_REJECT=keep, keep them token-restricted and tagged).\n"
            "Videos already settled cost no write, so running it again is safe.\n\n"
            "Admin API cost: 1 call per page listed + 1 per video (details); writes use the Upload API.\n"
            "Reads CLOUDINARY_URL, VIDEO_MODERATION_ON_REJECT, VIDEO_MODERATION_REJECTED_TAG,\n"
            "CLOUDINARY_TIMEOUT_SECONDS and DRY_RUN from the environment."
        ),
        epilog=(
            "exit status: 0 swept (possibly stopped by --max/--max-seconds: run again for the rest),\n"
            "             1 stopped by a Cloudinary failure, 2 not configured.\n\n"
            "example: python -m functions.video_moderation sweep --dry-run --max 20"
        ),
    )
    run.add_argument("--dry-run", action="store_true",
                     help="read and report what would be published or deleted; write nothing (also DRY_RUN=1)")
    run.add_argument("--max", dest="max_videos", type=_positive_int, default=DEFAULT_MAX_VIDEOS, metavar="N",
                     help="examine at most N listed videos (default %(default)s)")
    run.add_argument("--max-seconds", type=_positive_seconds, default=DEFAULT_MAX_SECONDS, metavar="S",
                     help="start no Cloudinary call after S seconds (default %(default)g)")
    run.add_argument("--page-size", type=_page_size, default=DEFAULT_PAGE_SIZE, metavar="N",
                     help=f"videos per listing page, 1-{MAX_PAGE_SIZE} (default %(default)s)")
    run.add_argument("--queue", choices=QUEUES, action="append", dest="queues",
                     help="sweep only this queue (repeatable; default: rejected, then approved)")
    run.add_argument("--json", action="store_true", help="print the report as JSON")
    run.set_defaults(run=cmd_sweep)
    return parser


def cmd_sweep(args: argparse.Namespace, out: Out, err: Out) -> int:
    settings = config.Settings("video_moderation", os.environ)
    try:
        if not settings.get("CLOUDINARY_URL"):
            raise ConfigError("set CLOUDINARY_URL (cloudinary://API_KEY:API_SECRET@CLOUD_NAME)")
        config.cloudinary_credentials()
        policy = Policy.from_settings(settings)
        dry_run = args.dry_run or config.flag("DRY_RUN")
    except ConfigError as error:
        err(f"video_moderation sweep: not configured: {error.log_detail}\n")
        return 2
    queues = tuple(dict.fromkeys(args.queues)) if args.queues else QUEUES
    report = sweep(policy, dry_run=dry_run, max_videos=args.max_videos, max_seconds=args.max_seconds,
                   page_size=args.page_size, queues=queues)
    if args.json:
        out(json.dumps(report.as_dict(), indent=2, ensure_ascii=False) + "\n")
    else:
        out(render(report, policy))
    return 1 if report.error else 0


def render(report: Report, policy: Policy) -> str:
    """The report for a person: one line per video, then the totals and whether to run again."""
    lines = []
    for entry in report.entries:
        if entry.actions and entry.status != "ignored":
            verb = "would " if report.dry_run else ""
            what = ", ".join(f"{verb}{action['action']}" for action in entry.actions)
        else:
            what = entry.reason or ""
        lines.append(f"{entry.queue:<9} {entry.public_id} [{entry.delivery_type}]  {entry.status}: {what}")
    lines.append("")
    lines.append(f"{'DRY RUN: nothing was written. ' if report.dry_run else ''}"
                 f"{len(report.entries)} video(s) examined: {report.count('done')} "
                 f"{'to act on' if report.dry_run else 'acted on'}, {report.count('ignored')} already settled "
                 f"or skipped, {report.count('failed')} failed; rejected videos are "
                 f"{'deleted' if policy.on_reject == 'delete' else 'kept, tagged ' + policy.rejected_tag}.")
    lines.append(f"{report.pages} page(s) listed; {report.calls.admin} Admin API call(s), "
                 f"{report.calls.upload} Upload API call(s).")
    if report.error:
        lines.append(f"Stopped: {report.error}. Run the sweep again later.")
    elif report.stopped:
        lines.append(f"Stopped early ({report.stopped}); more videos may remain: run the sweep again.")
    else:
        lines.append("Both queues examined to the end.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None, out: Out = sys.stdout.write, err: Out = sys.stderr.write) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args, out, err))


if __name__ == "__main__":
    sys.exit(main())
