"""The deploy files: generated from one source and kept in step, valid, and each function reachable."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import threading
import tomllib
import urllib.error
import urllib.request
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from werkzeug.test import Client

from devtools import deploy
from devtools.cli import Router, sample_path
from shared import verify
from tests.deploy.conftest import PYTHON_VERSION, WHEELS
from tests.helpers import SECRET

ROOT = deploy.PROJECT_ROOT
NAMES = deploy.function_names()


def test_deploy_files_are_up_to_date():
    for path, expected in deploy.generated_files().items():
        assert path.exists(), f"{path.relative_to(ROOT)} is missing: run `python -m shared deploy-files`"
        assert path.read_text() == expected, f"{path.relative_to(ROOT)} is stale: run `python -m shared deploy-files`"


@pytest.mark.slow
def test_template_passes_cfn_lint():
    result = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(ROOT / "template.yaml")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_has_one_function_url_per_workflow_and_no_literal_secrets():
    text = (ROOT / "template.yaml").read_text()
    for name in NAMES:
        spec = deploy.function_spec(name)
        assert f"  {spec.logical_id}:\n    Type: AWS::Serverless::Function" in text
        assert f"Handler: functions/{name}/handler.handler" in text
        assert f"Value: !GetAtt {spec.logical_id}Url.FunctionUrl" in text
        assert spec.timeout < 20  # Cloudinary gives up after 20 s
        for variable in spec.requires:
            if deploy.is_secret(variable):
                assert (f"{variable}: !Sub '{{{{resolve:secretsmanager:${{SecretName}}:SecretString:{variable}}}}}'"
                        in text)
    assert text.count("AuthType: NONE") == len(NAMES)


def _plain(value):
    """template_data with CloudFormation functions in their long (JSON) form, as a YAML reader returns them."""
    if isinstance(value, deploy.Intrinsic):
        return value.as_json()
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


@pytest.mark.slow
def test_deploy_files_are_serialized_not_spliced():
    """Values with quotes, colons, hashes, braces and newlines come back exactly as written: template.yaml read by
    cfn-lint's CloudFormation YAML reader (short tags included), netlify.toml by tomllib."""
    from cfnlint.decode import cfn_yaml

    awkward = 'it\'s "quoted": # no comment\n{{resolve}} !Ref x \\ ${y}'
    config = deploy.load_config()
    config["parameter_defaults"] = {**config.get("parameter_defaults", {}), "HELLO_TAG": awkward}
    config["netlify"] = {**config["netlify"], "targets": {"hello_tag": 'https://example.com/a"b\\c#d\'e'}}

    template = json.loads(json.dumps(cfn_yaml.loads(deploy.render_template(config))))
    assert template == _plain(deploy.template_data(config))
    assert template["Parameters"]["HelloTag"]["Default"] == awkward
    netlify = tomllib.loads(deploy.render_netlify(config))
    assert netlify == deploy.netlify_data(config)
    assert {rule["from"]: rule["to"] for rule in netlify["redirects"]}["/webhooks/hello_tag"].endswith('"b\\c#d\'e')


def _load_shim(name: str):
    spec = importlib.util.spec_from_file_location(f"vercel_shim_{name}", ROOT / "api" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", NAMES)
def test_every_vercel_shim_answers_a_signed_request(signing_secret, monkeypatch, name):
    monkeypatch.setenv("DRY_RUN", "1")
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "1")  # no credentials here: functions plan, never call
    client = Client(_load_shim(name).app)
    body = json.dumps({"notification_type": "vercel_check", "public_id": "v/check"}).encode()

    signed = client.post(f"/api/{name}", data=body, headers=verify.signed_headers(body, SECRET))
    badly_signed = client.post(f"/api/{name}", data=body, headers=verify.signed_headers(body, "nope"))
    wrong_method = client.get(f"/api/{name}")

    assert signed.status_code == 200, signed.get_data(as_text=True)
    assert badly_signed.status_code == 401
    assert wrong_method.status_code == 405 and wrong_method.headers["Allow"] == "POST"


