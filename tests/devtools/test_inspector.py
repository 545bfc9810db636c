"""The inspector of `serve` (devtools/inspector.py) on the development server, over loopback sockets: what it
records of each notification, its pages (escaped, whatever a payload holds), the replay (re-signed, CSRF-safe),
loopback only, bounded storage, and `listen`'s messages through ``record_poll_message``. The same pages in a real
browser: tests/platform/browser."""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import stat
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest

from devtools import cli, inspector, serving
from shared import config, verify
from shared.events import Response
from tests.helpers import ROOT, SECRET

SAMPLE = (ROOT / "functions" / "hello_tag" / "samples" / "upload.json").read_bytes()
HOSTILE_IDS = ['<script>alert("pwned")</script>', '"><img src=x onerror=alert(1)>', "</pre><b>bold</b>",
               "'onmouseover='alert(1)", "rtl\u202eevil\x1b[2J\x00"]


@dataclass
class Served:
    port: int
    lines: list[str]
    router: serving.Router
    store: inspector.Store

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
                host: str | None = None) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            connection.putheader("Host", host if host is not None else f"127.0.0.1:{self.port}")
            for name, value in (headers or {}).items():
                connection.putheader(name, value)
            if body is not None:
                connection.putheader("Content-Length", str(len(body)))
            connection.endheaders(body)
            answer = connection.getresponse()
            return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        finally:
            connection.close()

    def page(self, path: str = "/") -> str:
        status, headers, body = self.request("GET", path, headers={"Accept": "text/html,*/*;q=0.8"})
        assert status == 200, body
        assert headers["content-type"] == "text/html; charset=utf-8"
        return body.decode()

    def send(self, payload: bytes = SAMPLE, function: str = "hello_tag", secret: str = SECRET,
             headers: dict[str, str] | None = None) -> tuple[int, dict]:
        signed = verify.signed_headers(payload, secret)
        status, _, body = self.request("POST", f"/api/{function}", payload, {**signed, **(headers or {})})
        return status, json.loads(body)


@pytest.fixture
def served(monkeypatch, tmp_path) -> Iterator[Served]:
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", SECRET)
    monkeypatch.setenv(config.DEMO_MODE_VAR, "1")
    store = inspector.Store(tmp_path / "inspector.sqlite3")
    lines: list[str] = []
    router = serving.Router(cli.function_names(), out=lines.append,
                            inspector=inspector.Inspector(store, sign=lambda body: verify.signed_headers(body, SECRET)))
    server = serving.make_dev_server("127.0.0.1", 0, router)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield Served(server.server_port, lines, router, store)
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def with_public_id(public_id: str) -> bytes:
    payload = json.loads(SAMPLE)
    payload["public_id"] = public_id
    return json.dumps(payload).encode()


def token_of(page: str) -> str:
    return re.search(r'name="token" value="([^"]+)"', page).group(1)


def replay(served: Served, entry: int, function: str, token: str, headers: dict[str, str] | None = None):
    form = urlencode({"token": token, "entry": str(entry), "function": function}).encode()
    return served.request("POST", "/inspector/replay", form,
                          {"Content-Type": "application/x-www-form-urlencoded", **(headers or {})})


# --- what is recorded -------------------------------------------------------------------------------------

def test_a_signed_notification_is_recorded_with_its_verdict_outcome_and_actions(served):
    status, answer = served.send()
    assert status == 200 and answer["status"] == "dry_run"

    [entry] = served.store.latest()
    assert (entry["source"], entry["function"], entry["method"], entry["path"]) == (
        "http", "hello_tag", "POST", "/api/hello_tag")
    assert (entry["notification_type"], entry["public_id"]) == ("upload", json.loads(SAMPLE)["public_id"])
    assert (entry["verdict"], entry["outcome"], entry["status"]) == ("valid", "dry_run", 200)
    assert json.loads(entry["actions"])[0]["action"] == "add_tag" and entry["ms"] >= 0
    assert bytes(entry["body"]) == SAMPLE and entry["body_size"] == len(SAMPLE)  # byte-exact, as signed
    assert json.loads(entry["answer"]) == answer


