"""Poll delivery (DESIGN.md §8): drain a function's poll channel through the wrapper a webhook delivery takes.

A trigger ``create_trigger("poll://<channel>", type, uri_type="poll")`` makes Cloudinary buffer notifications
instead of POSTing them. ``api.notifications(channel=...)`` claims up to ``max_messages`` of them (long-polling
up to ``wait_seconds``); a claimed message is invisible for ``visibility_timeout`` seconds and then redelivered,
unless ``api.ack_notifications([receipt_handle, ...])`` acknowledged it. A function's channel is its name.

Each message becomes the request a webhook POST would have been: the byte-exact signed body (``signed_payload``,
base64url without padding — never a re-serialisation of ``payload``), ``X-Cld-Timestamp`` and ``X-Cld-Signature``
from the message, ``Content-Type: application/json``. The function's ``Webhook`` answers it (verification,
statuses, its one log line), and the answer decides:

    200 (done, ignored, dry run)          acknowledged
    503 (a retry can fix it)              not acknowledged: Cloudinary redelivers it after the visibility timeout
    anything else (400, 401, 413, 415, 500)  stored as a dead letter (``shared.dead_letters``), then acknowledged

Nothing is acknowledged that was not answered 200 or stored. Transient API errors (5xx, 420/429, timeouts,
resets) back off and retry; anything else (bad credentials, a refused parameter) is a ``PermanentPollError``.

Three callers: ``python -m shared listen`` (devtools/listen.py), a scheduled Lambda invocation (an EventBridge
"Scheduled Event" reaching ``Webhook.lambda_handler``) and a Vercel cron request (a GET with
``Authorization: Bearer $CRON_SECRET`` reaching ``Webhook.wsgi_app``): see ``lambda_drain`` and ``cron_response``.

Standard library only at module level: the SDK is imported at the first API call.
"""

from __future__ import annotations

import binascii
import hmac
import json
import os
import threading
import time
from collections.abc import Callable, Mapping

from shared import budget, config
from shared.errors import ConfigError
from shared.events import Headers, Request, Response

TYPE_CHECKING = False  # no `typing` import at run time (cold start)
if TYPE_CHECKING:
    from typing import Any

    from shared.dead_letters import Store
    from shared.webhook import Webhook

DEFAULT_MAX_MESSAGES = 10  # per claim (the API allows 1-100)
DEFAULT_WAIT_SECONDS = 20  # long poll (0-60)
DEFAULT_VISIBILITY_TIMEOUT = 60  # seconds a claimed message stays ours (1-600)
CLAIM_MARGIN_SECONDS = 5.0  # a message is started only while its claim has at least this much left, plus...
MIN_MESSAGE_SECONDS = 2.0  # ...this much for the function itself
ACK_ATTEMPTS = 3
DEFAULT_API_TIMEOUT_SECONDS = 8.0  # an ack; a claim waits wait_seconds more
LONG_POLL_SLACK_SECONDS = 10.0  # the client waits this much longer than the server may hold a long poll
BACKOFF_INITIAL_SECONDS = 1.0
BACKOFF_RATE_LIMITED_SECONDS = 10.0
BACKOFF_CAP_SECONDS = 60.0
DEFAULT_CRON_DRAIN_SECONDS = 12.0  # Vercel: vercel.json gives the functions 15 s
SLEEP = time.sleep  # how a scheduled drain waits before a retry, and
CLOCK = time.monotonic  # what it measures its time with (tests replace both)


