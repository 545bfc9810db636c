"""Vercel on its own code, offline: what a deployment of this repository builds and runs.

Once per test run (~20 s): @vercel/fs-detectors picks the functions and their config from the repository's files
and vercel.json; @vercel/python 25.0.0's build() builds each one (it chooses the manifest, resolves and installs
the dependencies with uv, installs vercel-runtime and writes the ``vc__handler__python.py`` trampoline), and the
Lambda it returns is laid out as /var/task (builder.py, build.cjs). Then each function is started the way the
runtime imports its handler, under a bare Python 3.12 that has nothing but what the bundle brings, talking to
this test over vercel-runtime's IPC socket (launcher.py); each gets a signed sample notification, a forged one
and a GET through vc_init's own HTTP server and WSGI bridge. Cloudinary, SendGrid and Rekognition are one local
stand-in. Needs `bash scripts/platform/vercel.sh` first (`make test` runs it): without it, these tests fail.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import time
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from shared.verify import sign
from tests.platform.vercel import builder, launcher

pytestmark = pytest.mark.platform

ROOT = builder.ROOT
FUNCTIONS = sorted(path.stem for path in (ROOT / "api").glob("*.py") if not path.stem.startswith("_"))
API_KEY = "614335564976464"
SECRET = "vercel-platform-test-secret-Qx7"  # the api_secret of CLOUDINARY_URL: also what signs the notifications
CLOUD = "demo"
SLACK_WEBHOOK_URL = "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX"
# The sample each function gets, and the "status" of its answer: with DRY_RUN=1 (all but hello_tag, which makes
# its one real call to the stand-in) each sample below needs at most reads. Functions not listed get upload.json
# (or their first sample) and must answer 200.
SIGNED_SAMPLES = {
    "hello_tag": ("upload", "done"),
    "eager_email": ("eager", "dry_run"),
    "bg_removal_approval": ("info_complete", "dry_run"),
    "video_moderation": ("moderation_pending", "ignored"),
    "face_tagging": ("video_upload", "ignored"),
    "asset_sync": ("upload", "dry_run"),
    "chat_alerts": ("upload", "dry_run"),
}
REAL_CALLS = {"hello_tag"}  # run without DRY_RUN (its call goes to the stand-in)


def requirement_names(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;]", line, maxsplit=1)[0]).lower())
    return names


def sample_for(name: str) -> tuple[bytes, str | None]:
    samples = ROOT / "functions" / name / "samples"
    if name in SIGNED_SAMPLES:
        sample, status = SIGNED_SAMPLES[name]
        return (samples / f"{sample}.json").read_bytes(), status
    path = samples / "upload.json"
    return (path if path.exists() else sorted(samples.glob("*.json"))[0]).read_bytes(), None


def notification_headers(body: bytes, secret: str = SECRET) -> dict[str, str]:
    """The headers Cloudinary sends with a notification (X-Cld-Signature = sha1(body + timestamp + secret))."""
    timestamp = int(time.time())
    return {"content-type": "application/json", "user-agent": "Cloudinary", "x-cld-timestamp": str(timestamp),
            "x-cld-signature": sign(body, timestamp, secret)}


# --- once per run: the tools, the builds, the stand-in, the running functions -----------------------------

@pytest.fixture(scope="module")
def run_dir():
    try:
        builder.check_tools()
        missing = None
    except builder.ToolsMissing as error:
        missing = str(error)
    if missing:
        pytest.fail(missing, pytrace=False)
    with builder.exclusive():
        path = builder.new_out_dir()
        yield path
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def build(run_dir):
    try:
        result, log = builder.run_builds(run_dir)
        failed = None
    except builder.BuildFailed as failure:
        failed = failure.log
    if failed is not None:
        pytest.fail(f"@vercel/python's build failed (offline, from the uv cache that `{builder.SETUP_COMMAND}` "
                    f"fills: if the dependencies changed, run it again). The builder's log:\n{failed[-8000:]}",
                    pytrace=False)
    result["log"] = log
    return result


class StandIn:
    """Cloudinary (Upload and Admin API), SendGrid and Rekognition on one loopback port; records every call.

    Cloudinary holds every asset it is asked about (untagged, unmoderated) and tags what it is told to."""

    RESOURCE = re.compile(rf"/v1_1/{CLOUD}/resources/(?P<resource_type>image|video|raw)/(?P<type>[a-z_]+)/"
                          r"(?P<public_id>.+)")

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
        self.server.expect_request(re.compile(".*")).respond_with_handler(self.answer)
        self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}"

    def answer(self, request: Request) -> Response:
        form = {key: request.form.getlist(key) for key in request.form}
        self.calls.append({"method": request.method, "path": request.path, "form": form})
        if request.method == "POST" and request.path == f"/v1_1/{CLOUD}/image/tags":
            return Response(json.dumps({"public_ids": form.get("public_ids[]", [])}), 200,
                            content_type="application/json")
        resource = self.RESOURCE.fullmatch(request.path)
        if request.method == "GET" and resource:
            return Response(json.dumps({**resource.groupdict(), "tags": [], "moderation": []}), 200,
                            content_type="application/json")
        return Response(json.dumps({"error": {"message": "Resource not found"}}), 404,
                        content_type="application/json")


@pytest.fixture(scope="module")
def stand_in():
    stand_in = StandIn()
    yield stand_in
    stand_in.server.stop()


def project_settings(stand_in: StandIn, scratch: Path) -> dict[str, str]:
    """The project's environment variables (one set for every function, as on Vercel). A function added later
    that requires more gets placeholders (URLs: the stand-in) from ``required_settings``."""
    return {
        "CLOUDINARY_URL": f"cloudinary://{API_KEY}:{SECRET}@{CLOUD}?upload_prefix={stand_in.url}",
        "SENDGRID_API_KEY": "SG.platform-test-key",
        "SENDGRID_API_HOST": stand_in.url,
        "FROM_VERIFIED_SENDER": "webhooks@example.com",
        "TO_RECIPIENTS": "ops@example.com",
        "REKOGNITION_COLLECTION_ID": "faces-platform-test",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "AKIAPLATFORMTEST",
        "AWS_SECRET_ACCESS_KEY": "platform-test-aws-secret",
        "AWS_ENDPOINT_URL_REKOGNITION": stand_in.url,
        "DATABASE_URL": f"sqlite:///{scratch}/asset_sync.sqlite3",
        "SLACK_WEBHOOK_URL": SLACK_WEBHOOK_URL,  # only dry runs use it: nothing is posted
    }


def required_settings(name: str, stand_in: StandIn) -> dict[str, str]:
    """Placeholders for the settings the function's @webhook declares as required."""
    webhook = getattr(importlib.import_module(f"functions.{name}.handler").app, "__self__", None)
    return {variable: stand_in.url if variable.endswith("_URL") else f"platform-test-{variable.lower()}"
            for variable in getattr(webhook, "requires", ())}