def test_signature_headers_are_kept_as_a_short_prefix_only(served):
    served.send(headers={"Authorization": "Bearer top-secret", "Cookie": "session=abc"})
    signature = verify.signed_headers(SAMPLE, SECRET)["X-Cld-Signature"]  # the same second, most likely

    headers = dict(json.loads(served.store.latest()[0]["headers"]))

    assert headers["X-Cld-Signature"].startswith(headers["X-Cld-Signature"][:8] + "… (40 characters")
    assert signature[8:] not in json.dumps(headers)
    assert headers["Authorization"] == headers["Cookie"] == "(not kept)"
    assert headers["X-Cld-Timestamp"].isdigit() and headers["Content-Type"] == "application/json"


@pytest.mark.parametrize(("secret", "extra", "verdict", "detail", "status"), [
    ("wrong-secret", {}, "invalid", "signature_mismatch", 401),
    (SECRET, {"X-Cld-Timestamp": "1"}, "invalid", "stale_timestamp", 401),
    (SECRET, {"Content-Type": "text/plain"}, "valid", "", 415),  # refused for its type, but signed
])
def test_the_verdict_is_the_signature_checked_again(served, secret, extra, verdict, detail, status):
    code, _ = served.send(secret=secret, headers=extra)

    [entry] = served.store.latest()
    assert code == status == entry["status"]
    assert (entry["verdict"], entry["verdict_detail"]) == (verdict, detail)


def test_an_unsigned_request_and_one_with_no_secret(served, monkeypatch):
    served.request("POST", "/api/hello_tag", SAMPLE, {"Content-Type": "application/json"})
    monkeypatch.delenv("CLOUDINARY_NOTIFICATION_SECRETS")
    served.send()

    unsigned, no_secret = reversed(served.store.latest())
    assert (unsigned["verdict"], unsigned["verdict_detail"], unsigned["status"]) == (
        "invalid", "missing_timestamp", 401)
    assert (no_secret["verdict"], no_secret["status"]) == ("no secret", 500)


def test_only_requests_to_functions_are_recorded_and_pages_print_no_line(served):
    served.request("GET", "/api/hello_tag")  # 405, a browser poking: not a notification
    served.request("POST", "/api/no_such_function", b"{}")
    served.page("/")
    served.request("GET", "/inspector/latest")
    assert served.store.latest() == []
    assert len(served.lines) == 2 and all("/api/" in line for line in served.lines)


# --- the pages --------------------------------------------------------------------------------------------

def test_get_slash_is_html_for_a_browser_and_the_list_of_functions_for_json_clients(served):
    served.send()
    for accept in (None, "application/json", "*/*"):
        status, headers, body = served.request("GET", "/", headers={"Accept": accept} if accept else {})
        assert status == 200 and headers["content-type"].startswith("application/json")
        assert json.loads(body)["functions"]["hello_tag"] == ["/.netlify/functions/hello_tag", "/api/hello_tag"]

    page = served.page("/")
    assert '<table id="entries" data-latest="1">' in page
    assert 'id="entry-1"' in page and "hello_tag" in page and "dry_run" in page and "add_tag" in page
    status, headers, body = served.request("HEAD", "/", headers={"Accept": "text/html"})
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0


def test_pages_carry_a_strict_content_security_policy_and_only_their_own_script(served):
    served.send(with_public_id(HOSTILE_IDS[0]))
    _, headers, body = served.request("GET", "/", headers={"Accept": "text/html"})
    page = body.decode()
    nonce = re.search(r"script-src 'nonce-([^']+)'", headers["content-security-policy"]).group(1)
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "form-action 'self'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-store"
    assert page.count("<script") == 1 and f'<script nonce="{nonce}">' in page


@pytest.mark.parametrize("public_id", HOSTILE_IDS)
def test_hostile_public_ids_are_escaped_in_the_list_and_the_entry(served, public_id):
    body = with_public_id(public_id)
    served.send(body)

    listing, entry = served.page("/"), served.page("/inspector/entries/1")

    for page in (listing, entry):
        assert public_id not in page
        assert page.count("<script") == 1 and "<img" not in page and "<b>" not in page
        assert "\u202e" not in page and "\x1b" not in page and "\x00" not in page
    shown = inspector.e(public_id)
    assert f'<td class="public-id">{shown}</td>' in listing
    assert f'<td class="public-id">{shown}</td>' in entry
    raw = re.search(r'<pre id="raw-body">(.*?)</pre>', entry, re.S).group(1)
    assert raw == inspector._block(body.decode())


