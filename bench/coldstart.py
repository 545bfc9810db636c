"""Cold start: fresh interpreter -> module imported -> first request answered (median of N).

Each measurement is a new ``python`` process, so nothing is cached in memory; the OS file cache is warm
(as on a warm serverless host that starts a new container from a cached image).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Runs in the fresh interpreter: import, then answer one signed request (dry run) and one badly signed.
_PROBE = r"""
import json, os, sys, time
t0 = time.perf_counter()
sys.path.insert(0, {root!r})
module_name = {module!r}
import importlib
module = importlib.import_module(module_name)
t_import = time.perf_counter() - t0
result = {{"import_ms": t_import * 1000}}
if hasattr(module, "handle"):
    from shared import verify
    from shared.events import Headers, Request
    body = open({sample!r}, "rb").read()
    good = verify.signed_headers(body, "bench-secret")
    bad = dict(good, **{{"X-Cld-Signature": "0" * 40}})
    which = {which!r}
    headers = good if which == "signed" else bad
    t1 = time.perf_counter()
    response = module.handle(Request("POST", "/", Headers(headers.items()), body))
    result["first_ms"] = (time.perf_counter() - t1) * 1000
    result["total_ms"] = (time.perf_counter() - t0) * 1000
    result["status"] = response.status
    heavy = ("cloudinary", "sendgrid", "boto3", "botocore", "requests", "psycopg")
    result["sdks_loaded"] = sorted(name for name in heavy if name in sys.modules)
print(json.dumps(result))
"""


def function_names() -> list[str]:
    return sorted(path.parent.name for path in (ROOT / "functions").glob("*/handler.py"))


def default_sample(name: str) -> Path:
    from devtools.cli import sample_path

    return sample_path(name, None)


def _probe(module: str, sample: str, which: str) -> dict:
    env = {
        "PATH": "/usr/bin:/bin",
        "CLOUDINARY_NOTIFICATION_SECRETS": "bench-secret",
        "CLOUDINARY_WEBHOOKS_DEMO": "1",  # missing credentials -> dry run, no outbound call
        "DRY_RUN": "1",
    }
    code = _PROBE.format(root=str(ROOT), module=module, sample=sample, which=which)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(runs: int) -> dict:
    results: dict = {"shared": [], "floor": [], "functions": {}}
    # One discarded run first: it writes the bytecode caches and warms the OS file cache, as a deployed
    # container image would already have them.
    _probe("shared.webhook", "", "none")
    for name in function_names():
        _probe(f"functions.{name}.handler", str(default_sample(name)), "bad")
    for _ in range(runs):  # interleaved, so the machine's noise hits both alike
        results["shared"].append(_probe("shared.webhook", "", "none")["import_ms"])
        results["floor"].append(_probe("bench._floor", "", "none")["import_ms"])
    for name in function_names():
        sample = str(default_sample(name))
        signed = [_probe(f"functions.{name}.handler", sample, "signed") for _ in range(runs)]
        rejected = [_probe(f"functions.{name}.handler", sample, "bad") for _ in range(runs)]
        results["functions"][name] = {"signed": signed, "rejected": rejected}
    return results


def _median(values: list[float]) -> float:
    return statistics.median(values)


def report(results: dict, runs: int) -> str:
    lines = [
        "## Cold start",
        "",
        f"Command: `python -m bench` (section `bench/coldstart.py`); median of {runs} fresh interpreters each.",
        "`import` = fresh interpreter to module imported; `first request` = the first request answered after",
        "that import (a signed dry-run notification: the SDK a real call needs is imported here); `rejected` =",
        "the same for a request with a bad signature, which must not import any SDK.",
        "",
        f"`shared` (the wrapper and everything it imports): **{_median(results['shared']):.1f} ms** to import "
        "(target: under 20 ms). Of that, the standard library modules every request needs (json, logging, "
        f"hashlib, hmac: `bench/_floor.py`) take {_median(results['floor']):.1f} ms on this machine.",
        "",
        "| function | import | first signed request (dry run) | import + first request | "
        "rejected request: import + answer | SDKs loaded by the rejected request |",
        "|---|---|---|---|---|---|",
    ]
    for name, data in results["functions"].items():
        signed, rejected = data["signed"], data["rejected"]
        statuses = {probe["status"] for probe in rejected}
        loaded = sorted({sdk for probe in rejected for sdk in probe["sdks_loaded"]})
        lines.append(
            f"| {name} | {_median([p['import_ms'] for p in signed]):.1f} ms "
            f"| {_median([p['first_ms'] for p in signed]):.1f} ms "
            f"| {_median([p['total_ms'] for p in signed]):.1f} ms "
            f"| {_median([p['total_ms'] for p in rejected]):.1f} ms (status {', '.join(map(str, statuses))}) "
            f"| {', '.join(loaded) or 'none'} |"
        )
    return "\n".join(lines) + "\n"
