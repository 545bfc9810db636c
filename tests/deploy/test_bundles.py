"""Each function's Lambda bundle is self-contained: unzipped into an empty folder, a clean interpreter that
sees only that folder and the standard library answers a signed Function URL event and rejects a badly
signed one."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from devtools import bundle as bundles_module
from devtools import deploy
from tests.deploy.conftest import PYTHON_VERSION
from tests.helpers import CLOUD_NAME, SECRET, function_url_event

pytestmark = [pytest.mark.bundle, pytest.mark.slow]

# Runs in `python -I -S`: no site-packages, no PYTHONPATH, no current directory; only the bundle.
ISOLATED_PROBE = r"""
import json, sys
bundle, name, events, modules = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), json.loads(sys.argv[4])
sys.path.insert(0, bundle)
import importlib
handler = importlib.import_module(f"functions.{name}.handler").handler
answers = [handler(event, None) for event in events]
for module in modules:  # every dependency the function needs at run time is in the bundle
    importlib.import_module(module)
outside = sorted({m.__file__ for m in list(sys.modules.values())
                  if getattr(m, "__file__", None) and "site-packages" in m.__file__
                  and not m.__file__.startswith(bundle)})
print(json.dumps({"answers": answers, "outside": outside}))
"""

# the import name of each distribution a function may need (boto3 comes with the Lambda runtime)
IMPORT_NAMES = {"cloudinary": "cloudinary", "python-http-client": "python_http_client", "requests": "requests",
                "psycopg2-binary": "psycopg2", "pillow": "PIL", "slack-sdk": "slack_sdk"}


def unzip(bundle: bundles_module.Bundle, target: Path) -> Path:
    target.mkdir()
    with zipfile.ZipFile(bundle.path) as archive:
        archive.extractall(target)
    return target


def modules_needed(name: str) -> list[str]:
    modules = []
    for requirement in bundles_module.bundle_requirements(name):
        project = requirement.split("[")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
        if project in IMPORT_NAMES:
            modules.append(IMPORT_NAMES[project])
    return modules


def run_isolated(folder: Path, name: str, events: list[dict], env: dict[str, str]) -> dict:
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", ISOLATED_PROBE, str(folder), name, json.dumps(events),
         json.dumps(modules_needed(name))],
        capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", **env}, cwd=folder, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", deploy.function_names())
def test_bundle_answers_signed_and_rejects_badly_signed_events_in_isolation(bundles, tmp_path, name):
    folder = unzip(bundles[name], tmp_path / "bundle")
    # A valid notification of a type no function acts on: every function must answer it 200 without
    # any credential or network; DRY_RUN keeps asset_sync (which logs every type) from writing.
    notification = {"notification_type": "bundle_check", "public_id": "bundle/check"}
    events = [function_url_event(notification), function_url_event(notification, secret="wrong-secret")]

    probe = run_isolated(folder, name, events, {"CLOUDINARY_NOTIFICATION_SECRETS": SECRET, "DRY_RUN": "1"})

    signed, badly_signed = probe["answers"]
    assert signed["statusCode"] == 200, signed
    assert badly_signed["statusCode"] == 401
    assert json.loads(badly_signed["body"])["error"] == "signature_mismatch"
    assert probe["outside"] == []  # nothing was imported from outside the bundle


def test_hello_tag_bundle_calls_cloudinary_from_isolation(bundles, tmp_path, httpserver):
    """The bundled SDK really works: the isolated bundle tags an asset on the local Cloudinary stand-in."""
    folder = unzip(bundles["hello_tag"], tmp_path / "bundle")
    httpserver.expect_oneshot_request(f"/v1_1/{CLOUD_NAME}/image/tags", method="POST").respond_with_json(
        {"public_ids": ["bundle/asset"]})
    prefix = httpserver.url_for("").rstrip("/")
    env = {"CLOUDINARY_URL": f"cloudinary://key:{SECRET}@{CLOUD_NAME}?upload_prefix={prefix}"}
    upload = {"notification_type": "upload", "public_id": "bundle/asset", "resource_type": "image",
              "type": "upload", "tags": []}

    probe = run_isolated(folder, "hello_tag", [function_url_event(upload, base64_body=True)], env)

    assert probe["answers"][0]["statusCode"] == 200, probe["answers"][0]
    assert json.loads(probe["answers"][0]["body"])["status"] == "done"
    request, _ = httpserver.log[0]
    assert request.form["tag"] == "Hello World!" and request.form.getlist("public_ids[]") == ["bundle/asset"]


def test_bundles_hold_only_the_function_and_stay_under_lambda_limits(bundles):
    for name, bundle in bundles.items():
        with zipfile.ZipFile(bundle.path) as archive:
            names = archive.namelist()
        own = {entry.split("/")[1] for entry in names
               if entry.startswith("functions/") and entry.count("/") > 1} - {"__pycache__"}
        assert own == {name}, f"{name} bundles other functions: {own}"
        assert "shared/webhook.py" in names and f"functions/{name}/handler.py" in names
        assert not any(entry.startswith(("boto3/", "botocore/")) for entry in names)  # the runtime has them
        assert not any("/samples/" in entry or entry.startswith("tests/") for entry in names)
        assert bundle.zipped < bundles_module.LAMBDA_ZIPPED_LIMIT
        assert bundle.unzipped < bundles_module.LAMBDA_UNZIPPED_LIMIT


def test_bundle_requirements_leave_out_the_runtime_sdk_unless_pinned(tmp_path, monkeypatch):
    function = tmp_path / "functions" / "probe"
    function.mkdir(parents=True)
    (function / "requirements.txt").write_text("boto3>=1.34\nrequests>=2.31  # plain HTTP\n\n")
    monkeypatch.setattr(bundles_module, "PROJECT_ROOT", tmp_path)
    assert bundles_module.bundle_requirements("probe") == ["requests>=2.31"]
    (function / "requirements.txt").write_text("boto3==1.35.0\n")
    assert bundles_module.bundle_requirements("probe") == ["boto3==1.35.0"]


def test_bundles_hold_no_tooling_and_ship_bytecode_for_their_python(bundles):
    tag = f"cpython-{PYTHON_VERSION.replace('.', '')}"
    for name, bundle in bundles.items():
        with zipfile.ZipFile(bundle.path) as archive:
            names = set(archive.namelist())
        ours = [entry for entry in names if entry.startswith(("shared/", "functions/"))]
        tooling = sorted(entry for entry in names if entry.startswith(("devtools/", "bench/", "tests/")))
        tooling += sorted(entry for entry in ours if entry.endswith(("/__main__.py", "/bench.py", "/README.md")))
        assert tooling == [], f"{name}: tooling in the bundle: {tooling}"
        sources = [entry for entry in ours if entry.endswith(".py")]
        assert sources
        for source in sources:
            folder, _, module = source.rpartition("/")
            assert f"{folder}/__pycache__/{module[:-3]}.{tag}.pyc" in names, f"{name}: no bytecode for {source}"
        assert bundle.compiled
