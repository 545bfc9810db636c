"""What chat_alerts posts: one ``Alert`` per notification, written out in each service's own format.

Everything in an alert that comes from the notification (public IDs, display names, folders, who triggered
it, moderation labels) is text a stranger may have chosen: an upload widget lets anybody name a file. So each
format escapes it for its own markup, on one line, cut to a length the service accepts:

    Slack    Block Kit, mrkdwn text objects with ``verbatim: true`` (no auto-linked URLs, channel names or
             mentions); ``&``, ``<``, ``>`` escaped as Slack asks (``<`` is how links and mentions start)
    Teams    an Adaptive Card (1.4) in the message envelope Teams Workflows and incoming webhooks accept;
             its Markdown subset (emphasis, links, lists) neutralised with backslashes
    Discord  one embed; Markdown, masked links, mentions and emoji backslash-escaped, ``@everyone``/``@here``
             broken with a zero-width space, and ``allowed_mentions: {"parse": []}`` so nothing can ping

Links and images are only http(s) URLs: the thumbnail the SDK builds, and the asset's own secure_url.
"""

from __future__ import annotations

import re

TYPE_CHECKING = False  # no `typing` import at run time: it costs cold-start milliseconds for annotations only
if TYPE_CHECKING:
    from typing import Any

MAX_VALUE_CHARS = 300  # one fact or name, before escaping (escaped, it stays under every service's field limit)
WEB_LINK = re.compile(r"^https?://[^\s\x00-\x1f\x7f\"'<>|\\`]+$", re.IGNORECASE)  # never javascript:, data:, ...
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")  # nothing from a payload may start a new line

# How each service colours an alert's tone.
TONES = ("info", "good", "bad", "warn", "neutral")
_DISCORD_COLORS = {"info": 0x3448C5, "good": 0x2EB67D, "bad": 0xE01E5A, "warn": 0xECB22E, "neutral": 0x8C8C8C}
_TEAMS_COLORS = {"info": "Accent", "good": "Good", "bad": "Attention", "warn": "Warning", "neutral": "Default"}


class Alert:
    """One notification as a chat message, in plain (unescaped) text.
    (A plain class, not a dataclass: importing ``dataclasses`` would slow every cold start.)"""

    __slots__ = ("event", "facts", "link", "name", "thumbnail_url", "title", "tone", "when")

    def __init__(self, *, event: str, title: str, name: str, facts: list[tuple[str, str]], tone: str = "info",
                 thumbnail_url: str | None = None, link: str | None = None, when: str | None = None) -> None:
        self.event = event  # the notification_type
        self.title = title  # our words: "New upload", "Moderation rejected"
        self.name = one_line(name)  # the asset(s) it is about
        self.facts = [(label, one_line(value)) for label, value in facts if value]
        self.tone = tone if tone in TONES else "info"
        self.thumbnail_url = thumbnail_url if thumbnail_url and WEB_LINK.match(thumbnail_url) else None
        self.link = link if link and WEB_LINK.match(link) else None
        self.when = when  # ISO 8601 (checked by the caller), or None

    @property
    def headline(self) -> str:
        return f"{self.title}: {clip(self.name, 120)}"


def one_line(text: str) -> str:
    """``text`` with every control character or line break made a space."""
    return _CONTROL.sub(" ", text).strip()


