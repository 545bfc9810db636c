"""chat_alerts on the wire: the exact JSON Slack, Microsoft Teams and Discord receive.

Slack goes through slack_sdk's WebhookClient (urllib, so ``responses`` cannot see it): SLACK_WEBHOOK_URL points
at a pytest-httpserver on loopback, which CHAT_ALERTS_ALLOW_HTTP_LOOPBACK=1 lets through. Teams and Discord go
through ``requests``: ``responses`` answers for their real hosts, and refuses anything else (no test reaches
the network).
"""

from __future__ import annotations

import json
import logging
import time

import pytest
import requests
import responses

from functions.chat_alerts import messages, services
from functions.chat_alerts.handler import handle, human_size
from tests.helpers import API_KEY, SECRET, answers_too_late, sample, signed_request, wait_until_answered

SLACK_PATH = "/services/T0001/B0002/slack-secret-token"
TEAMS_URL = ("https://default0123abcd.45.environment.api.powerplatform.com:443/powerautomate/automations/direct/"
             "workflows/wf0123456789/triggers/manual/paths/invoke?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun"
             "&sv=1.0&sig=teams-secret-signature")
DISCORD_URL = "https://discord.com/api/webhooks/112233445566778899/discord-secret-token"
SECRETS = ("slack-secret-token", "teams-secret-signature", "discord-secret-token")
CLOUD = "demo-cloud"
ADAPTIVE_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"


class Chat:
    """The three services as the function meets them; what each received, decoded."""

    def __init__(self, slack, services_mock) -> None:
        self.slack = slack
        self.mock = services_mock

    def answer(self, slack: int = 200, teams: int = 202, discord: int = 204, *, slack_body: str = "ok",
               teams_body: str = "", discord_body: str = "") -> None:
        """Every later request to each service gets this answer (until answered again)."""
        self.slack.clear_all_handlers()
        self.slack.expect_request(SLACK_PATH, method="POST").respond_with_data(slack_body, status=slack)
        for url, body, status in ((TEAMS_URL, teams_body, teams), (DISCORD_URL, discord_body, discord)):
            if any(registered.url == url for registered in self.mock.registered()):
                self.mock.replace(responses.POST, url, body=body, status=status)
            else:
                self.mock.add(responses.POST, url, body=body, status=status)

    def slack_messages(self) -> list[dict]:
        return [json.loads(request.get_data()) for request, _ in self.slack.log]

    def messages_to(self, url: str) -> list[dict]:
        return [json.loads(call.request.body) for call in self.mock.calls if call.request.url == url]

    def teams_messages(self) -> list[dict]:
        return self.messages_to(TEAMS_URL)

    def discord_messages(self) -> list[dict]:
        return self.messages_to(DISCORD_URL)

    def outbound(self) -> int:
        return len(self.slack.log) + len(self.mock.calls)


