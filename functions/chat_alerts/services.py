"""The chat services chat_alerts posts to: which webhook URLs it accepts, how it posts, what an answer means.

A webhook URL is a secret (whoever has it can post to the channel) and it is configuration: it is never
logged, never put in an error, and only accepted when it is an https URL on the service's own host, so that a
mistyped or planted setting cannot turn the function into a way to POST at any host (SSRF by configuration):

    SLACK_WEBHOOK_URL    https://hooks.slack.com/services/...            (GovSlack: hooks.slack-gov.com)
    TEAMS_WEBHOOK_URL    https://<env>.environment.api.powerplatform.com/powerautomate/...   Teams Workflows
                         https://<region>.logic.azure.com/workflows/...   Workflows made before the move
                         https://<tenant>.webhook.office.com/webhookb2/...   Microsoft 365 connectors (retiring)
    DISCORD_WEBHOOK_URL  https://discord.com/api/webhooks/...  (also discordapp.com, ptb. and canary.)

``CHAT_ALERTS_ALLOW_HTTP_LOOPBACK=1`` also accepts http(s) URLs on 127.0.0.1, ::1 or localhost: for tests and
local stand-ins only (refused on AWS Lambda, Vercel and Netlify).

Answers: 2xx posted; 429 and 5xx, timeouts and unreachable hosts are 503 (Cloudinary retries); any other 4xx
(a revoked or deleted webhook, a disabled flow) is 500 ``<service>_rejected``, which no retry fixes: the log
line says which service and what it answered, never the URL. Slack goes through ``slack_sdk``'s
``WebhookClient`` (urllib), Teams and Discord through ``requests``; neither retries on its own account, and each
call's timeout comes from the request's budget. ``requests`` follows no redirect (a 3xx is a refusal); urllib
would follow a 301/302/303 from hooks.slack.com as a GET without the message, and answers a 307/308 as a
refusal.
"""

from __future__ import annotations

import logging

from shared import budget, coldstart, config
from shared.errors import ConfigError, DependencyRejected, DependencyUnavailable

from . import messages

TYPE_CHECKING = False  # no `typing` import at run time: it costs cold-start milliseconds for annotations only
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

LOOPBACK_VARIABLE = "CHAT_ALERTS_ALLOW_HTTP_LOOPBACK"
DEFAULT_TIMEOUT_SECONDS = 4.0  # per service; three in a row stay inside the request's 15 s budget
USER_AGENT = "cloudinary-webhook-functions chat_alerts"


class Service:
    """One chat service: its setting, the hosts and paths its webhook URLs have, and its message format."""

    __slots__ = ("label", "name", "render", "rules", "variable")

    def __init__(self, name: str, label: str, variable: str, rules: tuple[tuple[str, str], ...],
                 render: Callable[[messages.Alert], dict[str, Any]]) -> None:
        self.name = name
        self.label = label
        self.variable = variable
        self.rules = rules  # (host, path prefix); a host starting with "." is a suffix (any subdomain)
        self.render = render  # the message in this service's format

    def accepts(self, host: str, path: str) -> bool:
        for rule_host, prefix in self.rules:
            on_host = host.endswith(rule_host) and len(host) > len(rule_host) if rule_host.startswith(".") \
                else host == rule_host
            if on_host and path.startswith(prefix):
                return True
        return False


SERVICES = (
    Service("slack", "Slack", "SLACK_WEBHOOK_URL",
            (("hooks.slack.com", "/services/"), ("hooks.slack-gov.com", "/services/")), messages.slack_message),
    Service("teams", "Microsoft Teams", "TEAMS_WEBHOOK_URL",
            ((".environment.api.powerplatform.com", "/powerautomate/"), (".logic.azure.com", "/workflows/"),
             (".webhook.office.com", "/webhookb2/")), messages.teams_message),
    Service("discord", "Discord", "DISCORD_WEBHOOK_URL",
            tuple((host, prefix) for host in ("discord.com", "discordapp.com", "ptb.discord.com", "canary.discord.com")
                  for prefix in ("/api/webhooks/", "/api/v10/webhooks/", "/api/v9/webhooks/")),
            messages.discord_message),
)
VARIABLES = tuple(service.variable for service in SERVICES)