def test_an_entry_page_shows_the_raw_body_headers_and_answer(served):
    served.send()

    page = served.page("/inspector/entries/1")

    raw = re.search(r'<pre id="raw-body">(.*?)</pre>', page, re.S).group(1)
    assert raw == inspector._block(SAMPLE.decode())  # as received, not re-serialised
    headers = re.search(r'<pre id="raw-headers">(.*?)</pre>', page, re.S).group(1)
    assert "X-Cld-Timestamp: " in headers and "X-Cld-Signature: " in headers and "(40 characters" in headers
    assert "&quot;dry_run&quot;" in re.search(r'<pre id="raw-answer">(.*?)</pre>', page, re.S).group(1)
    assert '<option value="hello_tag" selected>hello_tag</option>' in page


@pytest.mark.parametrize("path", ["/inspector/entries/999", "/inspector/entries/x", "/inspector/entries/-1",
                                  "/inspector/nothing"])
def test_unknown_entries_are_404(served, path):
    status, headers, _ = served.request("GET", path, headers={"Accept": "text/html"})
    assert status == 404 and headers["content-type"].startswith("text/html")


def test_latest_says_the_newest_entry_for_the_page_to_refresh(served):
    assert json.loads(served.request("GET", "/inspector/latest")[2]) == {"latest": 0}
    served.send()
    served.send()
    assert json.loads(served.request("GET", "/inspector/latest")[2]) == {"latest": 2}


# --- loopback only ----------------------------------------------------------------------------------------

def call(router: serving.Router, path: str, remote: str, host: str, accept: str = "text/html", method: str = "GET"):
    seen = {}
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "REMOTE_ADDR": remote, "HTTP_HOST": host,
               "HTTP_ACCEPT": accept, "wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": "0"}
    body = b"".join(router(environ, lambda status, headers, exc_info=None: seen.update(status=status,
                                                                                      headers=dict(headers))))
    return seen["status"], seen["headers"], body


@pytest.mark.parametrize(("remote", "host"), [
    ("192.168.1.20", "192.168.1.5:8888"),  # another machine on the network
    ("10.0.0.7", "127.0.0.1:8888"),  # another machine naming loopback
    ("127.0.0.1", "attacker.example:8888"),  # a DNS-rebound page in this machine's browser
    ("127.0.0.1", "127.0.0.1.attacker.example"),
    ("127.0.0.1", ""),  # no Host at all
    ("::ffff:192.168.1.20", "[::1]:8888"),
])
def test_the_inspector_answers_this_machine_only(served, remote, host):
    served.send()
    status, headers, body = call(served.router, "/inspector/entries/1", remote, host)
    assert status.startswith("403") and b"this machine" in body
    status, _, _ = call(served.router, "/inspector/replay", remote, host, method="POST")
    assert status.startswith("403")
    status, headers, body = call(served.router, "/", remote, host)  # a browser elsewhere: the list of functions
    assert status.startswith("200") and headers["Content-Type"].startswith("application/json")
    assert "functions" in json.loads(body)


@pytest.mark.parametrize(("remote", "host"), [("127.0.0.1", "127.0.0.1:8888"), ("127.0.0.1", "localhost:8888"),
                                              ("::1", "[::1]:8888"), ("::ffff:127.0.0.1", "localhost"),
                                              ("127.0.0.2", "127.0.0.1")])
def test_loopback_clients_naming_this_machine_get_the_pages(served, remote, host):
    status, headers, _ = call(served.router, "/", remote, host)
    assert status.startswith("200") and headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(("host", "words"), [("127.0.0.1", "http://127.0.0.1:8888/"),
                                             ("0.0.0.0", "http://127.0.0.1:8888/"),  # noqa: S104 - a host typed
                                             ("::", "http://[::1]:8888/"), ("::1", "http://[::1]:8888/"),
                                             ("localhost", "http://localhost:8888/"),
                                             ("192.168.1.5", "not reachable")])
def test_serve_says_where_the_inspector_is(host, words):
    assert words in cli._inspector_line(host, 8888)