@pytest.fixture
def chat(httpserver, signing_secret, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_URL", f"cloudinary://{API_KEY}:{SECRET}@{CLOUD}")  # builds thumbnails only
    monkeypatch.setenv("SLACK_WEBHOOK_URL", httpserver.url_for(SLACK_PATH))
    monkeypatch.setenv("CHAT_ALERTS_ALLOW_HTTP_LOOPBACK", "1")
    monkeypatch.setenv("TEAMS_WEBHOOK_URL", TEAMS_URL)
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", DISCORD_URL)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        stand_in = Chat(httpserver, mock)
        stand_in.answer()
        yield stand_in


def function_log(caplog) -> str:
    """What this process logged, less the local stand-ins' access lines (werkzeug prints the paths it served,
    which a real Slack never would in our log)."""
    return "\n".join(record.getMessage() for record in caplog.records if not record.name.startswith("werkzeug"))


def post(payload) -> object:
    return handle(signed_request(payload))


def mrkdwn(text: str) -> dict:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


# --- what each service receives ---------------------------------------------------------------------

OAK_THUMBNAIL = f"https://res.cloudinary.com/{CLOUD}/image/upload/c_limit,h_320,q_auto,w_320/v1714986001/shop/chairs/oak_chair.jpg"
OAK_URL = "https://res.cloudinary.com/demo/image/upload/v1714986001/shop/chairs/oak_chair.jpg"


def test_an_upload_is_one_message_on_each_service(chat):
    response = post(sample("chat_alerts", "upload"))

    assert response.status == 200
    assert response.body == {"status": "done", "actions": [
        {"action": f"post_to_{name}", "service": name, "title": "New upload: shop/chairs/oak_chair"}
        for name in ("slack", "teams", "discord")]}
    facts = [("Type", "image/upload"), ("Format", "JPG, 2400x1600"), ("Size", "717.3 KB"), ("Folder", "shop/chairs"),
             ("Display name", "Oak chair, side view"), ("Triggered by", "ui: editor@example.com")]

    assert chat.slack_messages() == [{
        "text": "New upload: shop/chairs/oak_chair",
        "blocks": [
            {"type": "section", "text": mrkdwn("*New upload*\nshop/chairs/oak_chair"),
             "accessory": {"type": "image", "image_url": OAK_THUMBNAIL,
                           "alt_text": "Thumbnail of shop/chairs/oak_chair"}},
            {"type": "section", "fields": [mrkdwn(f"*{label}*\n{value}") for label, value in facts]},
            {"type": "context", "elements": [mrkdwn(f"<{OAK_URL}|Open the asset>")]},
        ],
        "unfurl_links": False, "unfurl_media": False,
    }]
    assert chat.teams_messages() == [{
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": {
            "$schema": ADAPTIVE_SCHEMA, "type": "AdaptiveCard", "version": "1.4",
            "body": [
                {"type": "TextBlock", "text": "New upload", "weight": "Bolder", "size": "Medium", "wrap": True,
                 "color": "Accent"},
                {"type": "TextBlock", "text": "shop/chairs/oak\\_chair", "wrap": True},
                {"type": "Image", "url": OAK_THUMBNAIL, "altText": "Thumbnail of shop/chairs/oak_chair",
                 "size": "Medium"},
                {"type": "FactSet", "facts": [{"title": label, "value": value.replace("_", "\\_")}
                                              for label, value in facts]},
            ],
            "actions": [{"type": "Action.OpenUrl", "title": "Open the asset", "url": OAK_URL}],
        }}],
    }]
    assert chat.discord_messages() == [{
        "embeds": [{
            "title": "New upload", "description": "shop/chairs/oak\\_chair", "color": 0x3448C5, "url": OAK_URL,
            "fields": [{"name": "Type", "value": "image/upload", "inline": True},
                       {"name": "Format", "value": "JPG, 2400x1600", "inline": True},
                       {"name": "Size", "value": "717.3 KB", "inline": True},
                       {"name": "Folder", "value": "shop/chairs", "inline": True},
                       {"name": "Display name", "value": "Oak chair, side view", "inline": True},
                       {"name": "Triggered by", "value": "ui\\: editor@example.com", "inline": True}],
            "thumbnail": {"url": OAK_THUMBNAIL},
            "timestamp": "2024-05-06T09:00:01.113Z",
        }],
        "allowed_mentions": {"parse": []},
    }]
    assert chat.slack.log[0][0].headers["Content-Type"].startswith("application/json")


def test_a_video_gets_its_poster_frame(chat):
    post(sample("chat_alerts", "upload_video"))

    poster = (f"https://res.cloudinary.com/{CLOUD}/video/upload/c_limit,h_320,q_auto,so_auto,w_320/v1714994444/"
              "campaigns/spring/teaser.jpg")
    assert chat.slack_messages()[0]["blocks"][0]["accessory"]["image_url"] == poster
    assert chat.discord_messages()[0]["embeds"][0]["thumbnail"] == {"url": poster}
    assert chat.teams_messages()[0]["attachments"][0]["content"]["body"][2]["url"] == poster
    fields = chat.slack_messages()[0]["blocks"][1]["fields"]
    assert mrkdwn("*Size*\n17.9 MB") in fields
    assert mrkdwn("*Triggered by*\napi: 614335564976464") in fields


def test_an_older_upload_without_asset_id_or_context_says_what_it_knows(chat):
    assert post(sample("chat_alerts", "upload_legacy")).status == 200

    slack = chat.slack_messages()[0]
    assert [field["text"] for field in slack["blocks"][1]["fields"]] == [
        "*Type*\nimage/upload", "*Format*\nJPG, 864x576", "*Size*\n117.4 KB"]  # no folder, no trigger: not sent
    assert slack["blocks"][0]["accessory"]["image_url"].endswith("/v1580298723/sample_upload.jpg")
    assert "timestamp" not in chat.discord_messages()[0]["embeds"][0]


def test_without_cloudinary_url_the_thumbnail_uses_the_payloads_cloud(chat, monkeypatch):
    monkeypatch.delenv("CLOUDINARY_URL")

    post(sample("chat_alerts", "upload"))

    assert chat.slack_messages()[0]["blocks"][0]["accessory"]["image_url"] == OAK_THUMBNAIL.replace(CLOUD, "demo")


def test_a_delete_names_the_asset_and_shows_no_picture(chat):
    assert post(sample("chat_alerts", "delete")).status == 200

    slack = chat.slack_messages()[0]
    assert slack["text"] == "Deleted: shop/chairs/oak_chair"
    assert "accessory" not in slack["blocks"][0] and len(slack["blocks"]) == 2  # no thumbnail, no link
    assert [field["text"] for field in slack["blocks"][1]["fields"]] == [
        "*Type*\nimage/upload", "*Folder*\nshop/chairs", "*Display name*\nOak chair, side view",
        "*Triggered by*\nui: editor@example.com"]
    embed = chat.discord_messages()[0]["embeds"][0]
    assert embed["color"] == 0x8C8C8C and "thumbnail" not in embed and "url" not in embed
    card = chat.teams_messages()[0]["attachments"][0]["content"]
    assert "actions" not in card and all(item["type"] != "Image" for item in card["body"])


