"""The request's time budget, which every outbound call takes its timeout from.

Cloudinary gives up on a notification after 20 s. A function that makes several calls in a row (a read,
then a write, then an email) at 8 s each could overrun that and be retried while still working. So the
wrapper starts one budget per request (``WEBHOOK_TIME_BUDGET_SECONDS``, 15 s by default, less when a Lambda
has less time left), and each call gets what is left of it: a step that cannot get ``MIN_CALL_SECONDS`` is not
started, and the request answers 503 so Cloudinary's retry finishes the work (every step is re-checked and
safe to repeat).

Per thread, because a request runs in one thread on every host (Lambda, WSGI servers, the poll loop);
``threading`` is loaded anyway, where ``contextvars`` would add to every cold start.
"""

from __future__ import annotations

import math
import threading
import time

from shared.errors import DependencyUnavailable

DEFAULT_BUDGET_SECONDS = 15.0
MIN_CALL_SECONDS = 1.0
LAMBDA_MARGIN_SECONDS = 1.0  # a request answers and logs this long before Lambda's own timeout cuts it off
SCHEDULED_MARGIN_SECONDS = 2.0  # a scheduled task (a poll drain, a reconcile) stops this long before it

clock = time.monotonic
_request = threading.local()


def start(seconds: float) -> float:
    """Begin a request's budget of ``seconds``; returns its deadline (on ``clock``)."""
    _request.deadline = clock() + seconds
    return _request.deadline


def finish() -> None:
    _request.deadline = math.inf


def narrow(seconds: float) -> None:
    """Let the rest of this request take at most ``seconds`` (a function's own, tighter budget)."""
    _request.deadline = min(deadline(), clock() + seconds)


def deadline() -> float:
    return getattr(_request, "deadline", math.inf)


def remaining() -> float:
    """Seconds left of this request's budget (infinite outside a request: the CLI, a test)."""
    return deadline() - clock()


def check(before: str, needed: float = MIN_CALL_SECONDS) -> None:
    """Stop here (503, Cloudinary retries) unless ``needed`` seconds are left for the next step."""
    left = remaining()
    if left < needed:
        raise DependencyUnavailable("The function ran out of time; a retry will finish the work.",
                                    code="out_of_time", log_detail=f"{before}: {max(left, 0.0):.1f} s left")


def call_timeout(what: str, preferred: float) -> float:
    """The timeout of one outbound call: ``preferred``, cut to what is left of the budget."""
    check(what)
    return min(preferred, remaining())


def lambda_seconds_left(context: object, margin: float) -> float | None:
    """Seconds a Lambda invocation has left, less ``margin`` (to answer and log before Lambda's own timeout
    cuts it off); None where the platform does not say (WSGI hosts, tests without a context)."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    return None if remaining is None else remaining() / 1000 - margin
