"""``python -m devtools.botocore_data [--check]``: write the trimmed botocore data the project ships.

    python -m devtools.botocore_data            (re)write every folder below from the installed botocore
    python -m devtools.botocore_data --check    write nothing; exit 1 if a shipped file differs from what the
                                                installed botocore gives (a new botocore changed something used)

A botocore client parses its service's whole model and botocore's endpoint file (every service of every
partition, 1.2 MB) when it is created: most of its creation's time and memory. Each folder here holds the same
data cut to what one client uses, found before botocore's own by ``shared.aws.client(data_path=...)``:

    functions/face_tagging/botocore_data   Rekognition: the six operations face_tagging calls
    shared/botocore_data                   DynamoDB: the idempotency store's four (shared/idempotency.py)

- ``<service>/<api version>/service-2.json``: the service model with only those operations and the shapes they
  reach, each as botocore has it without its documentation (HTML for reference pages; botocore reads it only to
  write docstrings). The service's other files (its endpoint rule set, examples) still come from botocore.
- ``endpoints.json``: botocore's endpoint data with every partition as it is, but only the services that
  session can create clients for: the client's own, and STS/SSO, which botocore's credential providers create
  from the same session when credentials come from a role or an SSO profile (each under its model's endpoint
  prefix: ``portal.sso`` for SSO, ``oidc`` for SSO OIDC).

Measured (fresh processes, 9 each): DynamoDB's client creation 34 -> 13 ms and the process's peak 43 -> 33 MiB;
Rekognition's ~11 MiB -> ~1 MiB. Derived data, never edited by hand: tests/shared/test_botocore_data.py fails
when the installed botocore would give other files (run this command again) or when code calls an operation a
trimmed model lacks. The folders ship in the Lambda bundles; without one, botocore's own data is used (same
calls, slower and larger). Lambda's runtime brings its own botocore, which reads these as it reads models in
``~/.aws/models``: versioned data, read across botocore releases.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

# The services botocore's own credential providers create clients for from the client's session (a role to
# assume, an SSO profile): every trimmed endpoints.json keeps them beside the client's service.
CREDENTIAL_SERVICES = ("sts", "sso", "sso-oidc")


class Trimming:
    """One folder of trimmed data: the service, the operations kept, the services kept in endpoints.json."""

    def __init__(self, name: str, folder: str, service: str, operations: tuple[str, ...]) -> None:
        self.name = name
        self.folder = Path(folder)
        self.service = service
        self.operations = operations
        self.endpoint_services = (service, *CREDENTIAL_SERVICES)


def trimmings() -> dict[str, Trimming]:
    """Every folder of trimmed data the project ships, by name; each from the constants of the code it serves."""
    from functions.face_tagging import rekognition
    from shared import idempotency

    return {trimming.name: trimming for trimming in (
        Trimming("face_tagging", rekognition.DATA_PATH, rekognition.SERVICE, rekognition.OPERATIONS),
        Trimming("idempotency", idempotency.DYNAMODB_DATA_PATH, "dynamodb", idempotency.DYNAMODB_OPERATIONS),
    )}


def builtin_loader() -> Any:
    """A loader of the installed botocore's own data only (no ~/.aws/models, no AWS_DATA_PATH, no trimmed copy)."""
    from botocore.loaders import Loader

    return Loader(extra_search_paths=[Loader.BUILTIN_DATA_PATH], include_default_search_paths=False)


def reachable_shapes(model: dict[str, Any], operations: tuple[str, ...]) -> set[str]:
    """The names of the shapes the operations use: input, output, errors, and every shape those reference."""
    shapes = model["shapes"]
    found: set[str] = set()
    todo = [model["operations"][name][key]["shape"] for name in operations for key in ("input", "output")
            if key in model["operations"][name]]
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