def test_a_bulk_delete_is_one_message_naming_the_assets(chat):
    post(sample("chat_alerts", "delete_bulk"))

    slack = chat.slack_messages()
    assert len(slack) == 1
    assert slack[0]["text"] == "Deleted 3 assets: events/2023/booth_01, events/2023/booth_02, events/2023/recap"
    # images and a video: no one Type to show; several folders: none
    assert [field["text"] for field in slack[0]["blocks"][1]["fields"]] == ["*Triggered by*\napi: 614335564976464"]


def test_a_delete_of_many_assets_names_five_and_counts_the_rest(chat):
    resources = [{"resource_type": "image", "type": "upload", "public_id": f"batch/{number}"} for number in range(12)]

    post({"notification_type": "delete", "resources": resources})

    assert chat.slack_messages()[0]["blocks"][0]["text"]["text"] == (
        "*Deleted 12 assets*\nbatch/0, batch/1, batch/2, batch/3, batch/4 and 7 more")


def test_an_approved_moderation_shows_the_decision_and_the_picture(chat):
    post(sample("chat_alerts", "moderation_approved"))

    slack = chat.slack_messages()[0]
    assert slack["text"] == "Moderation approved: shop/chairs/oak_chair"
    assert slack["blocks"][0]["accessory"]["image_url"] == OAK_THUMBNAIL
    assert slack["blocks"][1]["fields"][0] == mrkdwn("*Decision*\napproved by manual")
    assert chat.discord_messages()[0]["embeds"][0]["color"] == 0x2EB67D
    assert chat.teams_messages()[0]["attachments"][0]["content"]["body"][0]["color"] == "Good"


def test_a_rejected_moderation_says_why_and_never_shows_the_picture(chat):
    post(sample("chat_alerts", "moderation_rejected"))

    slack = chat.slack_messages()[0]
    assert slack["text"] == "Moderation rejected: user_uploads/profile_4711"
    assert "accessory" not in slack["blocks"][0] and len(slack["blocks"]) == 2  # no image, no link
    assert slack["blocks"][1]["fields"][0]["text"] == "*Decision*\nrejected by aws_rek: Explicit Nudity, Nudity"
    assert mrkdwn("*Format*\nPNG") in slack["blocks"][1]["fields"]
    embed = chat.discord_messages()[0]["embeds"][0]
    assert embed["color"] == 0xE01E5A and "thumbnail" not in embed and "url" not in embed
    assert embed["fields"][0] == {"name": "Decision", "value": "rejected by aws\\_rek\\: Explicit Nudity, Nudity",
                                  "inline": True}
    card = chat.teams_messages()[0]["attachments"][0]["content"]
    assert card["body"][0]["color"] == "Attention" and "actions" not in card


def test_an_upload_still_in_moderation_shows_no_picture(chat):
    payload = json.loads(sample("chat_alerts", "upload"))
    payload["moderation"] = [{"kind": "aws_rek", "status": "pending"}]

    post(payload)

    slack = chat.slack_messages()[0]
    assert "accessory" not in slack["blocks"][0] and len(slack["blocks"]) == 2
    assert mrkdwn("*Moderation*\npending (aws_rek)") in slack["blocks"][1]["fields"]


def test_an_authenticated_asset_gets_no_thumbnail_and_no_signed_link(chat):
    payload = json.loads(sample("chat_alerts", "moderation_approved"))
    signed = "https://res.cloudinary.com/demo/image/authenticated/s--Hb7wK2nR--/v1714986001/shop/chairs/oak_chair.jpg"
    payload.update(url=signed.replace("https", "http"), secure_url=signed)

    post(payload)

    everything = json.dumps([chat.slack_messages(), chat.teams_messages(), chat.discord_messages()])
    assert "s--Hb7wK2nR--" not in everything and "res.cloudinary.com" not in everything
    assert "image/authenticated" in everything  # the Type fact


def test_a_rename_is_posted_when_chat_alert_types_asks_for_it(chat, monkeypatch):
    monkeypatch.setenv("CHAT_ALERT_TYPES", "upload, rename")

    assert post(sample("chat_alerts", "rename")).status == 200

    slack = chat.slack_messages()[0]
    assert slack["text"] == "Renamed: shop/chairs/oak_chair_heritage"
    assert slack["blocks"][1]["fields"][0]["text"] == "*From*\nshop/chairs/oak_chair"


# --- nothing posted ----------------------------------------------------------------------------------