@pytest.fixture(scope="module")
def functions(build, stand_in, run_dir):
    """{name: Launcher}: every function started (in parallel) and ready to serve."""
    launchers = {}
    try:
        for _, function in sorted(build["functions"].items()):
            name = function["name"]
            scratch = run_dir / "scratch" / name
            scratch.mkdir(parents=True)
            settings = {**required_settings(name, stand_in), **project_settings(stand_in, scratch)}
            if name not in REAL_CALLS:
                settings["DRY_RUN"] = "1"
            launchers[name] = launcher.Launcher(name, Path(function["taskDir"]), function,
                                                builder.RUNTIME_VENV / "bin" / "python", settings, scratch)
            launchers[name].start()
        launcher.wait_all(list(launchers.values()), timeout=90)
        yield launchers
    finally:
        for running in launchers.values():
            running.stop()


# --- the build: what @vercel/python decided -----------------------------------------------------------------

def test_every_api_function_is_built_by_vercel_python(build):
    detected = {b["src"]: b["use"] for b in build["builds"]}
    assert sorted(detected) == [f"api/{name}.py" for name in FUNCTIONS]
    assert set(detected.values()) == {"@vercel/python"}
    assert sorted(build["functions"]) == sorted(detected)


def test_pins_match_what_vercel_python_installs(build):
    index = (builder.NODE_DIR / "node_modules" / "@vercel" / "python" / "dist" / "index.js").read_text()
    package = json.loads((builder.NODE_DIR / "node_modules" / "@vercel" / "python" / "package.json").read_text())
    assert package["version"] == builder.VERCEL_PYTHON_VERSION
    assert f'var VERCEL_RUNTIME_VERSION = "{builder.VERCEL_RUNTIME_VERSION}";' in index
    assert f'var UV_VERSION = "{builder.UV_VERSION}";' in index, "vercel.sh must install the uv @vercel/python pins"
    for function in build["functions"].values():
        vendor = Path(function["taskDir"]) / "_vendor"
        assert (vendor / f"vercel_runtime-{builder.VERCEL_RUNTIME_VERSION}.dist-info").is_dir()


