"""The wrapper every function is written with: ``@webhook(accepts={...})``.

It does, in this order, everything a function should not repeat:

    method (405) -> body size (413) -> content type (415) -> signature (401, or 500 with no secret)
    -> JSON object with a notification_type (400) -> accepted types (200 ignored)
    -> required settings (500, or dry run in local demo mode) -> the function -> 200
    errors raised by the function: their own status; anything unexpected: 500 with a generic body.

and logs one line per request (function, notification_type, public_id, outcome, status, ms) without
secrets, signatures or payloads. A function then reads as its story: decide, act, say what was done.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping

from shared import budget, coldstart, config, verify
from shared.errors import (
    AssetGone,
    BadRequest,
    ConfigError,
    MethodNotAllowed,
    PayloadTooLarge,
    Unauthorized,
    UnsupportedMediaType,
    WebhookError,
)
from shared.events import (
    DEFAULT_MAX_BODY_BYTES,
    Request,
    Response,
    lambda_response,
    request_from_lambda_event,
    request_from_wsgi,
    wsgi_reply,
)

TYPE_CHECKING = False  # cold start: see docs/DESIGN.md §8
if TYPE_CHECKING:
    from typing import Any

# What a request may put into its log line and its answer: enough to find the asset, never a whole payload.
MAX_LOGGED_CHARS = 200
MAX_ECHOED_CHARS = 1024

log = logging.getLogger("cloudinary_webhooks")
if log.level == logging.NOTSET:
    # AWS Lambda's root logger stops at WARNING; the one line per request is INFO and must get through.
    log.setLevel(logging.INFO)


class Notification(Mapping):  # Mapping[str, Any]; unsubscripted at run time (no typing import)
    """A parsed notification: the payload as a read-only mapping, plus the fields every function reads."""

    def __init__(self, payload: dict[str, Any]) -> None:
        self._payload = payload

    def __getitem__(self, key: str) -> Any:
        return self._payload[key]

    def __iter__(self):
        return iter(self._payload)

    def __len__(self) -> int:
        return len(self._payload)

    @property
    def type(self) -> str:
        return self._payload["notification_type"]

    @property
    def public_id(self) -> str | None:
        """The asset the notification is about, for logs; None when it names several or none."""
        public_id = self._payload.get("public_id")
        if isinstance(public_id, str):
            return public_id
        resources = self._payload.get("resources")
        if isinstance(resources, list) and len(resources) == 1 and isinstance(resources[0], Mapping):
            named = resources[0].get("public_id")
            return named if isinstance(named, str) else None
        return None

    def require(self, key: str, kind: type | tuple[type, ...] = str) -> Any:
        """The field ``key``, which the workflow cannot do without: missing or mistyped is a 400."""
        value = self._payload.get(key)
        if value is None or (kind is str and value == ""):
            raise BadRequest(f"The notification has no {key}.", code="missing_field")
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise BadRequest(f"The notification's {key} has the wrong type.", code="bad_field")
        return value

    def raw(self) -> dict[str, Any]:
        return self._payload


class Result:
    """What a function returns: ``ctx.done(...)`` or ``ctx.ignored(reason)``."""

    __slots__ = ("details", "reason", "status")

    def __init__(self, status: str, reason: str | None = None, details: dict[str, Any] | None = None) -> None:
        self.status = status  # "done" or "ignored"
        self.reason = reason
        self.details = details if details is not None else {}

    def __repr__(self) -> str:
        return f"Result({self.status!r}, reason={self.reason!r}, details={self.details!r})"


class Context:
    """What a function gets besides the notification: settings, dry-run, and where to record actions."""

    def __init__(self, function: str, request: Request, settings: config.Settings, dry_run: bool) -> None:
        self.function = function
        self.request = request
        self.settings = settings
        self.dry_run = dry_run
        self.actions: list[dict[str, Any]] = []
        self.log_fields: dict[str, Any] = {}

    @property
    def deadline(self) -> float:
        """When this request's time budget ends (``time.monotonic``); see ``shared.budget``."""
        return budget.deadline()

    def remaining(self) -> float:
        """Seconds left of this request's time budget."""
        return budget.remaining()

    @property
    def can_read_cloudinary(self) -> bool:
        """False only in the local demo without a CLOUDINARY_URL: nothing can be read, so a function plans
        from what the notification says (and reports that it did). A dry run with credentials reads."""
        return bool(self.settings.get("CLOUDINARY_URL")) or not self.dry_run

    def act(self, action: str, perform: Callable[[], Any] | None = None, **details: Any) -> Any:
        """Record ``action`` and, unless this is a dry run, do it. Returns what ``perform`` returned."""
        self.actions.append({"action": action, **details})
        if self.dry_run or perform is None:
            return None
        return perform()

    def once(self, action: str, perform: Callable[[], Any], **details: Any) -> Any:
        """Like ``act``, but at most once per notification: a retry or a replay of the same signed request
        skips ``perform`` (DESIGN.md §8). Returns a ``shared.idempotency.Outcome`` (``.repeated``, ``.result``)."""
        from shared import idempotency  # standard library only; a store's client loads at its first use

        return idempotency.once(self, action, perform, **details)

    def done(self, **details: Any) -> Result:
        return Result("done", details=details)

    def ignored(self, reason: str, **details: Any) -> Result:
        return Result("ignored", reason=reason, details=details)

    def note(self, **fields: Any) -> None:
        """Add short, non-secret fields to this request's log line."""
        self.log_fields.update(fields)