def test_bad_signature_is_401_and_posts_nothing(chat):
    response = handle(signed_request(sample("chat_alerts", "upload"), secret="wrong"))

    assert response.status == 401
    assert chat.outbound() == 0


@pytest.mark.parametrize("name", ["resource_tags_changed", "rename"])
def test_types_not_alerted_are_ignored_and_post_nothing(chat, name):
    response = post(sample("chat_alerts", name))

    assert response.status == 200 and response.body["status"] == "ignored"
    assert chat.outbound() == 0


def test_chat_alert_types_narrows_what_is_posted(chat, monkeypatch):
    monkeypatch.setenv("CHAT_ALERT_TYPES", "moderation")

    response = post(sample("chat_alerts", "upload"))

    assert response.body == {"status": "ignored", "reason": "upload is not in CHAT_ALERT_TYPES (moderation)"}
    assert chat.outbound() == 0


def test_an_unknown_chat_alert_type_is_500_not_configured(chat, monkeypatch, caplog):
    monkeypatch.setenv("CHAT_ALERT_TYPES", "upload eager")

    response = post(sample("chat_alerts", "upload"))

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert "CHAT_ALERT_TYPES" in function_log(caplog)
    assert chat.outbound() == 0


def test_no_webhook_url_at_all_is_500_not_configured(signing_secret, caplog):
    response = post(sample("chat_alerts", "upload"))

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert "SLACK_WEBHOOK_URL" in function_log(caplog) and "SLACK_WEBHOOK_URL" not in json.dumps(response.body)


@pytest.mark.parametrize("public_id", ["a\r\nb", "https://evil.example/x.jpg", "javascript:alert(1)", "x" * 2000])
def test_a_public_id_no_asset_has_is_400_and_posts_nothing(chat, public_id):
    payload = json.loads(sample("chat_alerts", "upload"))
    payload["public_id"] = public_id

    response = post(payload)

    assert response.status == 400
    assert chat.outbound() == 0


@pytest.mark.parametrize("resources", [None, [], "x", [1], [{"public_id": ""}]])
def test_a_delete_without_assets_is_400(chat, resources):
    payload = {"notification_type": "delete"}
    if resources is not None:
        payload["resources"] = resources

    assert post(payload).status == 400
    assert chat.outbound() == 0


def test_dry_run_answers_what_it_would_post_and_posts_nothing(chat, monkeypatch):
    monkeypatch.setenv("DRY_RUN", "1")

    response = post(sample("chat_alerts", "moderation_rejected"))

    assert response.status == 200 and response.body["status"] == "dry_run"
    assert [action["service"] for action in response.body["actions"]] == ["slack", "teams", "discord"]
    assert response.body["actions"][0]["title"] == "Moderation rejected: user_uploads/profile_4711"
    assert chat.outbound() == 0


def test_demo_mode_without_webhooks_is_a_dry_run_with_every_service(signing_secret, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "1")
    with responses.RequestsMock() as mock:  # any request would fail the test: none is registered
        response = post(sample("chat_alerts", "upload"))
        assert len(mock.calls) == 0

    assert response.status == 200 and response.body["status"] == "dry_run"
    assert [action["action"] for action in response.body["actions"]] == [
        "post_to_slack", "post_to_teams", "post_to_discord"]
    for target in services.demo_targets():  # the demo URLs pass the same checks as real ones
        assert services.checked_url(target.service, target.url) == target.url


def test_demo_mode_with_one_webhook_posts_only_there(chat, monkeypatch):
    monkeypatch.setenv("CLOUDINARY_WEBHOOKS_DEMO", "1")
    monkeypatch.delenv("TEAMS_WEBHOOK_URL")
    monkeypatch.delenv("DISCORD_WEBHOOK_URL")

    response = post(sample("chat_alerts", "upload"))

    assert response.body["status"] == "done"
    assert len(chat.slack_messages()) == 1 and len(chat.mock.calls) == 0


# --- webhook URLs: only the services' own hosts, and never in a log ------------------------------------

SLACK = services.SERVICES[0]
TEAMS = services.SERVICES[1]
DISCORD = services.SERVICES[2]


@pytest.mark.parametrize(("service", "url"), [
    (SLACK, "https://hooks.slack.com/services/T0/B0/x"),
    (SLACK, "https://hooks.slack-gov.com/services/T0/B0/x"),
    (SLACK, "https://HOOKS.SLACK.COM:443/services/T0/B0/x"),
    (TEAMS, TEAMS_URL),
    (TEAMS, "https://prod-23.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=x"),
    (TEAMS, "https://contoso.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d"),
    (DISCORD, "https://discord.com/api/webhooks/1/x"),
    (DISCORD, "https://discordapp.com/api/webhooks/1/x"),
    (DISCORD, "https://canary.discord.com/api/v10/webhooks/1/x"),
])
def test_the_services_own_webhook_urls_are_accepted(service, url):
    assert services.checked_url(service, url) == url