def test_netlify_routes_every_function_to_one_base_url():
    rules = tomllib.loads((ROOT / "netlify.toml").read_text())["redirects"]
    base = deploy.load_config()["netlify"]["base_url"].rstrip("/")
    overrides = deploy.load_config()["netlify"].get("targets", {})
    by_path = {rule["from"]: rule for rule in rules}
    for name in NAMES:
        rule = by_path[f"/webhooks/{name}"]
        assert rule["to"] == overrides.get(name, f"{base}/api/{name}")
        assert rule["status"] == 200 and rule["force"] is True  # a rewrite (proxy), not a redirect
        assert "headers" not in rule  # nothing added or replaced on the way
    assert len(rules) == len(NAMES)


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


@pytest.mark.slow
def test_netlify_proxy_rules_deliver_body_and_signature_headers_untouched(monkeypatch):
    """Play the Netlify proxy: apply each rule of netlify.toml to a signed notification and forward it,
    byte for byte, to the local server standing in for the deployment. The function verifies the
    signature, so a changed body or X-Cld-* header would be a 401."""
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", SECRET)
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "1")
    monkeypatch.setenv("DRY_RUN", "1")
    server = make_server("127.0.0.1", 0, Router(NAMES), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    deployment = f"http://127.0.0.1:{server.server_port}"
    base = deploy.load_config()["netlify"]["base_url"].rstrip("/")
    try:
        for rule in tomllib.loads((ROOT / "netlify.toml").read_text())["redirects"]:
            name = rule["from"].rsplit("/", 1)[1]
            body = sample_path(name, None).read_bytes()
            headers = {**verify.signed_headers(body, SECRET), "User-Agent": "Cloudinary"}
            target = rule["to"].replace(base, deployment)
            request = urllib.request.Request(target, data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    status, answer = response.status, json.loads(response.read())
            except urllib.error.HTTPError as error:
                status, answer = error.code, json.loads(error.read())
            assert status == 200, (name, answer)
            assert answer["status"] in {"dry_run", "ignored"}, (name, answer)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.bundle
@pytest.mark.slow
def test_new_function_is_registered_in_every_deploy_file_bundles_and_runs(tmp_path):
    """`python -m shared new` in a copy of the project: the copy deploys without hand edits."""
    if not any(WHEELS.glob("*.whl")):
        pytest.fail("No wheels in .cache/wheels: run the tests with `make test`.")
    project = tmp_path / "project"
    for item in ("functions", "shared", "devtools", "tests", "deploy", "api", "pyproject.toml", "template.yaml",
                 "netlify.toml", "requirements.txt"):
        source = ROOT / item
        if source.is_dir():
            shutil.copytree(source, project / item, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, project / item)

    created = subprocess.run([sys.executable, "-m", "shared", "new", "thumbnail_tag"], cwd=project,
                             capture_output=True, text=True, check=False)
    assert created.returncode == 0, created.stderr

    assert "ThumbnailTagFunction:" in (project / "template.yaml").read_text()
    assert 'from = "/webhooks/thumbnail_tag"' in (project / "netlify.toml").read_text()
    assert "from functions.thumbnail_tag.handler import app" in (project / "api" / "thumbnail_tag.py").read_text()
    assert "THUMBNAIL_TAG" in (project / "functions" / "thumbnail_tag" / "handler.py").read_text()

    linted = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), str(project / "template.yaml")],
                            capture_output=True, text=True, check=False)
    assert linted.returncode == 0, linted.stdout

    bundled = subprocess.run([sys.executable, "-m", "shared", "bundle", "thumbnail_tag", "--python-version",
                              PYTHON_VERSION, "--find-links", str(WHEELS), "--no-index"],
                             cwd=project, capture_output=True, text=True, check=False)
    assert bundled.returncode == 0, bundled.stderr
    assert (project / "dist" / "thumbnail_tag.zip").exists()

    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "tests/functions/test_thumbnail_tag.py"], cwd=project, capture_output=True,
                            text=True, check=False)
    assert tested.returncode == 0, tested.stdout[-3000:]
    assert " passed" in tested.stdout
