"""video_moderation's samples: real-shaped, and `python -m shared send video_moderation <sample>` works
against the local server in demo mode (no Cloudinary account: the function plans, calls nothing)."""

from __future__ import annotations

import json
import threading
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest

from devtools import cli
from functions.video_moderation.moderation import google_status, video_named_by
from tests.helpers import ROOT

SAMPLES = ROOT / "functions" / "video_moderation" / "samples"
EXPECTED = {
    "moderation_approved": ("moderation", "approved", "dry_run", ["check_status", "publish"]),
    "moderation_approved_authenticated": ("moderation", "approved", "dry_run", ["check_status", "publish"]),
    "moderation_rejected": ("moderation", "rejected", "dry_run", ["check_status", "delete"]),
    "moderation_pending": ("moderation", "pending", "ignored", None),
    "upload_approved": ("upload", "approved", "dry_run", ["check_status", "publish"]),
    "upload_rejected": ("upload", "rejected", "dry_run", ["check_status", "delete"]),
    "upload_pending": ("upload", "pending", "ignored", None),
}


def test_every_sample_is_listed_here():
    assert sorted(path.stem for path in SAMPLES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_shape(name):
    payload = json.loads((SAMPLES / f"{name}.json").read_text())
    notification_type, status, _, _ = EXPECTED[name]

    assert payload["notification_type"] == notification_type
    assert google_status(payload) == status
    where = video_named_by(payload)
    # moderation notifications carry no type: the URL tells (.../video/authenticated/s--sig--/v1/...)
    expected_type = "authenticated" if name.endswith("_authenticated") else "upload"
    assert (where.resource_type, where.delivery_type) == ("video", expected_type)
    if notification_type == "upload":
        assert payload["access_control"] == [{"access_type": "token"}]  # uploaded as the README says


class _Quiet(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture
def demo_server(signing_secret, monkeypatch):
    """`python -m shared serve` in demo mode: the project's router on 127.0.0.1, no Cloudinary account."""
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "1")
    server = make_server("127.0.0.1", 0, cli.Router(cli.function_names()), handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_send_sample_to_the_demo_server(demo_server, capsys, name):
    code = cli.main(["send", "video_moderation", name, "--url", f"{demo_server}/api/video_moderation"])

    out = capsys.readouterr().out
    body = json.loads(out[out.index("{"):])
    _, status, outcome, actions = EXPECTED[name]
    assert code == 0 and "-> 200" in out
    assert body["status"] == outcome
    if actions:
        assert [action["action"] for action in body["actions"]] == actions
        assert body["moderation"] == status