def clip(text: str, limit: int = MAX_VALUE_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- Slack -------------------------------------------------------------------------------------------

def slack_escape(text: str) -> str:
    """Slack's three control characters (docs: "Formatting text for app surfaces", escaping text)."""
    return clip(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_message(alert: Alert) -> dict[str, Any]:
    """An incoming-webhook message: a Block Kit section (thumbnail as its accessory), the facts as fields, a
    link to the asset; ``text`` is the notification fallback. Nothing unfurls."""
    escape = slack_escape
    section: dict[str, Any] = {"type": "section", "text": _mrkdwn(f"*{escape(alert.title)}*\n{escape(alert.name)}")}
    if alert.thumbnail_url:
        section["accessory"] = {"type": "image", "image_url": alert.thumbnail_url,
                                "alt_text": clip(f"Thumbnail of {alert.name}", 200)}
    blocks: list[dict[str, Any]] = [section]
    if alert.facts:
        blocks.append({"type": "section",
                       "fields": [_mrkdwn(f"*{escape(label)}*\n{escape(value)}") for label, value in alert.facts[:10]]})
    if alert.link:
        # Inside <...|...> the URL is escaped like any text (Slack decodes &amp; back); WEB_LINK refused | and >.
        blocks.append({"type": "context", "elements": [_mrkdwn(f"<{escape(alert.link)}|Open the asset>")]})
    return {"text": escape(alert.headline), "blocks": blocks, "unfurl_links": False, "unfurl_media": False}


def _mrkdwn(text: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": text, "verbatim": True}


# --- Microsoft Teams -----------------------------------------------------------------------------------

_TEAMS_SPECIAL = re.compile(r"([\\*_~`\[\]()#<>])")
_LIST_MARKER = re.compile(r"^(\s*)([-+*]|\d+[.)])(?=\s|$)")  # "- x", "1. x": a list item


def teams_escape(text: str) -> str:
    """Adaptive Card TextBlocks and facts render a Markdown subset: emphasis, [links](url), lists."""
    escaped = _TEAMS_SPECIAL.sub(r"\\\1", clip(text))
    return _LIST_MARKER.sub(lambda match: match.group(1) + _escape_marker(match.group(2)), escaped)


def teams_message(alert: Alert) -> dict[str, Any]:
    """An Adaptive Card in the message envelope that Teams Workflows ("When a Teams webhook request is
    received") and the older incoming webhooks both accept."""
    escape = teams_escape
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": escape(alert.title), "weight": "Bolder", "size": "Medium", "wrap": True,
         "color": _TEAMS_COLORS[alert.tone]},
        {"type": "TextBlock", "text": escape(alert.name), "wrap": True},
    ]
    if alert.thumbnail_url:
        body.append({"type": "Image", "url": alert.thumbnail_url, "altText": clip(f"Thumbnail of {alert.name}", 200),
                     "size": "Medium"})
    if alert.facts:
        body.append({"type": "FactSet", "facts": [{"title": escape(label), "value": escape(value)}
                                                  for label, value in alert.facts]})
    card: dict[str, Any] = {"$schema": "http://adaptivecards.io/schemas/adaptive-card.json", "type": "AdaptiveCard",
                            "version": "1.4", "body": body}
    if alert.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the asset", "url": alert.link}]
    return {"type": "message",
            "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                             "content": card}]}


# --- Discord -----------------------------------------------------------------------------------------

# Discord's Markdown takes a backslash before any punctuation: emphasis, spoilers (||), code, quotes, headings,
# lists, masked links [..](..), mentions and timestamps (<@id>, <#id>, <t:..>), emoji (:name:).
_DISCORD_SPECIAL = re.compile(r"([\\*_~`|>#\-+\[\]()<:])")
_BROADCAST = re.compile(r"@(everyone|here)", re.IGNORECASE)


def discord_escape(text: str) -> str:
    escaped = _DISCORD_SPECIAL.sub(r"\\\1", clip(text))
    escaped = _LIST_MARKER.sub(lambda match: match.group(1) + _escape_marker(match.group(2)), escaped)
    return _BROADCAST.sub("@\u200b\\1", escaped)  # a zero-width space: shown as typed, never a mention


def discord_message(alert: Alert) -> dict[str, Any]:
    """One embed (title, the asset, facts as inline fields, thumbnail, the event's time); no content text,
    and no mention of anybody may ping."""
    escape = discord_escape
    embed: dict[str, Any] = {"title": escape(alert.title), "description": escape(alert.name),
                             "color": _DISCORD_COLORS[alert.tone]}
    if alert.link:
        embed["url"] = alert.link
    if alert.facts:
        embed["fields"] = [{"name": escape(label), "value": escape(value), "inline": True}
                           for label, value in alert.facts[:25]]
    if alert.thumbnail_url:
        embed["thumbnail"] = {"url": alert.thumbnail_url}
    if alert.when:
        embed["timestamp"] = alert.when
    return {"embeds": [embed], "allowed_mentions": {"parse": []}}


def _escape_marker(marker: str) -> str:
    """A list marker at the start of a text (``- x``, ``1. x``), made literal."""
    if marker[-1] in ".)":
        return marker[:-1] + "\\" + marker[-1]
    return "\\" + marker
