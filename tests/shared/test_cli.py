"""``python -m shared``: help, the local server (a real threaded server on a free port), send, check, new.

The demo signing secret is kept in tmp_path (``devtools.cli.DEMO_SECRET_FILE``) so no test writes into the
repository; ``new`` runs in a copy of the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devtools import cli, serving
from shared import config, verify

ROOT = Path(__file__).resolve().parent.parent.parent
SECRET_LOOKING = "sk_live_9f8e7d6c5b4a3210-DO-NOT-PRINT"


def run_cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    base_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"),
                "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "shared", *args], capture_output=True, text=True, cwd=cwd,
                          env={**base_env, **(env or {})}, timeout=timeout, check=False)


def subcommands() -> list[str]:
    parser = cli.build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return sorted(action.choices)
    raise AssertionError("no subcommands")


# --- help ----------------------------------------------------------------------------------------------

def test_help_explains_the_commands():
    completed = run_cli("--help")

    assert completed.returncode == 0, completed.stderr
    for command in ("serve", "send", "new", "check"):
        assert command in completed.stdout
    assert "demo mode" in completed.stdout


def test_the_four_documented_commands_exist():
    assert {"serve", "send", "new", "check"} <= set(subcommands())


@pytest.mark.parametrize("command", subcommands())
def test_each_subcommand_has_help(command):
    completed = run_cli(command, "--help")

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith(f"usage: python -m shared {command}")
    expected = {"serve": ["--host", "--port"], "send": ["--url", "--algorithm", "name"],
                "new": ["--from", "name"], "check": ["Never prints values"]}.get(command, [])
    for word in expected:
        assert word in completed.stdout


def test_no_command_is_a_usage_error():
    completed = run_cli()
    assert completed.returncode == 2 and "usage:" in completed.stderr


# --- demo mode -----------------------------------------------------------------------------------------

@pytest.fixture
def demo_secret_file(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "local" / "demo-signing-secret"
    monkeypatch.setattr(cli, "DEMO_SECRET_FILE", path)
    return path


@pytest.fixture
def demo_mode(demo_secret_file) -> Iterator[str]:
    """What `serve` does on a fresh clone: a generated local secret and dry runs where credentials lack."""
    names = ("CLOUDINARY_NOTIFICATION_SECRETS", config.DEMO_MODE_VAR)
    assert all(name not in os.environ for name in names)
    try:
        assert cli.enter_demo_mode_if_unconfigured() is True
        yield demo_secret_file.read_text().strip()
    finally:
        for name in names:  # enter_demo_mode sets os.environ directly; do not leak into other tests
            os.environ.pop(name, None)


def test_demo_mode_generates_a_private_secret_once(demo_mode, demo_secret_file):
    assert len(demo_mode) >= 24
    assert os.environ["CLOUDINARY_NOTIFICATION_SECRETS"] == demo_mode
    assert os.environ[config.DEMO_MODE_VAR] == "1"
    assert stat.S_IMODE(demo_secret_file.stat().st_mode) == 0o600
    assert cli.demo_secret(create=True) == demo_mode  # reused, not regenerated
    assert cli.signing_secret_for_send() == demo_mode


def test_demo_mode_stays_off_when_a_secret_is_configured(demo_secret_file, signing_secret):
    assert cli.enter_demo_mode_if_unconfigured() is False
    assert config.DEMO_MODE_VAR not in os.environ
    assert not demo_secret_file.exists()
    assert cli.signing_secret_for_send() == signing_secret


def test_demo_secret_is_not_created_when_not_asked(demo_secret_file):
    assert cli.demo_secret(create=False) is None
    assert not demo_secret_file.exists()


# --- the local server ----------------------------------------------------------------------------------

@pytest.fixture
def server(demo_mode) -> Iterator[tuple[str, int, list[str]]]:
    """The Router on the development server (devtools.serving) on a free port, in a background thread."""
    lines: list[str] = []
    httpd = serving.make_dev_server("127.0.0.1", 0, serving.Router(cli.function_names(), out=lines.append))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}", httpd.server_port, lines
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def fetch(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def send_args(name: str, port: int, sample: str | None = None, url: str | None = None,
              algorithm: str = "sha1") -> argparse.Namespace:
    return argparse.Namespace(name=name, sample=sample, url=url, port=port, algorithm=algorithm)


def printed_answer(output: str) -> tuple[str, dict]:
    """The status line and JSON body `send` prints."""
    status_line = next(line for line in output.splitlines() if line.startswith("-> "))
    return status_line, json.loads(output[output.index("{"):])


def test_send_eager_email_answers_dry_run_with_recipient_count_and_subject(server, capsys):
    _, port, lines = server

    assert cli.cmd_send(send_args("eager_email", port)) == 0

    output = capsys.readouterr().out
    status_line, body = printed_answer(output)
    assert status_line == "-> 200"
    assert f"POST http://127.0.0.1:{port}/api/eager_email  (eager.json" in output
    assert body["status"] == "dry_run"
    [action] = body["actions"]
    assert action["action"] == "send_email"
    assert action["recipients"] == 2  # the demo's two recipients
    assert action["subject"] == "Cloudinary: 1 derived version of webhooks/vase ready"
    assert len(lines) == 1 and "POST /api/eager_email  200 dry_run" in lines[0]


def test_send_hello_tag_answers_dry_run_with_the_tag(server, capsys):
    _, port, _ = server

    assert cli.cmd_send(send_args("hello_tag", port)) == 0

    status_line, body = printed_answer(capsys.readouterr().out)
    assert status_line == "-> 200"
    assert body == {"status": "dry_run", "tag": "Hello World!", "actions": [
        {"action": "add_tag", "public_id": "samples/hello/xsahlpu1dte4xjwvcf5k", "tag": "Hello World!"}]}


def test_send_to_the_netlify_route_with_sha256_and_a_named_sample(server, capsys):
    base, port, _ = server
    url = f"{base}/.netlify/functions/hello_tag"

    assert cli.cmd_send(send_args("hello_tag", port, sample="already_tagged", url=url, algorithm="sha256")) == 0

    output = capsys.readouterr().out
    assert "already_tagged.json" in output and "signed sha256" in output
    assert printed_answer(output)[1]["status"] == "ignored"


def test_post_signed_signs_exactly_what_it_sends(server, demo_mode):
    base, _, _ = server
    body = (ROOT / "functions" / "hello_tag" / "samples" / "upload.json").read_bytes()

    status, answer = cli.post_signed(f"{base}/api/hello_tag", body, demo_mode)
    assert status == 200 and json.loads(answer)["status"] == "dry_run"

    status, answer = cli.post_signed(f"{base}/api/hello_tag", body, "some-other-secret")
    assert status == 401 and json.loads(answer)["error"] == "signature_mismatch"


def test_a_non_200_answer_makes_send_exit_1(server, capsys, monkeypatch):
    _, port, _ = server
    monkeypatch.setattr(cli, "signing_secret_for_send", lambda: "wrong-secret")
    assert cli.cmd_send(send_args("hello_tag", port)) == 1
    assert printed_answer(capsys.readouterr().out)[0] == "-> 401"


def test_concurrent_requests_are_all_served(server, demo_mode):
    base, _, lines = server
    body = (ROOT / "functions" / "hello_tag" / "samples" / "upload.json").read_bytes()
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: cli.post_signed(f"{base}/api/hello_tag", body, demo_mode), range(16)))
    assert [status for status, _ in results] == [200] * 16
    assert len(lines) == 16


@pytest.mark.parametrize("route", ["/api/hello_tag", "/.netlify/functions/hello_tag",
                                   "/api/eager_email", "/.netlify/functions/eager_email"])
def test_get_is_405_with_allow_post(server, route):
    base, _, lines = server

    status, headers, body = fetch(base + route)

    assert status == 405
    assert headers["Allow"] == "POST"
    assert body["error"] == "method_not_allowed"
    assert lines == [lines[0]] and f"GET {route}  405 method_not_allowed" in lines[0]


@pytest.mark.parametrize(("method", "route"), [("POST", "/api/no_such_function"),
                                               ("GET", "/.netlify/functions/no_such_function"),
                                               ("POST", "/somewhere/else"), ("GET", "/api/"),
                                               ("POST", "/api/hello_tag/../eager_email")])
def test_unknown_function_is_404(server, method, route):
    base, _, _ = server
    status, _, body = fetch(base + route, method=method, body=b"{}" if method == "POST" else None)
    assert status == 404 and body["error"] == "not_found"


def test_root_lists_the_functions_and_their_urls(server):
    base, _, _ = server
    status, _, body = fetch(base + "/")
    assert status == 200
    assert body["functions"]["hello_tag"] == ["/.netlify/functions/hello_tag", "/api/hello_tag"]
    assert set(body["functions"]) == set(cli.function_names())


def test_send_without_a_server_says_how_to_start_one(demo_secret_file, capsys):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert cli.cmd_send(send_args("hello_tag", port)) == 2
    assert "python -m shared serve" in capsys.readouterr().err


def test_send_an_unknown_sample_lists_the_samples(demo_secret_file):
    with pytest.raises(SystemExit, match=r"Samples: .*upload"):
        cli.cmd_send(send_args("hello_tag", 1, sample="nope"))
    with pytest.raises(SystemExit, match="No function named"):
        cli.load_webhook("no_such_function")


def test_sample_path_prefers_a_sample_named_after_an_accepted_type():
    assert cli.sample_path("eager_email", None).name == "eager.json"
    assert cli.sample_path("hello_tag", None).name == "upload.json"
    assert cli.sample_path("hello_tag", "tags_changed").name == "tags_changed.json"


# --- check ---------------------------------------------------------------------------------------------

def required_and_optional() -> tuple[set[str], set[str]]:
    required, optional = set(), set()
    for name in cli.function_names():
        webhook = cli.load_webhook(name)
        required.update(webhook.requires)
        optional.update(webhook.optional)
    return required, optional


def test_check_with_nothing_set_exits_1_and_lists_what_is_missing(capsys):
    assert cli.main(["check"]) == 1
    output = capsys.readouterr().out
    assert "signing secret: MISSING" in output
    assert "SENDGRID_API_KEY" in output and "MISSING" in output
    for name in cli.function_names():
        assert f"\n{name}  (accepts:" in output


def test_check_never_prints_values_and_exits_0_when_everything_is_set(capsys, monkeypatch):
    required, optional = required_and_optional()
    values = {}
    for index, var in enumerate(sorted(required | optional)):
        values[var] = f"{SECRET_LOOKING}-{index}"
        monkeypatch.setenv(var, values[var])
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://614335564976464:{SECRET_LOOKING}@demo-cloud")
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", f"{SECRET_LOOKING}-old")

    assert cli.main(["check"]) == 0

    output = capsys.readouterr().out
    assert SECRET_LOOKING not in output and "614335564976464" not in output and "demo-cloud" not in output
    assert "signing secret: set (2 configured" in output
    assert "MISSING" not in output
    for var in required:
        assert var in output


def test_check_exits_1_when_one_required_variable_is_missing(capsys, monkeypatch):
    required, _ = required_and_optional()
    for var in required:
        monkeypatch.setenv(var, SECRET_LOOKING)
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", SECRET_LOOKING)
    monkeypatch.delenv("TO_RECIPIENTS")

    assert cli.main(["check"]) == 1

    output = capsys.readouterr().out
    assert SECRET_LOOKING not in output
    [line] = [line for line in output.splitlines() if "TO_RECIPIENTS" in line]
    assert "MISSING" in line and "required" in line


@pytest.mark.parametrize(("platform", "expected_exit"), [(None, 0), (("AWS_LAMBDA_FUNCTION_NAME", "f"), 1),
                                                         (("VERCEL", "1"), 1)])
def test_check_says_database_url_is_required_on_a_serverless_platform(platform, expected_exit, capsys, monkeypatch):
    required, _ = required_and_optional()
    for var in required:
        monkeypatch.setenv(var, SECRET_LOOKING)
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://614335564976464:{SECRET_LOOKING}@demo-cloud")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    if platform:
        monkeypatch.setenv(*platform)

    assert cli.main(["check"]) == expected_exit

    output = capsys.readouterr().out
    asset_sync = output[output.index("\nasset_sync  (accepts"):].split("\n\n")[0]
    [line] = [line for line in asset_sync.splitlines() if "DATABASE_URL" in line]
    assert "not set" in line and "REQUIRED on AWS Lambda" in line


@pytest.mark.parametrize(("environment", "expected", "exit_code"), [
    ({}, "idempotency store: SQLite file", 0),
    ({"AWS_LAMBDA_FUNCTION_NAME": "eager-email"}, "idempotency store: MISSING on AWS Lambda", 1),
    ({"VERCEL": "1", "IDEMPOTENCY_TABLE": "sent"}, "idempotency store: DynamoDB table $IDEMPOTENCY_TABLE", 0),
    ({"VERCEL": "1", "DATABASE_URL": "sqlite:///x.sqlite3"}, "idempotency store: UNUSABLE", 1),
])
def test_check_says_where_sent_emails_are_recorded(environment, expected, exit_code, capsys, monkeypatch):
    required, _ = required_and_optional()
    for var in required:
        monkeypatch.setenv(var, SECRET_LOOKING)
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://614335564976464:{SECRET_LOOKING}@demo-cloud")
    monkeypatch.setenv("TO_RECIPIENTS", "a@example.com")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    for name, value in environment.items():
        monkeypatch.setenv(name, value)

    code = cli.main(["check"])

    output = capsys.readouterr().out
    eager = output[output.index("\neager_email  (accepts"):].split("\n\n")[0]
    assert expected in eager, eager
    if exit_code:  # a store that cannot work fails the check, whatever else is set
        assert code == 1


def test_check_with_a_malformed_cloudinary_url_says_so_without_printing_it(capsys, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_URL", f"https://key:{SECRET_LOOKING}@cloud")

    assert cli.main(["check"]) == 1

    output = capsys.readouterr().out
    assert "CLOUDINARY_URL is malformed" in output and SECRET_LOOKING not in output


def test_check_in_a_fresh_interpreter_exits_1_without_printing_a_value():
    completed = run_cli("check", env={"SENDGRID_API_KEY": SECRET_LOOKING})
    assert completed.returncode == 1, completed.stderr
    assert SECRET_LOOKING not in completed.stdout + completed.stderr
    assert "SENDGRID_API_KEY" in completed.stdout


# --- new -----------------------------------------------------------------------------------------------

def copy_of_the_repository(target: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for folder in ("functions", "shared", "devtools", "tests", "deploy", "api"):
        if (ROOT / folder).is_dir():
            shutil.copytree(ROOT / folder, target / folder, ignore=ignore)
    for file in ("pyproject.toml", "requirements.txt", "netlify.toml", "vercel.json", "template.yaml"):
        if (ROOT / file).is_file():
            shutil.copy2(ROOT / file, target / file)
    return target


@pytest.mark.slow
def test_new_creates_a_function_whose_generated_test_passes(tmp_path):
    repo = copy_of_the_repository(tmp_path / "repo")

    completed = run_cli("new", "my_func", cwd=repo)

    assert completed.returncode == 0, completed.stderr
    assert "Created my_func:" in completed.stdout and "restart `make serve`" in completed.stdout
    folder = repo / "functions" / "my_func"
    handler, test_file = folder / "handler.py", repo / "tests" / "functions" / "test_my_func.py"
    for path in (handler, test_file, folder / "README.md", folder / "samples" / "upload.json",
                 folder / "requirements.txt", folder / "__init__.py"):
        assert path.is_file(), path
    source = handler.read_text()
    assert len(source.splitlines()) <= 40
    assert "MY_FUNC_TAG" in source and "My func" in source  # its own names, its own docstring
    for foreign in ("hello", "Hello World", "template to copy", "SHARED", "TESTS"):
        assert foreign not in source and foreign not in (folder / "README.md").read_text(), foreign
    assert "from functions.my_func.handler import handle" in test_file.read_text()
    assert not (ROOT / "functions" / "my_func").exists()  # the real repository is untouched

    linted = subprocess.run([str(Path(sys.executable).with_name("ruff")), "check", str(handler), str(test_file)],
                            capture_output=True, text=True, cwd=repo, check=False)
    assert linted.returncode == 0, linted.stdout
    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                            "tests/functions/test_my_func.py"], capture_output=True, text=True, cwd=repo,
                           env={"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1",
                                "HOME": os.environ.get("HOME", "/tmp")}, timeout=300, check=False)
    assert tests.returncode == 0, tests.stdout[-3000:] + tests.stderr[-2000:]
    assert "5 passed" in tests.stdout and "failed" not in tests.stdout and "skipped" not in tests.stdout


@pytest.mark.parametrize("tests_copied", [True, False])
def test_new_from_a_function_copies_it_and_its_tests_or_says_it_did_not(tmp_path, tests_copied):
    source = "hello_tag"
    repo = copy_of_the_repository(tmp_path / "repo")
    if not tests_copied:  # a function whose tests are not one tests/functions/test_<name>.py
        (repo / "tests" / "functions" / f"test_{source}.py").unlink()

    completed = run_cli("new", "my_copy", "--from", source, cwd=repo)

    assert completed.returncode == 0, completed.stderr
    assert f"Created my_copy from {source}:" in completed.stdout
    handler = (repo / "functions" / "my_copy" / "handler.py").read_text()
    assert source not in handler and "MY_COPY" in handler.upper()
    copied_test = repo / "tests" / "functions" / "test_my_copy.py"
    assert copied_test.is_file() == tests_copied
    assert ("none were copied" in completed.stdout) == (not tests_copied)


@pytest.mark.parametrize(("name", "message"), [("MyFunc", "snake_case"), ("1func", "snake_case"),
                                               ("my-func", "snake_case"), ("hello_tag", "already exists")])
def test_new_refuses_bad_or_taken_names_and_changes_nothing(tmp_path, name, message):
    repo = copy_of_the_repository(tmp_path / "repo")
    before = sorted(path.name for path in (repo / "functions").iterdir())

    completed = run_cli("new", name, cwd=repo)

    assert completed.returncode == 2 and message in completed.stderr  # a CLI error: one line, exit 2
    assert len(completed.stderr.splitlines()) == 1 and "Traceback" not in completed.stderr
    assert sorted(path.name for path in (repo / "functions").iterdir()) == before


def test_new_from_an_unknown_template(tmp_path):
    repo = copy_of_the_repository(tmp_path / "repo")
    completed = run_cli("new", "my_func", "--from", "nope", cwd=repo)
    assert completed.returncode == 2 and "No function 'nope' to copy" in completed.stderr
    assert not (repo / "functions" / "my_func").exists()


# --- the signature `send` makes is Cloudinary's -----------------------------------------------------------

def test_send_signs_the_file_bytes_as_cloudinary_does(tmp_path, monkeypatch):
    seen = {}

    def fake_post(url, body, secret, algorithm="sha1", timeout=25.0):
        seen.update(url=url, body=body, secret=secret, algorithm=algorithm)
        return 200, b'{"status": "done"}'

    monkeypatch.setattr(cli, "post_signed", fake_post)
    monkeypatch.setenv("CLOUDINARY_URL", "cloudinary://k:url-secret@c")
    sample = tmp_path / "custom.json"
    sample.write_bytes(b'{"notification_type": "upload",\n "public_id": "x"}')

    assert cli.cmd_send(send_args("hello_tag", 9999, sample=str(sample), url="https://example.test/hook")) == 0
    assert seen == {"url": "https://example.test/hook", "body": sample.read_bytes(), "secret": "url-secret",
                    "algorithm": "sha1"}
    headers = verify.signed_headers(seen["body"], "url-secret", timestamp=1)
    verify.verify(seen["body"], "1", headers["X-Cld-Signature"], ["url-secret"], now=1)


# --- serve + send, as a newcomer runs them, on a copy with no credentials --------------------------------

@pytest.mark.slow
def test_serve_and_send_on_a_fresh_copy_with_no_credentials(tmp_path):
    import queue

    repo = copy_of_the_repository(tmp_path / "repo")
    env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen([sys.executable, "-m", "shared", "serve", "--port", "0"], cwd=repo, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in server.stdout], daemon=True).start()
    try:
        banner = []
        while not banner or not banner[-1].startswith("Try:"):
            banner.append(lines.get(timeout=30).strip())
        text = "\n".join(banner)
        assert "DEMO MODE" in text, text
        port = text.split("Serving ", 1)[1].split("http://127.0.0.1:", 1)[1].split()[0]
        assert "hello_tag" in text and "(dry run: CLOUDINARY_URL not set)" in text

        completed = run_cli("send", "hello_tag", "--port", port, cwd=repo)

        assert completed.returncode == 0, completed.stdout + completed.stderr
        status_line, body = printed_answer(completed.stdout)
        assert status_line == "-> 200" and body["status"] == "dry_run" and body["tag"] == "Hello World!"
        request_line = ""
        while not request_line.strip():  # the banner ends with a blank line
            request_line = lines.get(timeout=10)
        assert "POST /api/hello_tag  200 dry_run" in request_line
        assert (repo / ".local" / "demo-signing-secret").is_file()  # in the copy, not the repository
    finally:
        server.terminate()
        server.wait(timeout=10)


# --- errors speak to a person: one line on stderr, exit status 2, no traceback (issue 12 item 13) -----------

def assert_one_line_error(completed: subprocess.CompletedProcess | tuple[int, str], *words: str) -> str:
    code, stderr = (completed.returncode, completed.stderr) if isinstance(completed, subprocess.CompletedProcess) \
        else completed
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("env", "suggestion"), [({}, "`python -m shared serve --port "),
                                                 ({"MAKELEVEL": "1"}, "`make serve PORT=")])
def test_serve_on_a_busy_port_says_so_and_what_to_type_instead(env, suggestion):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        completed = run_cli("serve", "--port", str(port), env=env)

    line = assert_one_line_error(completed, f"port {port} is in use", suggestion)
    suggested = int(line.split(suggestion, 1)[1].split("`")[0])
    assert suggested != port


@pytest.mark.parametrize("port", ["70000", "65536", "-1", "abc", "8888.5", "99999999999999999999", "\uff18"])
def test_serve_with_a_port_out_of_range_is_a_one_line_error(port):
    assert_one_line_error(run_cli("serve", "--port", port), "is not a port number (0 to 65535)")


@pytest.mark.parametrize("host", ["not a host", "999.1.1.1", "", "bad-.example", "host_name", "a" * 64 + ".example"])
def test_serve_with_something_that_is_not_a_host_is_refused_before_any_lookup(host):
    assert_one_line_error(run_cli("serve", "--host", host), "neither an IP address nor a host name")


def test_serve_on_an_address_of_another_machine_says_so():
    completed = run_cli("serve", "--host", "192.0.2.1", "--port", "0")  # TEST-NET-1: never this machine's
    assert_one_line_error(completed, "192.0.2.1 is not an address of this machine", "--host 127.0.0.1")


@pytest.mark.parametrize(("option", "value"), [("--read-timeout", "0"), ("--read-timeout", "-1"),
                                               ("--read-timeout", "nan"), ("--max-connections", "0"),
                                               ("--max-connections", "many")])
def test_serve_limits_must_be_positive(option, value):
    assert_one_line_error(run_cli("serve", option, value), option)


@pytest.mark.parametrize("arguments", [["serve", "--bogus"], ["send"], ["send", "hello_tag", "--algorithm", "md5"]])
def test_a_usage_error_is_one_line_pointing_to_help(arguments):
    assert_one_line_error(run_cli(*arguments), "python -m shared", "error:", "--help`)")


@pytest.fixture
def marker_file(tmp_path) -> Path:
    path = tmp_path / "private.txt"
    path.write_text("local-file-marker-3f9a\n")
    return path


@pytest.mark.parametrize("url", ["not-a-url", "FILE", "ftp://127.0.0.1/x", "data:,hello", "javascript:alert(1)",
                                 "http://", "https:///path", "http://127.0.0.1:99999/x", "http://[::1/x",
                                 "127.0.0.1:8888/api/hello_tag"])
def test_send_to_something_that_is_not_an_http_url_is_a_one_line_error(url, marker_file, demo_secret_file, capsys):
    if url == "FILE":
        url = marker_file.as_uri()

    code = cli.main(["send", "hello_tag", "--url", url])

    captured = capsys.readouterr()
    assert_one_line_error((code, captured.err), "--url")
    assert "local-file-marker-3f9a" not in captured.out + captured.err
    assert captured.out == ""


class CannedServer:
    """A local server answering every request with the same raw bytes, whatever they are."""

    def __init__(self, answer: bytes, path_answers: dict[str, bytes] | None = None) -> None:
        import socketserver

        canned, by_path = answer, path_answers or {}

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                request_line = self.rfile.readline().decode("latin-1")
                length = 0
                while (line := self.rfile.readline()) not in (b"\r\n", b"\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                self.rfile.read(length)
                path = request_line.split(" ")[1] if " " in request_line else "/"
                self.wfile.write(by_path.get(path, canned))

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> CannedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def http_answer(body: bytes, status: str = "200 OK", content_type: str = "application/json",
                extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n{extra}"
            "Connection: close\r\n\r\n").encode("latin-1") + body


def unsafe_in(text: str) -> list[str]:
    from tests.shared.test_serving import unsafe_characters  # the oracle, defined apart from the code

    return unsafe_characters(text)


@pytest.mark.parametrize("answer", [
    http_answer('{"status": "done", "public_id": "a\u0085b\u2028c\u2029d\u202ee\u009b31m\u007f"}'.encode()),
    http_answer(b'{"status": "done", "note": "\\u0085\\u2028\\u001b[2J\\r\\u202e"}'),
    http_answer(b'{"message": "\\ud800 lone surrogate"}'),
    http_answer(b"<html>\x1b[2J\r-> 200\n\xc2\x85forged\xe2\x80\xa8</html>", "502 Bad Gateway", "text/html"),
    http_answer(b"plain \x07\x08\x7f text", "200 OK", "text/plain"),
])
def test_send_prints_whatever_the_server_answers_escaped(answer, demo_secret_file, capsys):
    with CannedServer(answer) as server:
        cli.main(["send", "hello_tag", "--url", f"{server.url}/hook"])

    captured = capsys.readouterr()
    assert unsafe_in(captured.out + captured.err) == [], captured.out
    assert sum(line.startswith("-> ") for line in captured.out.splitlines()) == 1  # no forged status line


@pytest.mark.parametrize("raw", [b"HTTP/1.1 2\x1b[31m00 OK\r\n\r\n", b"\x1b[2J\xc2\x85garbage\r\n\r\n",
                                 b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort"])
def test_send_to_a_server_that_does_not_speak_http_is_a_one_line_error(raw, demo_secret_file, capsys):
    with CannedServer(raw) as server:
        code = cli.main(["send", "hello_tag", "--url", f"{server.url}/hook"])

    captured = capsys.readouterr()
    assert_one_line_error((code, captured.err), "Could not reach")
    assert unsafe_in(captured.err) == []


@pytest.mark.parametrize("location", ["/elsewhere", "FILE"])
def test_send_shows_a_redirect_instead_of_following_it(location, marker_file, demo_secret_file, capsys):
    # urllib would follow a 302 with a GET without the body: the answer shown would not be the POST's.
    with CannedServer(b"", {"/elsewhere": http_answer(b'{"status": "followed local-file-marker-3f9a"}')}) as server:
        target = marker_file.as_uri() if location == "FILE" else f"{server.url}{location}"
        with CannedServer(http_answer(b'{"error": "moved"}', "302 Found", extra=f"Location: {target}\r\n")) as hook:
            code = cli.main(["send", "hello_tag", "--url", f"{hook.url}/hook"])

    captured = capsys.readouterr()
    assert code == 1 and "-> 302" in captured.out
    assert "local-file-marker-3f9a" not in captured.out + captured.err


@pytest.mark.parametrize(("sample", "words"), [("./nope.json", ["file not found"]),
                                               ("no/such/file.json", ["file not found"]),
                                               ("~/no-such-sample.json", ["file not found"]),
                                               ("nope", ["file not found", "Samples:", "upload"]),
                                               ("nope.json", ["file not found", "Samples:"])])
def test_send_a_missing_sample_file_says_file_not_found(sample, words, demo_secret_file, capsys):
    code = cli.main(["send", "hello_tag", sample])
    assert_one_line_error((code, capsys.readouterr().err), *words)


def test_send_a_folder_as_the_sample_says_so(tmp_path, demo_secret_file, capsys):
    code = cli.main(["send", "hello_tag", str(tmp_path)])
    assert_one_line_error((code, capsys.readouterr().err), "is a folder")


def test_send_to_an_unknown_function_lists_the_functions(demo_secret_file, capsys):
    code = cli.main(["send", "no_such_function", "upload"])
    assert_one_line_error((code, capsys.readouterr().err), "No function named", "hello_tag")


# --- make -----------------------------------------------------------------------------------------------

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@needs_make
def test_make_help_lists_the_targets():
    completed = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, timeout=30,
                               check=False)
    assert completed.returncode == 0, completed.stderr
    for target in ("serve", "test", "bench", "lint", "help"):
        assert f"make {target} " in completed.stdout
    assert "PORT=" in completed.stdout


@needs_make
@pytest.mark.parametrize(("arguments", "env", "expected"), [
    ([], {}, "--host '127.0.0.1' --port '8888'"),
    (["PORT=8899"], {}, "--host '127.0.0.1' --port '8899'"),
    (["PORT=8899", "HOST=0.0.0.0"], {}, "--host '0.0.0.0' --port '8899'"),
    ([], {"PORT": "1234"}, "--port '8888'"),  # a PORT left in the environment does not move the server
])
def test_make_serve_passes_port_and_host(arguments, env, expected):
    completed = subprocess.run(["make", "-n", "serve", *arguments], cwd=ROOT, capture_output=True, text=True,
                               timeout=30, check=False, env={"PATH": os.environ.get("PATH", ""), **env})
    assert completed.returncode == 0, completed.stderr
    assert "scripts/serve.sh" in completed.stdout and expected in completed.stdout
