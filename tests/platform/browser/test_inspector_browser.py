"""The inspector of `python -m shared serve` in a real headless browser: Debian's Chromium driven by Playwright's
driver (both installed by scripts/platform/browser.sh, which `make test` runs before pytest; nothing is downloaded
here). `serve` runs as a person starts it, on a free port; three notifications arrive (one signed, one with a bad
signature, one signed with a hostile public_id); the browser reads the list, opens an entry with one click, replays
it to another function, and sees a new notification appear by itself. A missing tool is a failure naming the
script, never a skip."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shared import verify
from tests.helpers import ROOT, SECRET

pytestmark = pytest.mark.platform

HERE = Path(__file__).resolve().parent
SCRIPT = ROOT / "scripts" / "platform" / "browser.sh"
MODULES = ROOT / ".cache" / "platform" / "browser" / "node_modules"
CHROMIUM = Path("/usr/bin/chromium")
SAMPLE = json.loads((ROOT / "functions" / "hello_tag" / "samples" / "upload.json").read_text())
HOSTILE_ID = """<img src=x onerror="window.__pwned=1;alert(1)"><script>window.__pwned=2</script>"'&amp;"""


def _missing(what: str) -> None:
    pytest.fail(f"{what}: run `bash {SCRIPT.relative_to(ROOT)}` (`make test` runs it before pytest, so that the "
                "tests themselves stay offline).", pytrace=False)


@pytest.fixture(scope="module")
def node() -> str:
    if not CHROMIUM.exists():
        _missing(f"No Chromium at {CHROMIUM}")
    binary = shutil.which("node")
    if binary is None:
        _missing("No node on PATH")
    if not ((MODULES / "playwright-core").is_dir() and (MODULES.parent / ".stamp").exists()):
        _missing(f"No playwright-core in {MODULES.relative_to(ROOT)}")
    pin = json.loads((HERE / "package.json").read_text())["dependencies"]["playwright-core"]
    installed = json.loads((MODULES / "playwright-core" / "package.json").read_text())["version"]
    if installed != pin:
        _missing(f"{MODULES.relative_to(ROOT)} holds playwright-core {installed}, not the pin {pin}")
    return binary


@pytest.fixture
def serve(tmp_path):
    """`python -m shared serve --port 0` in its own process, its inspector store in tmp_path."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "CLOUDINARY_NOTIFICATION_SECRETS": SECRET,
           "CLOUDINARY_WEBHOOKS_DEMO": "1", "INSPECTOR_DB": str(tmp_path / "inspector.sqlite3")}
    server = subprocess.Popen([sys.executable, "-m", "shared", "serve", "--port", "0"], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    threading.Thread(target=lambda: output.extend(server.stdout), daemon=True).start()
    try:
        deadline = time.monotonic() + 60
        while not any(line.startswith("Inspector: ") for line in output):
            assert server.poll() is None and time.monotonic() < deadline, "".join(output)
            time.sleep(0.05)
        banner = next(line for line in output if line.startswith("Serving "))
        yield banner.rsplit(" ", 1)[1].strip(), output
    finally:
        server.terminate()
        server.wait(timeout=10)


def post(base: str, function: str, payload: dict, secret: str = SECRET) -> int:
    body = json.dumps(payload).encode()
    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
    try:
        connection.request("POST", f"/api/{function}", body, verify.signed_headers(body, secret))
        return connection.getresponse().status
    finally:
        connection.close()


def test_the_inspector_in_a_real_browser(node, serve):
    base, output = serve
    assert post(base, "hello_tag", SAMPLE) == 200  # entry 1
    assert post(base, "hello_tag", {**SAMPLE, "public_id": "forged/one"}, secret="not-the-secret") == 401  # 2
    assert post(base, "hello_tag", {**SAMPLE, "public_id": HOSTILE_ID}) == 200  # 3
    fresh = json.dumps({**SAMPLE, "public_id": "arrived/while-watching"})
    plan = {"secret": SECRET, "open": 1, "replay_to": "eager_email", "hostile": 3,
            "fresh": {"function": "hello_tag", "body": fresh}}

    started = time.monotonic()
    completed = subprocess.run([node, str(HERE / "inspector.mjs"), str(MODULES), base], input=json.dumps(plan),
                               capture_output=True, text=True, timeout=180, cwd=ROOT, check=False)
    seconds = time.monotonic() - started
    assert completed.returncode == 0, f"the browser run failed:\n{completed.stderr[-4000:]}\n{''.join(output)}"
    seen = json.loads(completed.stdout)
    print(f"playwright-core {seen['version']}, Chromium: {seconds:.1f} s")

    # The list: newest first, each with its verdict.
    assert seen["title"].startswith("Inspector")
    hostile, forged, valid = seen["rows"]
    assert (valid["id"], valid["function"], valid["type"], valid["public_id"]) == (
        "entry-1", "hello_tag", "upload", SAMPLE["public_id"])
    assert (valid["signature"], valid["outcome"], valid["status"], valid["actions"], valid["via"]) == (
        "valid", "dry_run", "200", "add_tag", "http")
    assert (forged["id"], forged["public_id"], forged["signature"], forged["outcome"], forged["status"]) == (
        "entry-2", "forged/one", "invalid (signature_mismatch)", "signature_mismatch", "401")
    assert (hostile["id"], hostile["public_id"], hostile["signature"]) == ("entry-3", HOSTILE_ID, "valid")

    # One click: the raw body as received, the headers with the signature cut to a prefix.
    assert seen["detail"]["url"] == f"{base}/inspector/entries/1"
    assert seen["detail"]["body"] == json.dumps(SAMPLE)
    assert "X-Cld-Signature: " in seen["detail"]["headers"] and "(40 characters" in seen["detail"]["headers"]

    # Replay to another function: a new entry, signed again (valid), from the replay.
    row = seen["replayed"]["row"]
    assert seen["replayed"]["url"] == f"{base}/#{row['id']}" and row["id"] == "entry-4"
    assert (row["function"], row["via"], row["signature"], row["status"], row["outcome"]) == (
        "eager_email", "replay", "valid", "200", "ignored")

    # A hostile payload is text, never markup: no dialog, no script of its own, no image.
    assert seen["hostile"]["public_id"] == HOSTILE_ID and json.dumps(HOSTILE_ID) in seen["hostile"]["body"]
    assert (seen["hostile"]["images"], seen["hostile"]["scripts"], seen["hostile"]["pwned"]) == (0, 1, None)
    assert seen["dialogs"] == [] and seen["pwned"] is None

    # The open list refreshed itself when a notification arrived.
    assert seen["fresh_status"] == 200
    assert (seen["refreshed"]["public_id"], seen["refreshed"]["function"]) == ("arrived/while-watching", "hello_tag")
    assert seen["errors"] == []  # no script error, no Content-Security-Policy violation