# Local demo mode with no webhook configured: the request runs dry against these (nothing is ever sent).
DEMO_URLS = {
    "slack": "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "teams": "https://default0000.00.environment.api.powerplatform.com/powerautomate/automations/direct/workflows/"
             "0000/triggers/manual/paths/invoke?api-version=1&sig=XXXX",
    "discord": "https://discord.com/api/webhooks/000000000000000000/XXXXXXXX",
}


class Target:
    """A service with its configured URL (a secret: ``repr`` leaves it out)."""

    __slots__ = ("service", "url")

    def __init__(self, service: Service, url: str) -> None:
        self.service = service
        self.url = url

    @property
    def name(self) -> str:
        return self.service.name

    def __repr__(self) -> str:
        return f"Target({self.service.name})"


def configured(settings: config.Settings) -> list[Target]:
    """The services whose webhook URL is set, each URL checked; ConfigError (500) names a bad one's variable."""
    allow_loopback = config.test_loopback_allowed(LOOPBACK_VARIABLE, "chat_alerts")
    targets = []
    for service in SERVICES:
        raw = settings.get(service.variable)
        if raw:
            targets.append(Target(service, checked_url(service, raw, allow_loopback=allow_loopback)))
    return targets


def demo_targets() -> list[Target]:
    return [Target(service, DEMO_URLS[service.name]) for service in SERVICES]


def checked_url(service: Service, raw: str, *, allow_loopback: bool = False) -> str:
    """``raw`` if it is ``service``'s webhook URL; ConfigError otherwise (saying why, never the value)."""
    from urllib.parse import urlsplit  # only once a notification is to be posted

    problem = None
    if not raw.isascii() or any(character.isspace() or not character.isprintable() for character in raw):
        problem = "it holds spaces, control or non-ASCII characters"
    else:
        parts = urlsplit(raw)
        try:
            port = parts.port
        except ValueError:
            port, problem = None, "its port is not a number"
        host = (parts.hostname or "").lower()
        if problem:
            pass
        elif "@" in parts.netloc:
            problem = "it carries a user name or password"
        elif allow_loopback and host in config.LOOPBACK_HOSTS and parts.scheme in ("http", "https"):
            return raw
        elif parts.scheme != "https":
            problem = "it is not https"
        elif port not in (None, 443):
            problem = "it names a port other than 443"
        elif not service.accepts(host, parts.path):
            problem = f"its host or path is not {service.label}'s incoming webhook"
        else:
            return raw
    raise ConfigError(f"chat_alerts: {service.variable} is not a {service.label} webhook URL: {problem} "
                      "(the value is not logged)")


# --- posting -----------------------------------------------------------------------------------------

def post(target: Target, message: dict[str, Any], timeout: float) -> dict[str, Any]:
    """POST ``message`` to ``target``; returns {"status": code} (kept in the idempotency record).

    Raises DependencyUnavailable (503) or DependencyRejected (500), naming the service, never the URL."""
    seconds = budget.call_timeout(f"{target.name} webhook", timeout)
    _hide_webhook_paths_from_urllib3()
    if target.name == "slack":
        status, body = _post_with_slack_sdk(target, message, seconds)
    else:
        status, body = _post_with_requests(target, message, seconds)
    judge(target, status, body)
    return {"status": status}


def _post_with_slack_sdk(target: Target, message: dict[str, Any], seconds: float) -> tuple[int, str]:
    import http.client

    with coldstart.first_import("slack_sdk.webhook"):  # a cold start: slack_sdk's modules, for good
        from slack_sdk.errors import SlackRequestError
        from slack_sdk.webhook import WebhookClient

    # No retry handlers: the default one retries a failed connection after a pause, and Cloudinary retries
    # anyway. Our own quiet logger: at DEBUG, slack_sdk's would write the URL.
    client = WebhookClient(target.url, timeout=seconds, retry_handlers=[], logger=_QUIET_LOGGER)
    try:
        response = client.send_dict(message)
    except (OSError, http.client.HTTPException) as error:  # URLError, timeouts, refused or reset connections
        raise _unreachable(target, error) from None
    except SlackRequestError:
        raise ConfigError("chat_alerts: slack_sdk refused SLACK_WEBHOOK_URL or the proxy settings") from None
    return int(response.status_code), str(response.body or "")