class PollError(Exception):
    """The notifications API could not be used. ``message`` is one sentence for a person."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class TransientPollError(PollError):
    """5xx, 420/429, a timeout or a reset: a later try may work."""

    def __init__(self, message: str, detail: str = "", rate_limited: bool = False) -> None:
        super().__init__(message, detail)
        self.rate_limited = rate_limited


class PermanentPollError(PollError):
    """Refused credentials, a refused parameter, a malformed CLOUDINARY_URL: no retry can fix it."""


# --- the notifications API ----------------------------------------------------------------------------

class NotificationsAPI:
    """``api.notifications`` and ``api.ack_notifications`` of the configured SDK (``shared.cloudinary_api``:
    CLOUDINARY_URL, ``upload_prefix`` included), with the SDK's exceptions sorted into transient and permanent."""

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout

    def _api(self) -> Any:
        from shared import cloudinary_api

        try:
            return cloudinary_api.sdk().api
        except ConfigError as error:
            raise PermanentPollError(error.log_detail or "CLOUDINARY_URL is not usable") from None

    def _call_timeout(self) -> float:
        if self.timeout is not None:
            return self.timeout
        return config.number("CLOUDINARY_TIMEOUT_SECONDS", DEFAULT_API_TIMEOUT_SECONDS)

    def receive(self, channel: str, *, max_messages: int = DEFAULT_MAX_MESSAGES,
                wait_seconds: int = DEFAULT_WAIT_SECONDS, visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT,
                timeout: float | None = None) -> list[Any]:
        """Claim up to ``max_messages`` messages (``[]`` when the poll comes back empty)."""
        api = self._api()
        limit = timeout if timeout is not None else self._call_timeout() + wait_seconds + LONG_POLL_SLACK_SECONDS
        with _translated("notifications"):
            result = api.notifications(channel=channel, max_messages=max_messages, wait_seconds=wait_seconds,
                                       visibility_timeout=visibility_timeout, timeout=limit)
        messages = result.get("messages", []) if isinstance(result, Mapping) else None
        if not isinstance(messages, list):  # the key is absent when nothing is buffered; anything else is odd
            raise TransientPollError("Cloudinary's notifications API answered without a list of messages.")
        return messages

    def ack(self, receipt_handles: list[str], timeout: float | None = None) -> set[str]:
        """Acknowledge; returns the handles Cloudinary says it acknowledged (all of them when it does not say)."""
        api = self._api()
        with _translated("notifications/ack"):
            result = api.ack_notifications(list(receipt_handles),
                                           timeout=timeout if timeout is not None else self._call_timeout())
        results = result.get("results") if isinstance(result, Mapping) else None
        if not isinstance(results, list):
            return set(receipt_handles)
        return {str(item.get("receipt_handle")) for item in results
                if isinstance(item, Mapping) and item.get("status") == "acked"}