@pytest.mark.parametrize(("service", "url"), [
    (SLACK, "http://hooks.slack.com/services/T0/B0/x"),  # not https
    (SLACK, "https://hooks.slack.com.evil.example/services/T0/B0/x"),
    (SLACK, "https://evil.example/services/T0/B0/x"),
    (SLACK, "https://hooks.slack.com@evil.example/services/T0/B0/x"),
    (SLACK, "https://user:pw@hooks.slack.com/services/T0/B0/x"),
    (SLACK, "https://hooks.slack.com:8443/services/T0/B0/x"),
    (SLACK, "https://hooks.slack.com:x/services/T0/B0/x"),
    (SLACK, "https://hooks.slack.com/api/chat.postMessage"),  # the service's host, not its webhook path
    (SLACK, "https://hooks.slack.com./services/T0/B0/x"),
    (SLACK, "https://127.0.0.1/services/T0/B0/x"),  # loopback only with the test override
    (SLACK, "https://hooks.slack.com/services/T0/B0/x y"),
    (SLACK, "https://hooks.slack.com/services/T0/B0/x\n"),
    (SLACK, "https://hooks.sl\u0430ck.com/services/T0/B0/x"),  # a Cyrillic a
    (SLACK, "file:///etc/passwd"),
    (SLACK, "javascript:alert(1)"),
    (TEAMS, "https://webhook.office.com/webhookb2/x"),  # a suffix needs a subdomain before it
    (TEAMS, "https://evil.logic.azure.com.evil.example/workflows/x"),
    (TEAMS, "https://evil-logic.azure.com/workflows/x"),
    (TEAMS, "https://contoso.webhook.office.com/other/x"),
    (TEAMS, "https://discord.com/api/webhooks/1/x"),  # another service's URL in the wrong variable
    (DISCORD, "https://discord.com/api/users/@me"),
    (DISCORD, "https://discord.gg/api/webhooks/1/x"),
    (DISCORD, "https://evil.discord.com.example/api/webhooks/1/x"),
])
def test_any_other_url_is_refused_without_being_repeated(service, url):
    with pytest.raises(services.ConfigError) as refused:
        services.checked_url(service, url)

    assert service.variable in refused.value.log_detail
    assert url not in refused.value.log_detail and url not in refused.value.message


def test_a_refused_url_is_500_and_nothing_is_posted_anywhere(chat, monkeypatch, caplog):
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", "https://evil.example/api/webhooks/1/discord-secret-token")

    response = post(sample("chat_alerts", "upload"))

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert "DISCORD_WEBHOOK_URL" in function_log(caplog) and "discord-secret-token" not in function_log(caplog)
    assert chat.outbound() == 0


def test_loopback_urls_need_the_test_override(chat, monkeypatch):
    monkeypatch.delenv("CHAT_ALERTS_ALLOW_HTTP_LOOPBACK")

    assert post(sample("chat_alerts", "upload")).status == 500
    assert chat.outbound() == 0


def test_the_loopback_override_is_refused_on_lambda(chat, monkeypatch, caplog):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "chat-alerts")

    assert post(sample("chat_alerts", "upload")).status == 500
    assert "CHAT_ALERTS_ALLOW_HTTP_LOOPBACK" in function_log(caplog)
    assert chat.outbound() == 0


# --- each service failing -----------------------------------------------------------------------------

@pytest.mark.parametrize(("service", "status", "expected"), [
    ("slack", 429, 503), ("slack", 500, 503), ("slack", 503, 503),
    ("slack", 400, 500), ("slack", 403, 500), ("slack", 404, 500), ("slack", 410, 500),
    ("teams", 429, 503), ("teams", 502, 503), ("teams", 400, 500), ("teams", 401, 500), ("teams", 404, 500),
    ("discord", 429, 503), ("discord", 500, 503), ("discord", 401, 500), ("discord", 404, 500),
])
def test_a_failing_service_maps_to_the_promised_status(chat, caplog, service, status, expected):
    bodies = {"slack": {"slack_body": "no_service"}, "teams": {"teams_body": '{"error":{"code":"WorkflowNotFound"}}'},
              "discord": {"discord_body": '{"message": "Unknown Webhook", "code": 10015}'}}
    chat.answer(**{service: status}, **bodies[service])

    response = post(sample("chat_alerts", "upload"))

    assert response.status == expected
    assert response.body["error"] == f"{service}_{'unavailable' if expected == 503 else 'rejected'}"
    label = {"slack": "Slack", "teams": "Microsoft Teams", "discord": "Discord"}[service]
    assert f"{label} answered HTTP {status}" in function_log(caplog)  # the log says which service and what it said
    assert f'"failed": "{service}"' in function_log(caplog)
    for secret in SECRETS:
        assert secret not in function_log(caplog) and secret not in json.dumps(response.body)
    # the other two services still got their message
    assert len(chat.slack_messages()) == len(chat.teams_messages()) == len(chat.discord_messages()) == 1