def trimmed_service_model(trimming: Trimming, loader: Any) -> tuple[str, dict[str, Any]]:
    """(api version, the service model with only the trimming's operations and their shapes), in botocore's
    order, every kept part as botocore has it but for its documentation."""
    api_version = loader.determine_latest_version(trimming.service, "service-2")
    model = loader.load_data(f"{trimming.service}/{api_version}/service-2")
    missing = sorted(set(trimming.operations) - set(model["operations"]))
    if missing:
        raise SystemExit(f"botocore's {trimming.service} model has no operation {', '.join(missing)}")
    kept = reachable_shapes(model, trimming.operations)
    trimmed: dict[str, Any] = {}
    for key, value in model.items():
        if key == "documentation":
            continue
        if key == "operations":
            value = {name: undocumented(op) for name, op in value.items() if name in trimming.operations}
        elif key == "shapes":
            value = {name: undocumented(shape) for name, shape in value.items() if name in kept}
        trimmed[key] = value
    return api_version, trimmed


def endpoint_prefixes(trimming: Trimming, loader: Any) -> set[str]:
    """The keys of the trimming's endpoint services in endpoints.json: each model's ``endpointPrefix``, which is
    not always the service's name (SSO's is ``portal.sso``, SSO OIDC's ``oidc``)."""
    prefixes = set()
    for service in trimming.endpoint_services:
        version = loader.determine_latest_version(service, "service-2")
        prefixes.add(loader.load_data(f"{service}/{version}/service-2")["metadata"]["endpointPrefix"])
    return prefixes


def trimmed_endpoints(trimming: Trimming, loader: Any) -> dict[str, Any]:
    """botocore's endpoints.json with only the trimming's endpoint services in each partition."""
    endpoints = loader.load_data("endpoints")
    kept = endpoint_prefixes(trimming, loader)
    trimmed = dict(endpoints)
    trimmed["partitions"] = [
        {key: ({name: data for name, data in value.items() if name in kept} if key == "services" else value)
         for key, value in partition.items()}
        for partition in endpoints["partitions"]]
    return trimmed


def serialised(data: Any) -> str:
    # Indented, keys in botocore's order: a regeneration's diff shows what botocore changed.
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


def files(trimming: Trimming, loader: Any | None = None) -> dict[str, str]:
    """The trimmed data as {path relative to the trimming's folder: text}."""
    loader = loader or builtin_loader()
    api_version, model = trimmed_service_model(trimming, loader)
    return {f"{trimming.service}/{api_version}/service-2.json": serialised(model),
            "endpoints.json": serialised(trimmed_endpoints(trimming, loader))}


def shipped(trimming: Trimming) -> dict[str, str]:
    """The files in the trimming's folder, as {path relative to it: text}."""
    folder = trimming.folder
    return {str(path.relative_to(folder)): path.read_text(encoding="utf-8")
            for path in sorted(folder.rglob("*.json"))} if folder.is_dir() else {}


def write(trimming: Trimming) -> None:
    wanted, present = files(trimming), shipped(trimming)
    for name in set(present) - set(wanted):
        (trimming.folder / name).unlink()
    for name, text in wanted.items():
        path = trimming.folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        sys.stdout.write(f"wrote {path} ({len(text.encode()):,} bytes)\n")


def check(trimming: Trimming) -> bool:
    if shipped(trimming) == files(trimming):
        sys.stdout.write(f"{trimming.folder} matches the installed botocore\n")
        return True
    sys.stderr.write(f"{trimming.folder} differs from the installed botocore: run `python -m devtools.botocore_data`"
                     " and commit the result\n")
    return False


def main(argv: list[str] | None = None, *, only: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.botocore_data", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a folder differs")
    args = parser.parse_args(argv)
    chosen = [trimming for name, trimming in trimmings().items() if only in (None, name)]
    if args.check:
        return 0 if all([check(trimming) for trimming in chosen]) else 1  # a list: every folder is reported
    for trimming in chosen:
        write(trimming)
    return 0


if __name__ == "__main__":
    sys.exit(main())
