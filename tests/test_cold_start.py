"""A request rejected for its signature never pays for importing an SDK (DESIGN.md §2).

Each function module is imported in a fresh interpreter and called with a badly signed notification;
afterwards none of the heavy SDKs may be in ``sys.modules``. Functions are discovered from
functions/*/handler.py, so a new function is covered without editing this file.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = sorted(path.parent.name for path in (ROOT / "functions").glob("*/handler.py"))
HEAVY_MODULES = ("cloudinary", "python_http_client", "boto3", "botocore", "requests", "psycopg2",
                 "urllib3", "PIL", "slack_sdk")

# Runs in the fresh interpreter: import the function, send it a badly signed Function URL event and a
# badly signed API Gateway v1 event, and report the answers and the heavy modules that got loaded.
PROBE = """
import base64, json, sys
sys.path.insert(0, {root!r})
heavy = {heavy!r}
before = sorted(name for name in sys.modules if name.split(".")[0] in heavy)
module = __import__("functions.{name}.handler", fromlist=["handler"])
body = b'{{"notification_type":"upload","public_id":"x","eager":[{{}}],"resources":[],"moderation_status":"approved"}}'
headers = {{"content-type": "application/json", "x-cld-timestamp": "{timestamp}", "x-cld-signature": "0" * 40}}
events = [
    {{"version": "2.0", "rawPath": "/", "headers": headers, "body": base64.b64encode(body).decode(),
      "isBase64Encoded": True, "requestContext": {{"http": {{"method": "POST"}}}}}},
    {{"httpMethod": "POST", "path": "/", "headers": {{k.title(): v for k, v in headers.items()}},
      "body": body.decode(), "isBase64Encoded": False}},
]
answers = [module.handler(event, None) for event in events]
print(json.dumps({{
    "before": before,
    "statuses": [answer["statusCode"] for answer in answers],
    "errors": [json.loads(answer["body"]).get("error") for answer in answers],
    "loaded": sorted(name for name in sys.modules if name.split(".")[0] in heavy),
}}))
"""


def run_probe(name: str, timestamp: int) -> dict:
    env = {"PATH": os.environ.get("PATH", ""), "CLOUDINARY_NOTIFICATION_SECRETS": "cold-start-secret",
           "PYTHONDONTWRITEBYTECODE": "1", "AWS_CONFIG_FILE": "/nonexistent",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}
    code = PROBE.format(root=str(ROOT), heavy=HEAVY_MODULES, name=name, timestamp=timestamp)
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                               cwd="/", timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_functions_are_discovered():
    assert {"hello_tag", "eager_email"} <= set(FUNCTIONS)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_badly_signed_request_imports_no_sdk(name):
    import time

    report = run_probe(name, int(time.time()))

    assert report["before"] == []  # nothing (sitecustomize, .pth) preloads an SDK and hides a regression
    assert report["statuses"] == [401, 401]
    assert report["errors"] == ["signature_mismatch", "signature_mismatch"]
    assert report["loaded"] == [], f"{name} imported {report['loaded']} to reject a bad signature"


@pytest.mark.parametrize("module", ["cloudinary", "python_http_client", "boto3", "requests", "psycopg2", "slack_sdk"])
def test_the_sdks_watched_for_are_installed(module):
    # If an SDK were missing, "not in sys.modules" would pass for the wrong reason.
    assert importlib.util.find_spec(module) is not None


def test_the_probe_notices_an_sdk_import():
    # The same probe, against a module that does import an SDK at module level, must see it.
    code = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); import shared.cloudinary_api as c; c.sdk(); "
            f"print(json.dumps(sorted(n for n in sys.modules if n.split('.')[0] in {HEAVY_MODULES!r})))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                               env={"PATH": os.environ.get("PATH", "")}, timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    assert "cloudinary" in json.loads(completed.stdout)


def test_importing_shared_loads_only_the_standard_library():
    code = (f"import sys, json; sys.path.insert(0, {str(ROOT)!r}); before = set(sys.modules); "
            "import shared, shared.webhook, shared.verify, shared.events, shared.config, shared.errors; "
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/",
                               env={"PATH": os.environ.get("PATH", "")}, timeout=60, check=False)
    assert completed.returncode == 0, completed.stderr
    new_modules = json.loads(completed.stdout)
    stdlib = sys.stdlib_module_names
    third_party = [name for name in new_modules if name.split(".")[0] not in stdlib
                   and name.split(".")[0] != "shared"]
    assert third_party == []