# --- replay -----------------------------------------------------------------------------------------------

def test_replay_re_signs_the_body_and_sends_it_to_another_function(served):
    served.send(secret="an-old-secret")  # refused: signed with a secret rotated away
    token = token_of(served.page("/inspector/entries/1"))

    status, headers, _ = replay(served, 1, "asset_sync", token)

    assert status == 303 and headers["location"] == "/#entry-2"
    replayed = served.store.get(2)
    assert (replayed["source"], replayed["replay_of"], replayed["function"]) == ("replay", 1, "asset_sync")
    assert (replayed["verdict"], replayed["status"]) == ("valid", 200)
    assert bytes(replayed["body"]) == SAMPLE  # the same bytes, a new signature
    assert any("POST /api/asset_sync  200" in line for line in served.lines)
    page = served.page("/")
    assert 'id="entry-2" class="entry replay"' in page
    assert 'replay of <a href="/inspector/entries/1">#1</a>' in served.page("/inspector/entries/2")


@pytest.mark.parametrize(("change", "status"), [
    ({"token": "forged"}, 403), ({"token": ""}, 403), ({"function": "no_such_function"}, 400),
    ({"entry": "999"}, 404), ({"entry": "x"}, 404),
    ({"headers": {"Origin": "http://attacker.example"}}, 403),
    ({"headers": {"Content-Type": "application/json"}}, 415),
])
def test_a_replay_without_the_page_token_or_from_elsewhere_is_refused(served, change, status):
    served.send()
    token = token_of(served.page("/inspector/entries/1"))
    fields = {"token": token, "entry": "1", "function": "hello_tag", **{k: v for k, v in change.items()
                                                                       if k != "headers"}}
    form = urlencode(fields).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", **change.get("headers", {})}

    code, _, _ = served.request("POST", "/inspector/replay", form, headers)

    assert code == status
    assert [entry["id"] for entry in served.store.latest()] == [1]


def test_a_replay_from_the_inspectors_own_origin_is_accepted(served):
    served.send()
    token = token_of(served.page("/inspector/entries/1"))
    status, _, _ = replay(served, 1, "hello_tag", token, {"Origin": f"http://127.0.0.1:{served.port}"})
    assert status == 303 and served.store.get(2)["replay_of"] == 1


def test_replay_is_post_only_and_the_token_is_per_server(served, tmp_path):
    served.send()
    assert served.request("GET", "/inspector/replay")[0] == 405
    other = inspector.Inspector(inspector.Store(tmp_path / "other.sqlite3"))
    assert other.token != served.router.inspector.token
    assert replay(served, 1, "hello_tag", other.token)[0] == 403


def test_a_body_kept_cut_is_not_replayed(served, monkeypatch):
    monkeypatch.setattr(inspector, "MAX_BODY_BYTES", 100)
    served.send()
    entry = served.store.get(1)
    assert len(entry["body"]) == 100 and entry["body_size"] == len(SAMPLE) and entry["verdict"] == "valid"
    page = served.page("/inspector/entries/1")
    assert "cannot be replayed" in page and "replay-form" not in page
    assert replay(served, 1, "hello_tag", served.router.inspector.token)[0] == 409


# --- bounded storage, listen's messages, never in the way --------------------------------------------------

def test_the_store_keeps_the_newest_entries_in_a_private_file(tmp_path):
    store = inspector.Store(tmp_path / "deep" / "inspector.sqlite3", max_entries=5)
    for number in range(8):
        inspector.record(function="hello_tag", body=b"{}", headers=[], status=200, answer=b"{}", ms=number,
                         store=store)
    assert [entry["ms"] for entry in store.latest()] == [7.0, 6.0, 5.0, 4.0, 3.0]
    assert stat.S_IMODE((tmp_path / "deep" / "inspector.sqlite3").stat().st_mode) == 0o600