def test_dependencies_come_from_pyproject_toml_and_are_all_there(build):
    discovery = build["discovery"]
    assert discovery["manifestPath"] == "pyproject.toml"
    assert discovery["convertedFrom"] is None, "Vercel converted another file instead of reading pyproject.toml"
    first_build = build["log"].split("::: building ")[1]
    assert "Installing required dependencies from pyproject.toml..." in first_build, first_build

    wanted = requirement_names(ROOT / "requirements.txt")  # the union of every function's requirements
    assert "cloudinary" in wanted, wanted
    manifest = build["packageManifest"]
    assert manifest is not None, "@vercel/python wrote no .vercel/python/package-manifest.json"
    direct = {dep["name"]: dep for dep in manifest["dependencies"]
              if dep["type"] == "direct" and "main" in dep["scopes"]}
    assert set(direct) == wanted, ("the runtime dependencies Vercel installs (pyproject.toml [project] "
                                   f"dependencies) differ from requirements.txt: {sorted(direct)} != {sorted(wanted)}")
    assert all(dep["resolved"] for dep in direct.values()), direct
    assert manifest["runtimeVersion"]["resolved"] == "3.12"
    for function in build["functions"].values():  # and the build put each of them into every bundle
        vendor = Path(function["taskDir"]) / "_vendor"
        bundled = {re.sub(r"[-_.]+", "-", info.name.split("-")[0]).lower() for info in vendor.glob("*.dist-info")}
        assert wanted <= bundled, f"{function['name']}: {sorted(wanted - bundled)} not in _vendor"


def test_each_lambda_is_the_trampoline_over_vc_init_with_vercel_json_settings(build):
    max_duration = json.loads((ROOT / "vercel.json").read_text())["functions"]["api/*.py"]["maxDuration"]
    for entrypoint, function in build["functions"].items():
        name = function["name"]
        task = Path(function["taskDir"])
        assert function["handler"] == "vc__handler__python.vc_handler"
        assert function["runtime"] == "python3.12"
        assert function["maxDuration"] == max_duration
        assert function["environment"]["PYTHONPATH"] == "_vendor"
        trampoline = (task / "vc__handler__python.py").read_text()
        assert f'"__VC_HANDLER_ENTRYPOINT": "{entrypoint}"' in trampoline
        assert f'"__VC_HANDLER_MODULE_NAME": "api.{name}"' in trampoline
        assert '"__VC_HANDLER_VARIABLE_NAME": "app"' in trampoline
        assert "from vercel_runtime.vc_init import vc_handler" in trampoline
        assert (task / "_vendor" / "cloudinary").is_dir()
        assert not (task / "tests").exists(), "vercel.json's excludeFiles no longer keeps tests/ out of the bundle"


# --- the functions, served by vc_init ------------------------------------------------------------------------