def test_a_slack_timeout_is_503(chat, monkeypatch):
    import threading

    release = threading.Event()
    monkeypatch.setenv("CHAT_ALERTS_TIMEOUT_SECONDS", "0.2")
    chat.slack.clear_all_handlers()
    chat.slack.expect_oneshot_request(SLACK_PATH, method="POST").respond_with_handler(
        answers_too_late(release, body="ok", content_type="text/plain"))
    try:
        response = post(sample("chat_alerts", "upload"))
    finally:
        release.set()
        wait_until_answered(chat.slack)

    assert response.status == 503 and response.body["error"] == "slack_unavailable"


def test_slack_unreachable_is_503(chat, monkeypatch, caplog):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("SLACK_WEBHOOK_URL", f"http://127.0.0.1:{port}{SLACK_PATH}")

    response = post(sample("chat_alerts", "upload"))

    assert response.status == 503 and response.body["error"] == "slack_unavailable"
    assert "Slack: URLError" in function_log(caplog) and "slack-secret-token" not in function_log(caplog)


@pytest.mark.parametrize("failure", [requests.exceptions.ConnectTimeout, requests.exceptions.ReadTimeout,
                                     requests.exceptions.ConnectionError])
@pytest.mark.parametrize("url", [TEAMS_URL, DISCORD_URL])
def test_teams_or_discord_timing_out_or_unreachable_is_503(chat, caplog, url, failure):
    chat.mock.replace(responses.POST, url, body=failure(f"HTTPSConnectionPool: {url} timed out"))

    response = post(sample("chat_alerts", "upload"))

    assert response.status == 503 and response.body["error"].endswith("_unavailable")
    assert failure.__name__ in function_log(caplog)
    for secret in SECRETS:
        assert secret not in function_log(caplog)


def test_a_microsoft_365_connector_that_answers_200_with_an_error_is_not_a_success(chat, monkeypatch):
    connector = "https://contoso.webhook.office.com/webhookb2/g@t/IncomingWebhook/teams-secret-signature/o"
    monkeypatch.setenv("TEAMS_WEBHOOK_URL", connector)
    chat.mock.add(responses.POST, connector, status=200, body=(
        "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error 429"))

    response = post(sample("chat_alerts", "upload"))

    assert response.status == 503 and response.body["error"] == "teams_unavailable"


def test_a_service_echoing_the_url_in_its_error_does_not_put_it_in_the_log(chat, caplog):
    chat.answer(teams=404, teams_body=json.dumps({"error": {"code": "WorkflowNotFound",
                                                            "message": f"No workflow at {TEAMS_URL}"}}))

    response = post(sample("chat_alerts", "upload"))

    assert response.status == 500
    assert "WorkflowNotFound" in function_log(caplog) and "[redacted]" in function_log(caplog)
    assert "teams-secret-signature" not in function_log(caplog) and "wf0123456789" not in function_log(caplog)