class _translated:
    """The SDK's exceptions as ``TransientPollError`` / ``PermanentPollError`` (``shared.cloudinary_api.calling``
    decides which are which, as it does for the functions' own calls)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._calling: Any = None

    def __enter__(self) -> None:
        from shared import cloudinary_api

        self._calling = cloudinary_api.calling(self.what)
        self._calling.__enter__()

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> bool:
        if error is None:
            self._calling.__exit__(None, None, None)
            return False
        from shared import cloudinary_api
        from shared.errors import DependencyRejected, DependencyUnavailable

        try:
            self._calling.__exit__(kind, error, traceback)
        except DependencyUnavailable as translated:
            raise TransientPollError(f"Cloudinary's notifications API is unavailable ({self.what}).",
                                     detail=translated.log_detail or "",
                                     rate_limited=translated.code == "cloudinary_rate_limited") from error
        except DependencyRejected as translated:
            raise PermanentPollError(_rejection(translated.code, self.what), detail=translated.log_detail or "") \
                from error
        except (cloudinary_api.AssetNotFound, cloudinary_api.AssetConflict) as translated:
            raise PermanentPollError(f"Cloudinary's notifications API answered {self.what}: not found. Poll "
                                     "delivery needs an account where it is enabled.", detail=str(translated)) \
                from error
        if isinstance(error, ValueError):  # the SDK's own argument check
            raise PermanentPollError(f"{self.what}: {error}") from error
        if type(error) is Exception and str(error).startswith("Must supply"):  # the SDK's credentials check
            raise PermanentPollError(f"CLOUDINARY_URL is incomplete: {error}") from error
        return False


def _rejection(code: str, what: str) -> str:
    if code == "cloudinary_unauthorized":
        return (f"Cloudinary refused CLOUDINARY_URL's credentials for {what} (401/403): check the API key and "
                "secret, and that the key may use the notifications API.")
    return f"Cloudinary rejected the {what} request (400): check the channel name and the poll options."


# --- one message ----------------------------------------------------------------------------------------

def decode_signed_payload(signed_payload: Any) -> bytes | None:
    """The signed bytes of ``signed_payload`` (base64url, padding optional), or None when it is not that."""
    if not isinstance(signed_payload, str) or not signed_payload.isascii():
        return None
    text = signed_payload.strip().rstrip("=")
    if len(text) % 4 == 1:
        return None
    standard = text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4)
    try:
        return binascii.a2b_base64(standard.encode("ascii"), strict_mode=True)
    except (binascii.Error, ValueError):
        return None


DEFAULT_POLL_MAX_AGE_SECONDS = 7 * 24 * 60 * 60


def poll_max_age() -> int:
    return config.parsed_once("poll_max_age", ("POLL_MAX_AGE_SECONDS",), lambda: config.integer(
        "POLL_MAX_AGE_SECONDS", DEFAULT_POLL_MAX_AGE_SECONDS, minimum=1))


def message_request(message: Mapping[str, Any], channel: str, body: bytes) -> Request:
    """The request a webhook POST of this message would have been: its signed bytes and signature headers."""
    pairs = [("Content-Type", "application/json")]
    timestamp = message.get("timestamp")
    if timestamp is not None and not isinstance(timestamp, bool):
        pairs.append(("X-Cld-Timestamp", str(timestamp)))
    signature = message.get("signature")
    if isinstance(signature, str):
        pairs.append(("X-Cld-Signature", signature))
    return Request("POST", f"/poll/{channel}", Headers(pairs), body, host=None, scheme="poll")


class Outcome:
    """What became of one message: the function's answer and where the message went."""

    __slots__ = ("acked", "answer", "channel", "dead_letter", "disposition", "function", "ms", "note",
                 "notification_type", "public_id", "receipt_handle", "status")

    # dispositions
    ACKED = "acked"  # answered 200 and acknowledged
    DEAD_LETTER = "dead_letter"  # refused for good, stored, acknowledged
    KEPT = "kept"  # 503 (or could not be stored): left for redelivery
    ACK_FAILED = "ack_failed"  # handled or stored, but the acknowledgement failed: it will come back (idempotent)

    def __init__(self, function: str, channel: str, receipt_handle: str | None) -> None:
        self.function = function
        self.channel = channel
        self.receipt_handle = receipt_handle
        self.status = 0
        self.answer: dict[str, Any] = {}
        self.notification_type: str | None = None
        self.public_id: str | None = None
        self.disposition = self.KEPT
        self.acked = False
        self.dead_letter: int | None = None
        self.note = ""
        self.ms = 0.0

    def __repr__(self) -> str:
        return f"Outcome({self.function} {self.status} {self.disposition})"

    @property
    def error(self) -> str:
        return str(self.answer.get("error") or "") if isinstance(self.answer, dict) else ""

    @property
    def result(self) -> str:
        """The answer's short word: done, ignored, dry_run, or the error code."""
        if isinstance(self.answer, dict):
            return str(self.answer.get("status") or self.answer.get("error") or "")
        return ""