def test_recording_only_queues_and_one_writer_inserts_in_batches(tmp_path):
    store = inspector.Store(tmp_path / "inspector.sqlite3", max_entries=5)
    for number in range(20):
        assert inspector.record(function="hello_tag", body=b"{}", headers=[], status=200, answer=b"{}", ms=number,
                                store=store) is None  # queued: no id, no wait
    assert store.flush()
    assert [entry["ms"] for entry in store.latest()] == [19.0, 18.0, 17.0, 16.0, 15.0]
    assert store.dropped == 0 and sum(thread.name == "inspector-writer" for thread in threading.enumerate()) >= 1
    new_id = inspector.record(function="hello_tag", body=b"{}", headers=[], status=200, answer=b"{}", ms=1,
                              store=store, wait=True)
    assert new_id == 21 and store.newest_id() == 21


def test_a_full_queue_drops_its_oldest_entry_instead_of_making_a_request_wait(tmp_path):
    store = inspector.Store(tmp_path / "inspector.sqlite3", queue_limit=3)
    with store._changed:  # the writer cannot take anything while this is held: every add must still return
        for number in range(5):
            inspector.record(function="f", body=b"{}", headers=[], status=200, answer=b"{}", ms=number, store=store)
        assert store.dropped == 2 and len(store._pending) == 3
    assert store.flush()
    assert [entry["ms"] for entry in store.latest()] == [4.0, 3.0, 2.0]


def test_a_big_answer_is_kept_cut(tmp_path):
    store = inspector.Store(tmp_path / "inspector.sqlite3")
    inspector.record(function="f", body=b"x" * (inspector.MAX_BODY_BYTES * 3), headers=[("X-Big", "v" * 5000)],
                     status=200, answer=b"a" * (inspector.MAX_ANSWER_BYTES * 3), ms=1, store=store)
    [entry] = store.latest()
    assert len(entry["body"]) == inspector.MAX_BODY_BYTES and entry["body_size"] == inspector.MAX_BODY_BYTES * 3
    assert len(entry["answer"]) == inspector.MAX_ANSWER_BYTES
    assert len(dict(json.loads(entry["headers"]))["X-Big"]) == inspector.MAX_HEADER_CHARS


def test_listens_messages_are_recorded_from_their_signed_bytes(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_NOTIFICATION_SECRETS", SECRET)
    monkeypatch.setenv(inspector.PATH_VARIABLE, str(tmp_path / "shared.sqlite3"))
    timestamp = int(time.time())
    message = {"receipt_handle": "rh-1", "batch_id": "b-1", "payload": {"notification_type": "forged"},
               "signed_payload": base64.urlsafe_b64encode(SAMPLE).decode().rstrip("="),
               "timestamp": timestamp, "signature": verify.sign(SAMPLE, timestamp, SECRET)}

    inspector.record_poll_message("hello_tag", message, Response(200, {"status": "done", "actions": [
        {"action": "add_tag"}]}), 12.5)
    inspector.record_poll_message("hello_tag", {"signed_payload": "%%%"}, None, 1.0)

    malformed, entry = inspector.default_store().latest()
    assert (entry["source"], entry["method"], entry["path"]) == ("listen", "POLL", "poll://hello_tag")
    assert (entry["notification_type"], entry["verdict"], entry["status"], entry["outcome"]) == (
        "upload", "valid", 200, "done")  # the signed bytes, not the payload field
    assert bytes(entry["body"]) == SAMPLE and entry["ms"] == 12.5
    assert (malformed["status"], malformed["outcome"], malformed["verdict"]) == (400, "malformed_message", "invalid")


def test_a_recording_failure_never_changes_the_answer(served, tmp_path, caplog):
    served.store.path = tmp_path  # a folder: SQLite cannot open it
    served.store._ready = True

    status, answer = served.send()
    served.store.flush()  # the writer thread tried, and failed, after the answer was sent

    assert status == 200 and answer["status"] == "dry_run"
    assert "could not record" in caplog.text
    status, _, body = served.request("GET", "/", headers={"Accept": "text/html"})
    assert status == 503 and b"cannot be read" in body


def test_no_deployed_code_imports_the_inspector():
    """Development tooling only: a function's handler (what Lambda and Vercel run) never loads it."""
    import subprocess
    import sys

    code = ("import sys, pathlib\n"
            "for handler in sorted(pathlib.Path('functions').glob('*/handler.py')):\n"
            "    __import__(f'functions.{handler.parent.name}.handler')\n"
            "print(sorted(name for name in sys.modules if name.startswith('devtools')))")
    completed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                               timeout=120)
    assert completed.stdout.strip() == "[]"
