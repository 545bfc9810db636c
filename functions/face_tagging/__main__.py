"""``python -m functions.face_tagging trim-botocore-data``: write the trimmed botocore data face_tagging ships.

    trim-botocore-data [--check]   (re)write functions/face_tagging/botocore_data/ from the installed botocore;
                                   --check: write nothing, exit 1 if the shipped files differ from what the
                                   installed botocore gives (a new botocore changed something face_tagging uses)

What it writes, and why (rekognition.py loads it; measured with ``python -m bench.accepted face_tagging``):

- ``rekognition/<api version>/service-2.json``: Rekognition's service model holding only the operations
  face_tagging calls (``rekognition.OPERATIONS``) and the shapes they reach, each as botocore has it without
  its documentation (HTML for reference pages; botocore reads it only to write docstrings). botocore parses
  the whole model (75 operations, 550 shapes, into OrderedDicts) for every client: ~3.5 MiB of a cold start;
  this one ~0.1 MiB (the documentation of even these six operations would be another 0.2).
- ``endpoints.json``: botocore's endpoint data with every partition as it is, but only the services this
  session can create clients for (Rekognition, and STS/SSO when credentials come from a role or an SSO
  profile). The whole file (1.2 MB, every service) is parsed for any client: ~7 MiB of a cold start.

Both are derived data, never edited by hand: tests/functions/test_face_tagging_botocore_data.py fails when
the installed botocore would give different files (run this command again) or when the handler calls an
operation the trimmed model lacks. Not in the Lambda bundle (``__main__.py`` is tooling); the data is.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from functions.face_tagging import rekognition

HERE = Path(__file__).resolve().parent


def builtin_loader() -> Any:
    """A loader of the installed botocore's own data only (no ~/.aws/models, no AWS_DATA_PATH, no trimmed copy)."""
    from botocore.loaders import Loader

    return Loader(extra_search_paths=[Loader.BUILTIN_DATA_PATH], include_default_search_paths=False)


def reachable_shapes(model: dict[str, Any], operations: list[str]) -> set[str]:
    """The names of the shapes the operations use: input, output, errors, and every shape those reference."""
    shapes = model["shapes"]
    found: set[str] = set()
    todo = [ref["shape"] for name in operations for key in ("input", "output") if key in model["operations"][name]
            for ref in [model["operations"][name][key]]]
    todo += [error["shape"] for name in operations for error in model["operations"][name].get("errors", [])]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        shape = shapes[name]
        refs = list(shape.get("members", {}).values())
        refs += [shape[key] for key in ("member", "key", "value") if key in shape]
        todo.extend(ref["shape"] for ref in refs)
    return found


def undocumented(part: dict[str, Any]) -> dict[str, Any]:
    """A model's operation or shape without its documentation (and that of the members it references): HTML
    for the SDKs' reference pages, which botocore reads only to write docstrings (``help(client.method)``)."""
    part = {key: value for key, value in part.items() if key != "documentation"}
    if "members" in part:
        part["members"] = {name: undocumented(ref) for name, ref in part["members"].items()}
    for key in ("member", "key", "value"):
        if key in part:
            part[key] = undocumented(part[key])
    return part


def trimmed_service_model(loader: Any) -> tuple[str, dict[str, Any]]:
    """(api version, the service model with only ``rekognition.OPERATIONS`` and their shapes), in botocore's
    order, every kept part as botocore has it but for its documentation (~0.2 MiB of a cold start)."""
    api_version = loader.determine_latest_version(rekognition.SERVICE, "service-2")
    model = loader.load_data(f"{rekognition.SERVICE}/{api_version}/service-2")
    missing = sorted(set(rekognition.OPERATIONS) - set(model["operations"]))
    if missing:
        raise SystemExit(f"botocore's {rekognition.SERVICE} model has no operation {', '.join(missing)}")
    kept = reachable_shapes(model, list(rekognition.OPERATIONS))
    trimmed: dict[str, Any] = {}
    for key, value in model.items():
        if key == "documentation":
            continue
        if key == "operations":
            value = {name: undocumented(op) for name, op in value.items() if name in rekognition.OPERATIONS}
        elif key == "shapes":
            value = {name: undocumented(shape) for name, shape in value.items() if name in kept}
        trimmed[key] = value
    return api_version, trimmed


def trimmed_endpoints(loader: Any) -> dict[str, Any]:
    """botocore's endpoints.json with only the services of ``rekognition.ENDPOINT_SERVICES`` in each partition."""
    endpoints = loader.load_data("endpoints")
    trimmed = dict(endpoints)
    trimmed["partitions"] = [
        {key: ({name: data for name, data in value.items() if name in rekognition.ENDPOINT_SERVICES}
               if key == "services" else value) for key, value in partition.items()}
        for partition in endpoints["partitions"]]
    return trimmed


def serialised(data: Any) -> str:
    # Indented, keys in botocore's order: a regeneration's diff shows what botocore changed.
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def files(loader: Any | None = None) -> dict[str, str]:
    """The trimmed data as {path relative to botocore_data/: text}."""
    loader = loader or builtin_loader()
    api_version, model = trimmed_service_model(loader)
    return {f"{rekognition.SERVICE}/{api_version}/service-2.json": serialised(model),
            "endpoints.json": serialised(trimmed_endpoints(loader))}


def trim(args: argparse.Namespace) -> int:
    folder = Path(rekognition.DATA_PATH)
    wanted = files()
    shipped = {str(path.relative_to(folder)): path.read_text(encoding="utf-8")
               for path in sorted(folder.rglob("*.json"))} if folder.is_dir() else {}
    if args.check:
        if shipped == wanted:
            sys.stdout.write(f"{folder} matches the installed botocore\n")
            return 0
        sys.stderr.write(f"{folder} differs from the installed botocore: run `python -m functions.face_tagging "
                         "trim-botocore-data`\n")
        return 1
    for name in set(shipped) - set(wanted):
        (folder / name).unlink()
    for name, text in wanted.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {path} ({len(text.encode()):,} bytes)\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m functions.face_tagging", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    trim_parser = commands.add_parser("trim-botocore-data", help="write the trimmed botocore data from botocore")
    trim_parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the files differ")
    trim_parser.set_defaults(run=trim)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