def test_no_webhook_url_reaches_any_log_even_at_debug(chat, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, slack_sdk's and urllib3's included
    chat.answer(slack=404)

    post(sample("chat_alerts", "upload"))
    # urllib3 logs each request's path at DEBUG: the filter chat_alerts puts on its logger drops ours
    logging.getLogger("urllib3.connectionpool").debug('%s://%s:%s "%s %s %s" %s %s', "https", "discord.com", 443,
                                                      "POST", DISCORD_URL[19:], "HTTP/1.1", 204, 0)

    assert caplog.records  # there was something to look at
    for secret in SECRETS:
        assert secret not in function_log(caplog)


def test_a_retryable_failure_wins_over_a_rejection(chat, caplog):
    chat.answer(slack=404, discord=503)

    response = post(sample("chat_alerts", "upload"))

    assert response.status == 503 and response.body["error"] == "discord_unavailable"
    assert '"failed": "slack,discord"' in function_log(caplog)


# --- at most one message per notification and service ----------------------------------------------

def test_the_same_signed_notification_three_times_posts_once_per_service(chat):
    request = signed_request(sample("chat_alerts", "upload"))

    answers = [handle(request) for _ in range(3)]

    assert [answer.status for answer in answers] == [200] * 3
    assert "already_posted" not in answers[0].body
    assert all(answer.body["already_posted"] == ["slack", "teams", "discord"] for answer in answers[1:])
    assert all(action.get("repeated") is True for action in answers[2].body["actions"])
    assert len(chat.slack_messages()) == len(chat.teams_messages()) == len(chat.discord_messages()) == 1


def test_a_replay_signed_again_later_posts_nothing(chat):
    body = sample("chat_alerts", "moderation_approved")
    handle(signed_request(body))

    later = handle(signed_request(body, timestamp=int(time.time()) - 600))

    assert later.status == 200 and later.body["already_posted"] == ["slack", "teams", "discord"]
    assert chat.outbound() == 3


def test_a_retry_after_one_service_failed_posts_only_to_that_service(chat):
    chat.answer(teams=503)
    request = signed_request(sample("chat_alerts", "upload"))

    failed = handle(request)
    chat.answer()  # Teams is back
    retried = handle(request)
    again = handle(request)

    assert failed.status == 503 and failed.body["error"] == "teams_unavailable"
    assert retried.status == 200 and retried.body["already_posted"] == ["slack", "discord"]
    assert again.body["already_posted"] == ["slack", "teams", "discord"]
    assert len(chat.slack_messages()) == 1 and len(chat.discord_messages()) == 1
    assert len(chat.teams_messages()) == 2  # the failed attempt, then exactly one delivered message


def test_two_different_notifications_are_two_messages(chat):
    payload = json.loads(sample("chat_alerts", "upload"))

    post(payload)
    post({**payload, "public_id": "shop/chairs/pine_chair"})

    assert len(chat.slack_messages()) == 2


def test_on_lambda_without_an_idempotency_store_it_is_500_and_posts_nothing(chat, monkeypatch):
    monkeypatch.delenv("CHAT_ALERTS_ALLOW_HTTP_LOOPBACK")
    monkeypatch.setenv("SLACK_WEBHOOK_URL", "https://hooks.slack.com/services/T0/B0/slack-secret-token")
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "chat-alerts")

    response = post(sample("chat_alerts", "upload"))

    assert response.status == 500 and response.body["error"] == "not_configured"
    assert chat.outbound() == 0


# --- time budget --------------------------------------------------------------------------------------

def test_each_call_takes_its_timeout_from_the_budget(chat, monkeypatch):
    from slack_sdk.webhook import WebhookClient

    monkeypatch.setenv("CHAT_ALERTS_TIMEOUT_SECONDS", "30")
    monkeypatch.setenv("WEBHOOK_TIME_BUDGET_SECONDS", "5")
    slack_timeouts = []
    original = WebhookClient.__init__

    def recording(self, url, timeout=30, **kwargs):
        slack_timeouts.append(timeout)
        original(self, url, timeout=timeout, **kwargs)

    monkeypatch.setattr(WebhookClient, "__init__", recording)

    assert post(sample("chat_alerts", "upload")).status == 200

    timeouts = slack_timeouts + [call.request.req_kwargs["timeout"] for call in chat.mock.calls]
    assert len(timeouts) == 3 and all(0 < timeout <= 5 for timeout in timeouts)


def test_no_time_left_is_503_and_posts_nothing(chat, monkeypatch):
    monkeypatch.setenv("WEBHOOK_TIME_BUDGET_SECONDS", "0.5")  # under the 1 s a call needs

    response = post(sample("chat_alerts", "upload"))

    assert response.status == 503 and response.body["error"] == "out_of_time"
    assert chat.outbound() == 0


# --- escaping: what a stranger names a file cannot format, link or mention ---------------------------

INJECTION = "promo/<!channel> <@U123> [click](https://evil.example) *now* _x_ ~s~ `c` ||spoiler|| @everyone a&b"


def injected_upload(**fields) -> dict:
    payload = json.loads(sample("chat_alerts", "upload"))
    payload.update({"public_id": INJECTION, "display_name": "# Big\nheading <b>bold</b>",
                    "asset_folder": "- item", "notification_context": {"triggered_by": {
                        "source": "ui", "id": "<@&42> @here :smile:\r\n1. one"}}})
    payload.update(fields)
    return payload


def test_slack_gets_its_three_control_characters_escaped_and_nothing_auto_linked(chat):
    post(injected_upload())

    slack = chat.slack_messages()[0]
    texts = [slack["blocks"][0]["text"], *slack["blocks"][1]["fields"], *slack["blocks"][2]["elements"]]
    rendered = json.dumps([slack["text"], *texts])  # (alt_text is plain text: Slack renders no markup there)
    for raw in ("<!channel>", "<@U123>", "<@&42>", "a&b", "<b>"):
        assert raw not in rendered
    assert slack["text"].startswith("New upload: promo/&lt;!channel&gt; &lt;@U123&gt; [click](https://evil.example)")
    assert "a&amp;b" in slack["blocks"][0]["text"]["text"]
    fields = dict(field["text"].split("\n", 1) for field in slack["blocks"][1]["fields"])
    assert fields["*Display name*"] == "# Big heading &lt;b&gt;bold&lt;/b&gt;"  # one line
    assert fields["*Triggered by*"] == "ui: &lt;@&amp;42&gt; @here :smile: 1. one"
    assert all(text_object["verbatim"] is True for text_object in texts)
    assert "link_names" not in slack and "parse" not in slack