@pytest.mark.parametrize("name", FUNCTIONS)
def test_signed_notification_is_answered_200(functions, stand_in, name):
    body, status = sample_for(name)
    before = len(stand_in.calls)
    response = functions[name].request("POST", f"/api/{name}", body, notification_headers(body))
    assert response.status == 200, (response, functions[name].logs(response.invocation_id))
    answer = response.json()
    if status is not None:
        assert answer["status"] == status, answer
    else:
        assert answer["status"] in ("done", "dry_run", "ignored"), answer
    calls = stand_in.calls[before:]
    if name == "hello_tag":
        # The real Upload API call, made by the Cloudinary SDK that the build installed into _vendor.
        public_id = json.loads(body)["public_id"]
        assert [(call["method"], call["path"]) for call in calls] == [("POST", f"/v1_1/{CLOUD}/image/tags")]
        assert calls[0]["form"]["tag"] == ["Hello World!"]
        assert calls[0]["form"]["public_ids[]"] == [public_id]
        assert calls[0]["form"]["command"] == ["add"]
        assert answer["tag"] == "Hello World!"
        # vc_init instruments urllib3, which the SDK uses: Vercel's runtime saw the call too.
        fetches = [m["payload"]["payload"] for m in functions[name].messages(response.invocation_id)
                   if m["type"] == "metric" and m["payload"]["type"] == "fetch-metric"]
        assert [(f["method"], f["pathname"], f["statusCode"]) for f in fetches] == [
            ("POST", f"/v1_1/{CLOUD}/image/tags", 200)]
    elif name == "bg_removal_approval":
        # Its own URL, for the next notification, comes from the public host Vercel forwards.
        urls = [action.get("notification_url") for action in answer["actions"]]
        assert f"https://{launcher.PUBLIC_HOST}/api/{name}" in urls, answer
    else:
        assert all(call["method"] == "GET" for call in calls), f"a dry run wrote: {calls}"


@pytest.mark.parametrize("name", FUNCTIONS)
def test_forged_signature_is_401_and_calls_nothing(functions, stand_in, name):
    body, _ = sample_for(name)
    before = len(stand_in.calls)
    response = functions[name].request("POST", f"/api/{name}", body,
                                       notification_headers(body, secret="not-the-api-secret"))
    assert response.status == 401, response
    assert response.json()["error"]
    assert stand_in.calls[before:] == []


@pytest.mark.parametrize("name", FUNCTIONS)
def test_get_is_405_with_allow_post(functions, name):
    response = functions[name].request("GET", f"/api/{name}")
    assert response.status == 405, response
    assert response.headers["Allow"] == "POST"


def test_legacy_event_path_vc_handler_serves_hello_tag(functions, stand_in):
    """Without VERCEL_IPC_PATH, Lambda's own handler call: vc_handler(event, context) with a JSON event."""
    body = (ROOT / "functions" / "hello_tag" / "samples" / "upload.json").read_bytes()
    before = len(stand_in.calls)
    result = functions["hello_tag"].invoke_event("POST", "/api/hello_tag", body, notification_headers(body))
    assert result["statusCode"] == 200, result
    assert json.loads(result["body"])["status"] == "done"
    assert [call["path"] for call in stand_in.calls[before:]] == [f"/v1_1/{CLOUD}/image/tags"]


def test_vc_init_forwards_the_one_log_line_per_request_and_no_secret(functions):
    for name, running in functions.items():
        body, _ = sample_for(name)
        response = running.request("POST", f"/api/{name}", body, notification_headers(body))
        assert f'"function": "{name}"' in running.logs(response.invocation_id)
        kinds = [message["type"] for message in running.messages()]
        assert kinds[0] == "server-started"
        assert kinds.count("handler-started") == kinds.count("end") >= 1
        logs = running.logs()
        for secret in (SECRET, "SG.platform-test-key", "platform-test-aws-secret", SLACK_WEBHOOK_URL.rsplit("/")[-1]):
            assert secret not in logs + running.output(), f"{name} logged a secret"


def test_nothing_is_written_under_the_task_root(functions):
    """/var/task is read-only on Vercel: state belongs in DATABASE_URL's database (here in a scratch folder)."""
    for name, running in functions.items():
        assert running.written() == [], f"{name} wrote into its (on Vercel read-only) code folder"
