"""``python -m shared run metadata_stamp setup``: create the structured metadata field the function writes.

Run from the project root (where ``functions/`` and ``shared/`` are), with the function's environment.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from functions.metadata_stamp.stamp import Policy
from shared import cloudinary_api, config
from shared.errors import ConfigError, WebhookError

Out = Callable[[str], object]
Ask = Callable[[str], str]

LABEL = "Last update timestamp"
EXAMPLES = {"string": "ISO 8601 UTC time, e.g. 2024-05-06T12:10:00.000Z", "date": "the day only, e.g. 2024-05-06"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m shared run metadata_stamp",
                                     description="Tools of the metadata_stamp function.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    setup = commands.add_parser(
        "setup",
        help="create the structured metadata field the function writes, if it is missing",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=(
            "List the product environment's structured metadata fields (Admin API, 1 call) and, when\n"
            "STAMP_FIELD (default last_update_timestamp) is missing, show the field it would create and\n"
            "create it after you confirm (Admin API, 1 call): type STAMP_FIELD_TYPE (default string: an\n"
            "ISO 8601 UTC time such as 2024-05-06T12:10:00.000Z; date: the day only), read-only in the\n"
            "Media Library so that only the function sets it. A field that exists is left as it is.\n\n"
            "Reads CLOUDINARY_URL, STAMP_FIELD, STAMP_FIELD_TYPE and CLOUDINARY_TIMEOUT_SECONDS."
        ),
        epilog=("exit status: 0 the field exists (or was created, or --dry-run), 1 Cloudinary failed, the field\n"
                "             exists with another type, or you declined, 2 not configured.\n\n"
                "example: python -m shared run metadata_stamp setup --yes"),
    )
    setup.add_argument("--yes", "-y", action="store_true", help="create the field without asking")
    setup.add_argument("--dry-run", action="store_true", help="only show what it would create")
    setup.add_argument("--label", default=LABEL, help="the field's label in the Media Library (default %(default)r)")
    setup.set_defaults(run=cmd_setup)
    return parser


def field_definition(policy: Policy, label: str) -> dict[str, Any]:
    """The field, as the Admin API's add_metadata_field takes it."""
    return {"external_id": policy.field, "label": label, "type": policy.field_type, "mandatory": False,
            "restrictions": {"readonly_ui": True}}


def cmd_setup(args: argparse.Namespace, out: Out, err: Out, ask: Ask) -> int:
    settings = config.Settings("metadata_stamp", os.environ)
    try:
        if not settings.get("CLOUDINARY_URL"):
            raise ConfigError("set CLOUDINARY_URL (cloudinary://API_KEY:API_SECRET@CLOUD_NAME)")
        config.cloudinary_credentials()
        policy = Policy.from_settings(settings)
    except ConfigError as error:
        err(f"metadata_stamp setup: not configured: {error.log_detail}\n")
        return 2
    label = " ".join(args.label.split()) or LABEL
    api = cloudinary_api.sdk().api
    try:
        with cloudinary_api.calling("metadata_fields"):
            listed = api.list_metadata_fields(timeout=cloudinary_api.timeout("metadata_fields"))
    except WebhookError as error:
        err(f"metadata_stamp setup: could not list the metadata fields: {_why(error)}\n")
        return 1
    existing = _find(listed, policy.field)
    if existing is not None:
        kind = existing.get("type")
        if kind != policy.field_type:
            err(f"metadata_stamp setup: the field {policy.field!r} exists with type {kind!r}, but the function "
                f"writes {policy.field_type!r} values. Set STAMP_FIELD_TYPE={kind} if it is string or date, or "
                "choose another STAMP_FIELD.\n")
            return 1
        out(f"The structured metadata field {policy.field!r} ({kind}, label {existing.get('label')!r}) exists: "
            "nothing to do.\n")
        return 0

    definition = field_definition(policy, label)
    example = EXAMPLES[policy.field_type]
    out(f"The structured metadata field {policy.field!r} does not exist. It will be created with the Admin API "
        f"(1 call):\n  external_id  {policy.field}\n  label        {label}\n  type         {policy.field_type} "
        f"({example})\n  read-only in the Media Library; not mandatory\n")
    if args.dry_run:
        out("DRY RUN: nothing was created.\n")
        return 0
    if not args.yes:
        try:
            answer = ask("Create it? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            err("metadata_stamp setup: not created.\n")
            return 1
    try:
        with cloudinary_api.calling("metadata_fields"):
            api.add_metadata_field(definition, timeout=cloudinary_api.timeout("metadata_fields"))
    except cloudinary_api.AssetConflict:
        out(f"The field {policy.field!r} was created meanwhile (by someone else): nothing to do.\n")
        return 0
    except WebhookError as error:
        err(f"metadata_stamp setup: could not create the field: {_why(error)}\n")
        return 1
    out(f"Created {policy.field!r}. Now point Cloudinary's triggers for {', '.join(policy.stamp_on)} at the "
        "function (see its README).\n")
    return 0


def _find(listed: Any, external_id: str) -> Mapping[str, Any] | None:
    fields = listed.get("metadata_fields") if isinstance(listed, Mapping) else None
    for field in fields or []:
        if isinstance(field, Mapping) and field.get("external_id") == external_id:
            return field
    return None


def _why(error: WebhookError) -> str:
    return f"{error.code}: {error.message}" + (f" ({error.log_detail})" if error.log_detail else "")


def main(argv: list[str] | None = None, out: Out | None = None, err: Out | None = None,
         ask: Ask = input) -> int:
    args = build_parser().parse_args(argv)
    # sys.stdout is looked up now, not when this module was imported (a test or the CLI may have replaced it)
    return int(args.run(args, out or sys.stdout.write, err or sys.stderr.write, ask))


if __name__ == "__main__":
    sys.exit(main())