def test_discord_gets_markdown_and_mentions_neutralised(chat):
    post(injected_upload())

    message = chat.discord_messages()[0]
    assert message["allowed_mentions"] == {"parse": []} and "content" not in message
    embed = message["embeds"][0]
    assert embed["description"] == (
        "promo/\\<!channel\\> \\<@U123\\> \\[click\\]\\(https\\://evil.example\\) \\*now\\* \\_x\\_ \\~s\\~ \\`c\\` "
        "\\|\\|spoiler\\|\\| @\u200beveryone a&b")
    fields = {field["name"]: field["value"] for field in embed["fields"]}
    assert fields["Display name"] == "\\# Big heading \\<b\\>bold\\</b\\>"
    assert fields["Folder"] == "\\- item"
    assert fields["Triggered by"] == "ui\\: \\<@&42\\> @\u200bhere \\:smile\\: 1. one"
    assert "@everyone" not in json.dumps(message) and "@here" not in json.dumps(message)


def test_teams_gets_its_markdown_neutralised(chat):
    post(injected_upload())

    body = chat.teams_messages()[0]["attachments"][0]["content"]["body"]
    assert body[1]["text"] == (
        "promo/\\<!channel\\> \\<@U123\\> \\[click\\]\\(https://evil.example\\) \\*now\\* \\_x\\_ \\~s\\~ \\`c\\` "
        "||spoiler|| @everyone a&b")
    facts = {fact["title"]: fact["value"] for fact in body[3]["facts"]}
    assert facts["Display name"] == "\\# Big heading \\<b\\>bold\\</b\\>"
    assert facts["Folder"] == "\\- item"
    assert facts["Triggered by"] == "ui: \\<@&42\\> @here :smile: 1. one"


@pytest.mark.parametrize("url", [
    "javascript:alert(document.cookie)", "JavaScript:alert(1)", " javascript:alert(1)", "data:text/html,<b>x</b>",
    "vbscript:msgbox(1)", "file:///etc/passwd", "//evil.example/x.jpg", 'https://x.example/a" onclick="alert(1)',
    "https://x.example/a\nb", "ftp://x.example/a.jpg", "https://x.example/a|b", "https://x.example/a>b",
])
def test_only_http_links_reach_any_service(chat, url):
    post(injected_upload(public_id="shop/chairs/oak_chair", secure_url=url, url=url))

    everything = json.dumps([chat.slack_messages(), chat.teams_messages(), chat.discord_messages()])
    for dangerous in ("javascript", "JavaScript", "data:", "vbscript", "file:", "evil.example/x", "onclick", "ftp:",
                      "x.example"):
        assert dangerous not in everything
    assert "Open the asset" not in everything and '"url": "https://res.cloudinary.com/demo/' not in everything
    assert OAK_THUMBNAIL in everything  # the thumbnail is the SDK's own https URL


def test_long_names_are_cut_to_what_each_service_accepts(chat):
    long_name = "folder/" + "&" * 1000  # escaped, each & is five characters on Slack

    post(injected_upload(public_id="shop/chairs/oak_chair", display_name=long_name))

    slack_field = next(field["text"] for field in chat.slack_messages()[0]["blocks"][1]["fields"]
                       if field["text"].startswith("*Display name*"))
    assert len(slack_field) <= 2000 and slack_field.endswith("…")
    discord_field = next(field["value"] for field in chat.discord_messages()[0]["embeds"][0]["fields"]
                         if field["name"] == "Display name")
    assert len(discord_field) <= 1024


# --- the formats on their own -------------------------------------------------------------------------

def test_escapers():
    assert messages.slack_escape("<a & b>") == "&lt;a &amp; b&gt;"
    assert messages.discord_escape("1. x") == "1\\. x" and messages.discord_escape("1.5 MB") == "1.5 MB"
    assert messages.teams_escape("+ x") == "\\+ x" and messages.teams_escape("a + b") == "a + b"
    assert messages.discord_escape("@EVERYONE") == "@\u200bEVERYONE"
    assert messages.one_line("a\u2028b\x00c\r\nd") == "a b c d"


def test_human_size():
    assert human_size(0) == "0 bytes"
    assert human_size(1536) == "1.5 KB"
    assert human_size(5 * 1024 * 1024) == "5.0 MB"


def test_a_redirect_is_not_followed_and_counts_as_a_refusal(chat):
    chat.mock.replace(responses.POST, DISCORD_URL, status=302, headers={"Location": "https://elsewhere.example/"})

    response = post(sample("chat_alerts", "upload"))

    assert response.status == 500 and response.body["error"] == "discord_rejected"
    assert [call.request.url for call in chat.mock.calls].count(DISCORD_URL) == 1
    assert all("elsewhere.example" not in call.request.url for call in chat.mock.calls)