Handler = Callable[[Notification, Context], Result]
# A function's scheduled task: (the schedule's options, seconds the invocation has left or None) -> what it did.
Scheduled = Callable[[Mapping, "float | None"], Mapping]  # no `typing` at run time: Mapping[str, Any] in words


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _is_unicode_text(payload: Any) -> bool:
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def _is_json(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/")
                                                 and media_type.endswith("+json"))


class Webhook:
    """A function wrapped with everything in the module docstring. Call it with a ``Request``."""

    def __init__(self, handler: Handler, *, name: str, accepts: Iterable[str], requires: Iterable[str],
                 optional: Iterable[str], demo_values: Mapping[str, str],
                 serverless_requires: Iterable[str] = (), scheduled: Mapping[str, Scheduled] | None = None) -> None:
        self.handler = handler
        self.name = name
        self.accepts = frozenset(accepts)
        self.requires = tuple(requires)
        self.optional = tuple(optional)
        self.serverless_requires = tuple(serverless_requires)
        self.demo_values = dict(demo_values)
        self.scheduled = dict(scheduled or {})
        self.clock: Callable[[], float] = time.time
        self.__doc__ = handler.__doc__

    # --- entry points, one per platform ---

    def lambda_handler(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """AWS Lambda (API Gateway v1/v2, Function URL) and Netlify-shaped entry point; an EventBridge schedule's
        event drains the function's poll channel instead (``shared.poll``, DESIGN.md §8), and a schedule whose
        input names one of the function's scheduled tasks (``{"reconcile": {...}}``) runs that task."""
        started = time.perf_counter()
        if isinstance(event, Mapping) and event.get("detail-type") == "Scheduled Event":
            from shared import poll  # poll delivery only: a webhook request never imports it

            if poll.is_scheduled_event(event):
                return poll.lambda_drain(self, context)
        task = self._scheduled_task(event)
        if task is not None:
            return self._run_scheduled(*task, context)
        try:
            request = request_from_lambda_event(event)
        except WebhookError as error:
            response = self._error_response(error)
            self._log_line(None, None, "rejected", response.status, started, {"error": error.code})
            return lambda_response(response)
        time_left = budget.lambda_seconds_left(context, budget.LAMBDA_MARGIN_SECONDS)  # Lambda's own timeout
        return lambda_response(self(request, time_left=time_left))

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        """WSGI entry point: Vercel ``api/`` shims, the local server, any WSGI host."""
        started = time.perf_counter()
        try:
            request = request_from_wsgi(environ, self._max_body_bytes())
        except WebhookError as error:
            response = self._error_response(error)
            self._log_line(None, None, "rejected", response.status, started, {"error": error.code})
            return wsgi_reply(response, start_response)
        if request.method == "GET":
            from shared import poll  # a GET only: a notification's POST never imports it

            if poll.is_cron_request(request):  # Vercel's cron (Authorization: Bearer $CRON_SECRET) drains
                return wsgi_reply(poll.cron_response(self, request), start_response)
        chunks = wsgi_reply(self(request), start_response)
        # HEAD is answered 405 like any other method, with headers only: a server that writes whatever the
        # app returns (Vercel's) would otherwise send a body no client reads.
        return [] if environ.get("REQUEST_METHOD") == "HEAD" else chunks

    # --- scheduled tasks ---

    def _scheduled_task(self, event: Any) -> tuple[str, Mapping[str, Any]] | None:
        """(name, options) when ``event`` is a schedule's input naming one of the function's tasks: exactly one key.
        An HTTP event (Function URL, API Gateway, Netlify) always has several, so none is ever taken for one."""
        if not self.scheduled or not isinstance(event, Mapping) or len(event) != 1:
            return None
        ((name, options),) = event.items()
        return (name, options) if name in self.scheduled and isinstance(options, Mapping) else None

    def _run_scheduled(self, name: str, options: Mapping[str, Any], context: Any) -> dict[str, Any]:
        """Run a scheduled task within the invocation's time (less a margin to log and return) and log one line. A
        task that fails raises: the invocation fails and shows in the function's Errors metric."""
        started = time.perf_counter()
        seconds = budget.lambda_seconds_left(context, budget.SCHEDULED_MARGIN_SECONDS)
        line: dict[str, Any] = {"function": self.name, "scheduled": name}
        try:
            result = dict(self.scheduled[name](options, seconds))
        except Exception as error:
            detail = (error.log_detail or error.message) if isinstance(error, WebhookError) else type(error).__name__
            line.update(outcome="error", error=_capped(detail, MAX_LOGGED_CHARS),
                        ms=round((time.perf_counter() - started) * 1000, 1))
            log.error(json.dumps(line, ensure_ascii=True, default=str), exc_info=not isinstance(error, WebhookError))
            raise
        for key, value in result.items():
            line.setdefault(key, _capped(value, MAX_LOGGED_CHARS))
        line["ms"] = round((time.perf_counter() - started) * 1000, 1)
        log.info(json.dumps(line, ensure_ascii=True, default=str))
        return result

    # --- the pipeline ---

    def __call__(self, request: Request, *, time_left: float | None = None,
                 max_age: int | None = None) -> Response:
        """Answer one request; ``time_left``: seconds the platform still gives it (Lambda tells);
        ``max_age``: a signature age to accept beyond the configured one (only the poll loop, which fetched
        the message itself over Cloudinary's authenticated API, passes it)."""
        started = time.perf_counter()
        coldstart.settled()  # the first request: what the cold start built is for good
        try:
            return self._handle(request, started, time_left, max_age)
        finally:
            budget.finish()

    def _handle(self, request: Request, started: float, time_left: float | None, max_age: int | None) -> Response:
        notification: Notification | None = None
        context: Context | None = None
        try:
            notification = self._accept(request, max_age)
            seconds = config.parsed_once("budget", ("WEBHOOK_TIME_BUDGET_SECONDS",), lambda: config.number(
                "WEBHOOK_TIME_BUDGET_SECONDS", budget.DEFAULT_BUDGET_SECONDS))
            budget.start(seconds if time_left is None else min(seconds, time_left))
            if notification.type not in self.accepts and ANY_TYPE not in self.accepts:
                reason = f"notification_type {notification.type[:MAX_LOGGED_CHARS]!r} is not handled by {self.name}"
                return self._finish(Response(200, {"status": "ignored", "reason": reason}),
                                    notification, context, "ignored", started)
            context = self._context(request)
            result = self.handler(notification, context)
            return self._finish(self._result_response(result, context), notification, context,
                                None, started)
        except AssetGone:
            # A 404 the function did not handle: the asset went away between the notification and our call.
            body = {"status": "ignored", "reason": "the asset no longer exists"}
            return self._finish(Response(200, body), notification, context, "ignored", started)
        except WebhookError as error:
            return self._finish(self._error_response(error), notification, context, "error", started,
                                error=error)
        except Exception:
            # The traceback rides on the request's one log line; the caller gets a generic body.
            body = {"error": "internal_error", "message": "The function failed; its log has the details."}
            return self._finish(Response(500, body), notification, context, "error", started,
                                exc_info=True)

    def _accept(self, request: Request, wider_max_age: int | None = None) -> Notification:
        """Everything before the function runs: method, size, type, signature, JSON."""
        if request.method != "POST":
            raise MethodNotAllowed(request.method)
        max_body = self._max_body_bytes()
        if len(request.body) > max_body:
            raise PayloadTooLarge(f"The body is over {max_body} bytes.")
        if not _is_json(request.headers.get("Content-Type")):
            raise UnsupportedMediaType("Cloudinary notifications are application/json.")

        secrets, max_age, max_future = config.parsed_once("signature", _SIGNATURE_SETTINGS, _signature_settings)
        if wider_max_age is not None:
            max_age = max(max_age, wider_max_age)
        headers = request.headers
        try:
            verify.verify(request.body, verify.header(headers, verify.TIMESTAMP_HEADER),
                          verify.header(headers, verify.SIGNATURE_HEADER), secrets, now=self.clock(),
                          max_age=max_age, max_future=max_future)
        except verify.NoSecretConfigured:
            raise ConfigError("no signing secret: set CLOUDINARY_URL (or CLOUDINARY_NOTIFICATION_SECRETS)") \
                from None
        except verify.SignatureError as error:
            raise Unauthorized(error.message, code=error.reason) from None

        try:
            payload = json.loads(request.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            raise BadRequest("The body is not valid UTF-8 JSON.", code="invalid_json") from None
        if not isinstance(payload, dict):
            raise BadRequest("The body is JSON but not an object.", code="invalid_json")
        # JSON may escape half of a surrogate pair ("\ud800"): valid syntax, but not text any function could
        # encode, log or store. Only bodies with such an escape pay for the check.
        if _SURROGATE_ESCAPE.search(request.body) and not _is_unicode_text(payload):
            raise BadRequest("The body holds a string that is not valid Unicode.", code="invalid_json")
        if not isinstance(payload.get("notification_type"), str) or not payload["notification_type"]:
            raise BadRequest("The notification has no notification_type.", code="missing_field")
        return Notification(payload)

    def _context(self, request: Request) -> Context:
        platform = config.serverless_platform()
        if platform:
            # Optional on a laptop (a local file serves), required where the disk is read-only and wiped.
            unset = [name for name in self.serverless_requires if not os.environ.get(name, "").strip()]
            if unset:
                raise ConfigError(f"{self.name}: not configured: {', '.join(unset)} must be set on {platform} "
                                  "(its disk is read-only and wiped between instances)")
        missing = [name for name in self.requires if not os.environ.get(name, "").strip()]
        demo = config.demo_mode()
        if missing and not demo:
            raise ConfigError(f"{self.name}: missing environment variable(s) {', '.join(missing)}")
        dry_run = config.flag("DRY_RUN") or bool(missing)  # demo mode without credentials: plan only
        settings = config.Settings(self.name, os.environ, self.demo_values if demo else None)
        return Context(self.name, request, settings, dry_run)

    def _result_response(self, result: Result, context: Context) -> Response:
        if result.status == "ignored":
            body: dict[str, Any] = {"status": "ignored", "reason": result.reason}
        else:
            body = {"status": "dry_run" if context.dry_run else "done", "actions": context.actions}
        for key, value in result.details.items():
            body.setdefault(key, value)  # a detail named "status" must not falsify the outcome
        return Response(200, _capped(body, MAX_ECHOED_CHARS))

    def _error_response(self, error: WebhookError) -> Response:
        return Response(error.status, error.body(), dict(error.headers))

    def _max_body_bytes(self) -> int:
        return config.parsed_once("max_body", ("WEBHOOK_MAX_BODY_BYTES",), lambda: config.integer(
            "WEBHOOK_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, minimum=1))

    # --- the one log line ---

    def _finish(self, response: Response, notification: Notification | None, context: Context | None,
                outcome: str | None, started: float, error: WebhookError | None = None,
                exc_info: bool = False) -> Response:
        if outcome is None:
            outcome = response.body.get("status", "done")
        extra = dict(context.log_fields) if context else {}
        if error is not None:
            extra["error"] = error.code
            if error.log_detail:
                extra["detail"] = error.log_detail
        self._log_line(notification.type if notification else None,
                       notification.public_id if notification else None,
                       outcome, response.status, started, extra, exc_info=exc_info)
        return response

    def _log_line(self, notification_type: str | None, public_id: str | None, outcome: str, status: int,
                  started: float, extra: Mapping[str, Any] | None = None, exc_info: bool = False) -> None:
        line = {
            "function": self.name,
            "notification_type": _capped(notification_type, MAX_LOGGED_CHARS),
            "public_id": _capped(public_id, MAX_LOGGED_CHARS),
            "outcome": outcome,
            "status": status,
            "ms": round((time.perf_counter() - started) * 1000, 1),
        }
        for key, value in (extra or {}).items():
            line.setdefault(key, _capped(value, MAX_LOGGED_CHARS))  # a note named "status" cannot falsify it
        level = logging.ERROR if status >= 500 else logging.WARNING if status >= 400 else logging.INFO
        # ensure_ascii: a payload's line breaks, C1 controls or bidi overrides reach the log escaped, never raw
        log.log(level, json.dumps(line, ensure_ascii=True, default=str), exc_info=exc_info)


def _capped(value: Any, limit: int, depth: int = 0) -> Any:
    """``value`` with every string cut to ``limit`` characters (nested lists and objects too): a signed
    payload may hold a 1 MiB public_id, which must not go whole into a log line or back to the caller."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + f"…(+{len(value) - limit} chars)"
    if depth >= 4:
        return value
    if isinstance(value, dict):
        return {key: _capped(item, limit, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_capped(item, limit, depth + 1) for item in value]
    return value


# What the signature check reads, parsed once per value (shared.config.parsed_once).
_SIGNATURE_SETTINGS = ("CLOUDINARY_URL", "CLOUDINARY_NOTIFICATION_SECRETS", "WEBHOOK_MAX_AGE_SECONDS",
                       "WEBHOOK_MAX_FUTURE_SECONDS")


def _signature_settings() -> tuple[list[str], int, int]:
    return (config.signing_secrets(),
            config.integer("WEBHOOK_MAX_AGE_SECONDS", verify.DEFAULT_MAX_AGE_SECONDS),
            config.integer("WEBHOOK_MAX_FUTURE_SECONDS", verify.DEFAULT_MAX_FUTURE_SECONDS))


ANY_TYPE = "*"  # in ``accepts``: every notification type, including ones Cloudinary adds later


def webhook(*, accepts: Iterable[str], requires: Iterable[str] = (), optional: Iterable[str] = (),
            serverless_requires: Iterable[str] = (), demo_values: Mapping[str, str] | None = None,
            name: str | None = None, scheduled: Mapping[str, Scheduled] | None = None) -> Callable[[Handler], Webhook]:
    """Wrap a function ``handle(notification, ctx) -> Result`` as a Cloudinary webhook.

    accepts      notification types the function acts on; every other valid one is answered 200 ignored
                 (``ANY_TYPE`` = "*" among them: every type, for functions that record everything)
    requires     environment variables without which it cannot run (checked per request: 500 if missing)
    optional     variables it reads when set (listed by ``python -m shared check``)
    serverless_requires  optional variables that become required on a serverless platform (AWS Lambda,
                 Vercel, Netlify), e.g. a DATABASE_URL whose local default is a file: 500 not configured there
    demo_values  stand-ins for settings in local demo mode, where missing credentials mean dry run
    scheduled    tasks a schedule runs, by name: a Lambda invoked with ``{"<name>": {options}}`` (an EventBridge
                 rule's input, from deploy.toml) calls ``task(options, seconds_left)`` instead of answering a request
    """

    def wrap(handler: Handler) -> Webhook:
        function_name = name or _function_name(handler)
        return Webhook(handler, name=function_name, accepts=accepts, requires=requires, optional=optional,
                       serverless_requires=serverless_requires, demo_values=demo_values or {}, scheduled=scheduled)

    return wrap


def _function_name(handler: Handler) -> str:
    # functions/<name>/handler.py is imported as functions.<name>.handler
    parts = handler.__module__.split(".")
    return parts[-2] if len(parts) >= 2 else handler.__name__