def _describe(body: bytes) -> tuple[str | None, str | None]:
    """notification_type and public_id of a body, for the line about it (whatever the verdict)."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, None
    if not isinstance(payload, dict):
        return None, None
    from shared.webhook import Notification

    kind = payload.get("notification_type")
    return (kind if isinstance(kind, str) else None), Notification(payload).public_id


class Backoff:
    """Exponential waits between retries of a transient failure: 1, 2, 4, ... up to 60 s (10 s at least after
    a rate limit); ``sleep(seconds)`` does the waiting (a stop event's ``wait`` ends it early)."""

    def __init__(self, sleep: Callable[[float], Any]) -> None:
        self.sleep = sleep
        self.failures = 0

    def delay(self, rate_limited: bool) -> float:
        seconds = min(BACKOFF_CAP_SECONDS, BACKOFF_INITIAL_SECONDS * (2 ** self.failures))
        return max(seconds, BACKOFF_RATE_LIMITED_SECONDS) if rate_limited else seconds

    def wait(self, rate_limited: bool = False) -> float:
        seconds = self.delay(rate_limited)
        self.failures += 1
        self.sleep(seconds)
        return seconds

    def reset(self) -> None:
        self.failures = 0


class Drain:
    """Drain one function's channel. Every knob a caller may turn is a parameter; the defaults are `listen`'s.

    webhook             the function's ``Webhook`` (its ``handle``)
    channel             the poll channel (default: the function's name)
    api                 a ``NotificationsAPI`` (or a stand-in with ``receive`` and ``ack``)
    store               the dead-letter ``Store``, or a callable returning it (opened when first needed)
    once                stop after the first poll that comes back empty
    deadline            a ``clock()`` value after which no message is started and no poll made (None: none)
    stop                a ``threading.Event``: when set, the message in hand finishes, nothing more is taken
    sleep               how to wait between retries (default: ``stop.wait``, so a stop interrupts it)
    max_failures        give up (PermanentPollError) after this many transient failures in a row (None: never)
    on_message          ``on_message(function, message, response, ms)`` after each message's answer is acted on:
                        ``response`` is the ``shared.events.Response`` (None for a message no request could be
                        built from). For observers such as the local inspector.
    on_outcome          ``on_outcome(outcome)`` with the ``Outcome`` (the line `listen` prints)
    on_retry            ``on_retry(error, seconds)`` before each backoff wait
    clock               ``time.monotonic`` (claims and the deadline are measured with it)
    """

    def __init__(self, webhook: Webhook, *, channel: str | None = None, api: Any = None,
                 store: Store | Callable[[], Store] | None = None, once: bool = False,
                 wait_seconds: int = DEFAULT_WAIT_SECONDS, max_messages: int = DEFAULT_MAX_MESSAGES,
                 visibility_timeout: int = DEFAULT_VISIBILITY_TIMEOUT, deadline: float | None = None,
                 stop: threading.Event | None = None, sleep: Callable[[float], Any] | None = None,
                 max_failures: int | None = None,
                 on_message: Callable[[str, Mapping[str, Any], Response | None, float], Any] | None = None,
                 on_outcome: Callable[[Outcome], Any] | None = None,
                 on_retry: Callable[[PollError, float], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.webhook = webhook
        self.function = webhook.name
        self.channel = channel or webhook.name
        self.api = api if api is not None else NotificationsAPI()
        self._store = store
        self.once = once
        self.wait_seconds = wait_seconds
        self.max_messages = max_messages
        self.visibility_timeout = visibility_timeout
        self.deadline = deadline
        self.stop = stop if stop is not None else threading.Event()
        self.backoff = Backoff(sleep if sleep is not None else self.stop.wait)
        self.max_failures = max_failures
        self.on_message = on_message
        self.on_outcome = on_outcome
        self.on_retry = on_retry
        self.clock = clock
        self.busy = False  # a message is in hand (``listen`` waits for it on Ctrl-C)
        self.gave_up: PollError | None = None  # the transient error a deadline or a stop ended the retries of
        self.counts = {"messages": 0, "acked": 0, "kept": 0, "dead_letters": 0, "ack_failed": 0, "polls": 0,
                       "retries": 0}

    # --- the loop ---

    def run(self) -> dict[str, int]:
        """Poll and handle until stopped, out of time, or (``once``) a poll comes back empty."""
        while not self.stop.is_set() and self._time_left() > MIN_MESSAGE_SECONDS:
            messages = self._receive()
            if messages is None:  # gave up waiting (stopped or out of time)
                break
            if not messages:
                if self.once:
                    break
                continue
            self._handle_batch(messages)
        return dict(self.counts)

    def _receive(self) -> list[Any] | None:
        while True:
            left = self._time_left()
            wait = self.wait_seconds if left == float("inf") else max(0, min(self.wait_seconds, int(left) - 3))
            timeout = None if left == float("inf") else max(1.0, left - 1.0)
            try:
                self.counts["polls"] += 1
                messages = self.api.receive(self.channel, max_messages=self.max_messages, wait_seconds=wait,
                                            visibility_timeout=self.visibility_timeout, timeout=timeout)
            except TransientPollError as error:
                if not self._retry(error):
                    return None
                continue
            self.backoff.reset()
            if self.stop.is_set():  # stopped while the long poll was held: these claims run out by themselves
                return None
            return messages

    def _retry(self, error: TransientPollError) -> bool:
        """Wait before the next try; False when the wait would outlast the deadline or the drain was stopped.
        Raises PermanentPollError once ``max_failures`` transient failures came in a row."""
        self.counts["retries"] += 1
        if self.max_failures is not None and self.backoff.failures + 1 >= self.max_failures:
            raise PermanentPollError(f"{error.message} Gave up after {self.backoff.failures + 1} attempts.",
                                     detail=error.detail)
        seconds = self.backoff.delay(error.rate_limited)
        if seconds >= self._time_left() - MIN_MESSAGE_SECONDS:
            self.gave_up = error
            return False
        if self.on_retry:
            self.on_retry(error, seconds)
        self.backoff.wait(error.rate_limited)
        if self.stop.is_set():
            self.gave_up = error
            return False
        return True

    def _handle_batch(self, messages: list[Any]) -> None:
        claimed_at = self.clock()
        seen: set[str] = set()
        for message in messages:
            if self.stop.is_set():
                return  # Ctrl-C: the rest stay unacknowledged and come back after the visibility timeout
            claim_left = self.visibility_timeout - (self.clock() - claimed_at) - CLAIM_MARGIN_SECONDS
            time_left = min(claim_left, self._time_left())
            if time_left < MIN_MESSAGE_SECONDS:
                return  # the claim (or the drain) runs out: leave the rest to their redelivery
            handle = message.get("receipt_handle") if isinstance(message, Mapping) else None
            if isinstance(handle, str):
                if handle in seen:
                    continue  # the same claim listed twice: one handling
                seen.add(handle)
            self.busy = True
            try:
                self.handle(message, time_left=time_left)
            finally:
                self.busy = False

    def _time_left(self) -> float:
        return float("inf") if self.deadline is None else self.deadline - self.clock()

    # --- one message ---

    def handle(self, message: Any, time_left: float | None = None) -> Outcome:
        """Answer one message through the Webhook, then acknowledge, keep or dead-letter it."""
        started = time.perf_counter()
        envelope: Mapping[str, Any] = message if isinstance(message, Mapping) else {}
        handle = envelope.get("receipt_handle")
        outcome = Outcome(self.function, self.channel, handle if isinstance(handle, str) else None)
        self.counts["messages"] += 1
        body = decode_signed_payload(envelope.get("signed_payload"))
        response: Response | None = None
        if body is None:
            # No signed bytes to verify: nothing a function could be given. Kept for a person to see.
            raw = envelope.get("signed_payload")
            body = raw.encode("utf-8", "replace") if isinstance(raw, str) else b""
            outcome.status = 400
            outcome.answer = {"error": "malformed_message",
                              "message": "The message's signed_payload is missing or not base64url."}
        else:
            request = message_request(envelope, self.channel, body)
            # A message waits in the channel while nothing drains it (a laptop asleep, a paused schedule): its
            # signature is checked as ever, but its age only against POLL_MAX_AGE_SECONDS. The 2-hour window
            # guards webhook URLs against replayed captures; this message came from Cloudinary's own API.
            response = self.webhook(request, time_left=time_left, max_age=poll_max_age())
            outcome.status, outcome.answer = response.status, dict(response.body)
        outcome.notification_type, outcome.public_id = _describe(body)

        if outcome.status == 200:
            self._acknowledge(outcome)
        elif outcome.status == 503:
            outcome.disposition = Outcome.KEPT
            outcome.note = f"redelivered after the visibility timeout ({self.visibility_timeout} s)"
        else:
            self._dead_letter(outcome, envelope, body)
        self.counts[{"acked": "acked", "dead_letter": "dead_letters", "kept": "kept",
                     "ack_failed": "ack_failed"}[outcome.disposition]] += 1
        outcome.ms = round((time.perf_counter() - started) * 1000, 1)
        if self.on_message:
            try:
                self.on_message(self.function, envelope, response, outcome.ms)
            except Exception:  # an observer's failure is not the message's: it was answered and acted on
                from shared.webhook import log

                log.warning("poll: on_message observer failed", exc_info=True)
        if self.on_outcome:
            self.on_outcome(outcome)
        return outcome

    def _dead_letter(self, outcome: Outcome, envelope: Mapping[str, Any], body: bytes) -> None:
        from shared.dead_letters import StoreUnavailable

        timestamp = envelope.get("timestamp")
        signature = envelope.get("signature")
        try:
            store = self._dead_letter_store()
            outcome.dead_letter = store.add(
                self.function, body, "" if timestamp is None else str(timestamp),
                signature if isinstance(signature, str) else "", status=outcome.status, answer=outcome.answer,
                channel=self.channel)
        except (StoreUnavailable, ConfigError) as error:
            # Not stored, so not acknowledged: it comes back after the visibility timeout, and is stored then.
            outcome.disposition = Outcome.KEPT
            detail = error.log_detail if isinstance(error, ConfigError) else str(error)
            outcome.note = f"not stored, so not acknowledged: dead-letter store: {detail}"
            return
        self._acknowledge(outcome, dead_letter=True)

    def _dead_letter_store(self) -> Store:
        if self._store is None:
            from shared import dead_letters

            self._store = dead_letters.open_store()
        if callable(self._store) and not hasattr(self._store, "add"):
            self._store = self._store()
        return self._store  # type: ignore[return-value]

    def _acknowledge(self, outcome: Outcome, dead_letter: bool = False) -> None:
        handled = Outcome.DEAD_LETTER if dead_letter else Outcome.ACKED
        if outcome.receipt_handle is None:
            outcome.disposition = Outcome.ACK_FAILED
            outcome.note = "the message has no receipt_handle to acknowledge"
            return
        attempts = 0
        while True:
            attempts += 1
            try:
                acked = self.api.ack([outcome.receipt_handle])
            except TransientPollError as error:
                if attempts >= ACK_ATTEMPTS:
                    outcome.disposition = Outcome.ACK_FAILED
                    outcome.note = f"not acknowledged ({error.message}): it comes back, and is answered again"
                    return
                self.counts["retries"] += 1
                seconds = self.backoff.delay(error.rate_limited)
                if self.on_retry:
                    self.on_retry(error, seconds)
                self.backoff.sleep(seconds)  # the message in hand: finished even when a stop was requested
                continue
            except PermanentPollError as error:
                outcome.disposition = Outcome.ACK_FAILED
                outcome.note = f"not acknowledged: {error.message}"
                return
            break
        if outcome.receipt_handle in acked:
            outcome.disposition = handled
            outcome.acked = True
        else:
            outcome.disposition = Outcome.ACK_FAILED
            outcome.note = "Cloudinary did not acknowledge it (its claim ran out?): it comes back"


# --- scheduled drains: AWS Lambda (EventBridge schedule) and Vercel (cron) -------------------------------

def is_scheduled_event(event: Any) -> bool:
    """An EventBridge schedule's event: ``{"source": "aws.events", "detail-type": "Scheduled Event", ...}``."""
    return (isinstance(event, Mapping) and event.get("detail-type") == "Scheduled Event"
            and event.get("source") == "aws.events")


def scheduled_drain(webhook: Webhook, seconds: float, trigger: str, **options: Any) -> dict[str, Any]:
    """Drain the function's channel until it is empty or ``seconds`` are up; log one line; return the counts.
    Raises PollError or ConfigError (logged first) when the channel cannot be drained."""
    from shared.webhook import log

    started = time.perf_counter()
    options.setdefault("sleep", SLEEP)
    options.setdefault("clock", CLOCK)
    drain = Drain(webhook, once=True, wait_seconds=0, deadline=options["clock"]() + seconds, **options)
    line: dict[str, Any] = {"function": webhook.name, "poll": f"poll://{drain.channel}", "trigger": trigger}
    try:
        counts = drain.run()
    except (PollError, ConfigError) as error:
        message = error.message if isinstance(error, PollError) else (error.log_detail or error.message)
        line.update(drain.counts, outcome="error", error=message[:300],
                    ms=round((time.perf_counter() - started) * 1000, 1))
        log.error(json.dumps(line, ensure_ascii=True, default=str))
        raise
    outcome = "unavailable" if drain.gave_up else "drained"
    line.update(counts, outcome=outcome, ms=round((time.perf_counter() - started) * 1000, 1))
    if drain.gave_up:
        line["error"] = drain.gave_up.message
    warn = drain.gave_up or counts["kept"] or counts["ack_failed"]
    log.log(30 if warn else 20, json.dumps(line, ensure_ascii=True, default=str))
    return {"status": outcome, "channel": drain.channel, **counts}


def lambda_drain(webhook: Webhook, context: Any) -> dict[str, Any]:
    """A scheduled Lambda invocation: drain for the invocation's remaining time minus a margin. A channel that
    cannot be drained raises (the invocation fails, and shows in the function's Errors metric)."""
    seconds = budget.lambda_seconds_left(context, budget.SCHEDULED_MARGIN_SECONDS)
    return scheduled_drain(webhook, DEFAULT_CRON_DRAIN_SECONDS if seconds is None else seconds, "schedule")


def is_cron_request(request: Request) -> bool:
    """A GET that claims to be a scheduler's: an Authorization header, or Vercel's cron user agent. Whether it
    is one is for ``cron_response`` to check."""
    agent = request.headers.get("User-Agent", "")
    return request.method == "GET" and ("Authorization" in request.headers or agent.startswith("vercel-cron"))


def cron_response(webhook: Webhook, request: Request) -> Response:
    """Vercel's cron: ``Authorization: Bearer $CRON_SECRET`` on a GET (as Vercel documents it) drains the channel
    for POLL_DRAIN_SECONDS (12 s: vercel.json gives the functions 15 s). Without CRON_SECRET configured: 500,
    never a drain; a wrong or missing token: 401."""
    started = time.perf_counter()
    secret = os.environ.get("CRON_SECRET", "").strip()
    if not secret:
        webhook._log_line(None, None, "rejected", 500, started,
                          {"error": "not_configured", "detail": "CRON_SECRET is not set: cron requests cannot be "
                                                                "authenticated, so nothing is drained"})
        return Response(500, {"error": "not_configured",
                              "message": "The function is not configured; its log says what is missing."})
    presented = request.headers.get("Authorization", "")
    expected = f"Bearer {secret}"
    if not hmac.compare_digest(presented.encode("utf-8", "replace"), expected.encode("utf-8")):
        webhook._log_line(None, None, "rejected", 401, started, {"error": "invalid_cron_secret"})
        return Response(401, {"error": "invalid_cron_secret",
                              "message": "A cron request must carry Authorization: Bearer <CRON_SECRET>."})
    try:
        seconds = config.number("POLL_DRAIN_SECONDS", DEFAULT_CRON_DRAIN_SECONDS)
        summary = scheduled_drain(webhook, seconds, "cron")
    except ConfigError:
        return Response(500, {"error": "not_configured",
                              "message": "The function is not configured; its log says what is missing."})
    except PollError:
        return Response(500, {"error": "poll_failed", "message": "The channel could not be drained; see the log."})
    return Response(503 if summary["status"] == "unavailable" else 200, summary)