def _post_with_requests(target: Target, message: dict[str, Any], seconds: float) -> tuple[int, str]:
    with coldstart.first_import("requests"):  # a cold start: requests' modules, for good
        import requests

    try:
        response = requests.post(target.url, json=message, timeout=seconds, allow_redirects=False,
                                 headers={"User-Agent": USER_AGENT})
    except requests.RequestException as error:  # its message names the URL: only the class name goes on
        raise _unreachable(target, error) from None
    return response.status_code, response.text[:2000]


def judge(target: Target, status: int, body: str) -> None:
    """Raise for an answer that is not a delivered message."""
    service = target.service
    if 200 <= status < 300:
        # Microsoft 365 connectors answer 200 with "1", and a failed delivery with 200 and a sentence.
        if service.name == "teams" and "delivery failed" in body.lower():
            retryable = "429" in body or "throttl" in body.lower()
            status = 429 if retryable else 400
        else:
            return
    detail = f"{service.label} answered HTTP {status}{_reason(body, target.url)}"
    if status == 429 or status >= 500:
        raise DependencyUnavailable(f"{service.label} is unavailable; a retry will post the message.",
                                    code=f"{service.name}_unavailable", log_detail=detail)
    # 400/401/403/404/410: a revoked or deleted webhook, an archived channel, a disabled flow, a refused
    # message. Cloudinary's retries would meet the same answer.
    raise DependencyRejected(f"{service.label} refused the message (revoked webhook?); the function's log says why.",
                             code=f"{service.name}_rejected", log_detail=detail)


def _unreachable(target: Target, error: BaseException) -> DependencyUnavailable:
    return DependencyUnavailable(f"{target.service.label} did not answer; a retry will post the message.",
                                 code=f"{target.name}_unavailable",
                                 log_detail=f"{target.service.label}: {type(error).__name__}")


def _reason(body: str, url: str) -> str:
    """A short, printable excerpt of the service's answer for the log, with any part of the URL cut out
    (services may echo the path, whose last segments are the secret)."""
    text = " ".join(body.split())[:160]
    for piece in _secret_pieces(url):
        text = text.replace(piece, "[redacted]")
    text = "".join(character for character in text if character.isprintable())
    return f": {text}" if text else ""


def _secret_pieces(url: str) -> list[str]:
    from urllib.parse import unquote, urlsplit

    parts = urlsplit(url)
    pieces = [segment for segment in parts.path.split("/") if len(segment) >= 6]
    pieces += [value for pair in parts.query.split("&") for value in [pair.partition("=")[2]] if len(value) >= 6]
    pieces += [unquote(piece) for piece in pieces]
    return sorted(set(pieces), key=len, reverse=True)


# --- keeping URLs out of logs ------------------------------------------------------------------------

_QUIET_LOGGER = logging.getLogger("cloudinary_webhooks.chat_alerts.slack_sdk")
_QUIET_LOGGER.setLevel(logging.CRITICAL + 1)  # slack_sdk logs the URL at DEBUG and failures with details
_QUIET_LOGGER.propagate = False

# Paths of the services' webhooks: urllib3 writes "POST <path> 204" at DEBUG, and the path holds the secret.
_WEBHOOK_PATH_MARKERS = ("/services/", "/webhookb2/", "/workflows/", "/powerautomate/", "/api/webhooks/",
                         "/api/v9/webhooks/", "/api/v10/webhooks/")


class _NoWebhookPaths(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a record that cannot be formatted is not ours to judge
            return True
        return not any(marker in text for marker in _WEBHOOK_PATH_MARKERS)


_FILTER = _NoWebhookPaths()


def _hide_webhook_paths_from_urllib3() -> None:
    logger = logging.getLogger("urllib3.connectionpool")
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
