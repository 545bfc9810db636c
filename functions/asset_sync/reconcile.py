"""``reconcile``: bring the mirror in step with Cloudinary where notifications were lost.

    python -m shared run asset_sync reconcile [--since T] [--expression EXPR] [--apply]
                                              [--resume | --cursor C] [--reserve N] [--wait] [--max-vanished N]

It pages through Cloudinary's Search API (``cloudinary.search.Search``: 500 assets a page, with their tags, context
and structured metadata, oldest first) and compares each asset with its mirror row:

    missing   the search returns it; the mirror has no row for it
    stale     its row differs (version, size, URL, folder, tags, context, metadata...; or it is marked deleted)
    kept      its row differs, but a notification newer than the search set those fields: nothing to change
    vanished  the mirror holds it live, and a search over every asset, done to its last page, did not return it

It prints them; ``--apply`` writes each difference as an event of its own in the event log (notification_type
``reconcile``, ``source`` ``search``, what differed, and the asset as the search returned it), applied by the same
merge rules as a notification (``handler.on_reconcile``): the event states what the search saw at the search's time
less ``INDEX_LAG_SECONDS``, so a notification of a later change wins whenever it arrives, and ``replay`` rebuilds
the same mirror from the log.

Each page is one Search API call, which counts against the account's hourly Admin API limit. Every answer carries
``X-FeatureRateLimit-Remaining`` and ``-Reset``: before fewer than ``--reserve`` calls would be left, the run stops
(with the cursor to resume from) or, with ``--wait``, waits for the hourly reset. With ``--apply``, each page's
events and the pass's cursor are written in one transaction, so ``--resume`` continues after any interruption and
nothing is applied twice. A schedule (deploy.toml ``reconcile = "cron(...)"``, ``scheduled`` below) runs the same
code within the Lambda invocation's time and resumes the next time.
"""

from __future__ import annotations

import calendar
import json
import os
import re
import shlex
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.asset_sync import db, storable
from functions.asset_sync.handler import DEFAULT_DATABASE_URL, dedupe_key, plan_for
from functions.asset_sync.mirror import AssetChange, Plan, event_time, make_clock, merge, new_state
from shared import config
from shared.errors import BadRequest, ConfigError, DependencyUnavailable

PAGE_SIZE = 500  # the most the Search API returns per call
WITH_FIELDS = ("tags", "context", "metadata")  # what a search result lacks unless asked for
SORT_BY = ("created_at", "asc")  # never changes, so a pass over a changing library neither skips nor repeats
INDEX_LAG_SECONDS = 60.0  # what the search shows is stated this long before it ran: its index may lag behind
DEFAULT_RESERVE = 50  # Admin API calls per hour left to everything else
DEFAULT_MAX_VANISHED = 1000
SEARCH_TIMEOUT_SECONDS = 30.0
ATTEMPTS = 3  # per page, when Cloudinary answers 5xx or times out
BACKOFF_SECONDS = (2.0, 8.0)
MAX_WAIT_SECONDS = 3900.0  # --wait waits for an hourly reset, never longer
LEASE_SECONDS = 600.0  # a run that stops answering gives its pass up after this long
FIRST_PAGE_SECONDS = 4.0  # what a page is expected to take until one was measured
DEFAULT_SCHEDULED_SECONDS = 13.0  # a scheduled run without a Lambda context to ask
NEW_PASS_AFTER_HOURS = 20.0  # a schedule starts a new pass this long after the last one finished
EXIT_STOPPED = 75  # EX_TEMPFAIL: stopped before the end; resume later
# The columns a search result can contradict (plus deleted); the row's other columns come from notifications only.
COMPARED = ("public_id", "resource_type", "type", "asset_folder", "display_name", "version", "version_id", "format",
            "bytes", "width", "height", "pages", "created_at", "secure_url", "tags", "context", "metadata",
            "access_control", "moderation_status", "deleted")


def now() -> datetime:
    """The wall clock (UTC): the search's time, and the rate limit's reset. Tests replace it."""
    return datetime.now(UTC)


sleep = time.sleep  # how --wait waits and a retry backs off (tests replace it: none sleeps)
clock = time.monotonic  # what a time budget is measured with


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# --- the search ------------------------------------------------------------------------------------------

_SPAN = re.compile(r"(\d{1,6})\s*([mhdw])")
_SPAN_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def since_time(text: str, at: datetime) -> str:
    """``--since``: an ISO 8601 date or time (UTC unless it names an offset), or a span back from ``at`` (``36h``,
    ``7d``, ``2w``, ``90m``), as the UTC second it means. Fixed when a pass starts, so its pages agree."""
    text = text.strip()
    span = _SPAN.fullmatch(text)
    if span:
        moment = at - timedelta(**{_SPAN_UNITS[span.group(2)]: int(span.group(1))})
    else:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ConfigError(f"--since {text[:40]!r} is neither a date/time (2024-05-01, 2024-05-01T12:00:00Z) "
                              "nor a span (36h, 7d, 2w)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def search_expression(expression: str | None, since: str | None) -> str:
    """The Search API expression of a run: ``expression`` (default: every asset, an empty expression) narrowed to
    the assets uploaded, or changed in any way (tags, context, metadata, public ID, access control...), at or after
    ``since`` (``last_updated.updated_at`` is the latest of those changes; dates in quotes, as the syntax wants)."""
    expression = (expression or "").strip()
    if not since:
        return expression
    recent = f'uploaded_at>="{since}" OR last_updated.updated_at>="{since}"'
    return f"({expression}) AND ({recent})" if expression else recent


@dataclass
class Page:
    resources: list[Mapping[str, Any]]
    next_cursor: str | None
    remaining: int | None  # X-FeatureRateLimit-Remaining: calls left this hour
    limit: int | None  # X-FeatureRateLimit-Limit
    reset_at: float | None  # X-FeatureRateLimit-Reset, as a POSIX time


def search_page(expression: str, cursor: str | None, timeout: float) -> Page:
    """One Search API call (POST .../resources/search) through the SDK configured from CLOUDINARY_URL; its errors
    as ``shared.cloudinary_api.calling`` sorts them (DependencyUnavailable: rate limit, 5xx, timeout;
    DependencyRejected: credentials, a refused expression)."""
    from shared import cloudinary_api

    sdk = cloudinary_api.sdk()
    sdk.api  # noqa: B018 - the Admin API's pool set up (its retries): the Search API calls through it
    query = sdk.cloudinary.Search()
    if expression:
        query.expression(expression)
    query.max_results(PAGE_SIZE)
    for name in WITH_FIELDS:
        query.with_field(name)
    query.sort_by(*SORT_BY)
    if cursor:
        query.next_cursor(cursor)
    with cloudinary_api.calling("resources/search"):
        result = query.execute(timeout=timeout)
    resources = result.get("resources")
    if not isinstance(resources, list):
        raise DependencyUnavailable("Cloudinary's search answered without a list of resources.",
                                    code="cloudinary_unavailable", log_detail="resources/search: no resources")
    reset = getattr(result, "rate_limit_reset_at", None)  # email.utils.parsedate of the header: a UTC tuple
    cursor = result.get("next_cursor")
    return Page(resources=[item for item in resources if isinstance(item, Mapping)],
                next_cursor=cursor if isinstance(cursor, str) and cursor else None,
                remaining=getattr(result, "rate_limit_remaining", None),
                limit=getattr(result, "rate_limit_allowed", None),
                reset_at=float(calendar.timegm(reset)) if reset else None)


# --- what differs ----------------------------------------------------------------------------------------

@dataclass
class Difference:
    kind: str  # missing | stale | kept | vanished
    asset_id: str
    public_id: str | None
    resource_type: str | None
    type: str | None
    fields: list[str] = field(default_factory=list)  # stale: what the event changes; kept: what the mirror keeps

    def line(self) -> str:
        where = "/".join(str(part) for part in (self.resource_type or "?", self.type or "?", self.public_id or "?"))
        text = f"{self.kind:<9} {_shown(self.asset_id)}  {_shown(where)}"
        if self.kind == "stale":
            text += f"  {', '.join(self.fields)}"
        elif self.kind == "kept":
            text += f"  {', '.join(self.fields)}: a notification newer than the search set them"
        return text


def _shown(text: str, limit: int = 200) -> str:
    """Text for a terminal: control characters escaped, bounded (a public ID may hold anything)."""
    cleaned = "".join(character if character.isprintable() else repr(character)[1:-1] for character in text)
    return cleaned if len(cleaned) <= limit else cleaned[:limit] + "…"


def _compared(change: AssetChange) -> list[str]:
    stated = {*change.fields, *change.resets}
    return [column for column in COMPARED if column in stated]


# --- a run -----------------------------------------------------------------------------------------------

@dataclass
class Options:
    expression: str | None = None
    since: str | None = None
    apply: bool = False
    cursor: str | None = None  # start from this cursor (of the same expression)
    resume: bool = False  # continue the newest unfinished pass stored in the database
    reserve: int = DEFAULT_RESERVE
    wait: bool = False  # wait for the hourly reset instead of stopping at the reserve
    max_vanished: int = DEFAULT_MAX_VANISHED
    seconds: float | None = None  # a time budget (a scheduled run: the invocation's)
    new_pass_after: float | None = None  # scheduled: seconds after the last pass finished before a new one starts


@dataclass
class Report:
    apply: bool
    status: str = "running"  # then: complete | stopped | busy | up_to_date
    reason: str | None = None  # stopped: rate_budget | rate_limited | unavailable | time_budget | too_many_vanished
    message: str = ""
    expression: str = ""
    cursor: str | None = None  # where the search continues
    pass_id: int | None = None
    pages: int = 0
    assets: int = 0
    calls: int = 0  # Search API calls this run (retries included)
    missing: int = 0
    stale: int = 0
    kept: int = 0
    vanished: int = 0
    recorded: int = 0  # reconcile events written
    quarantined: int = 0
    remaining: int | None = None  # Search API calls left this hour, as the last answer said
    reset_at: float | None = None

    @property
    def differences(self) -> int:
        return self.missing + self.stale + self.vanished

    def summary(self) -> dict[str, Any]:
        """The counts, for a log line (no public IDs, no cursor text beyond its length)."""
        keys = ("status", "reason", "pages", "assets", "calls", "missing", "stale", "kept", "vanished", "recorded",
                "quarantined", "remaining", "pass_id")
        summary = {key: getattr(self, key) for key in keys if getattr(self, key) is not None}
        summary["apply"] = self.apply
        summary["resumable"] = self.status == "stopped"
        return summary


class Reconciler:
    """One run: choose the pass (new, resumed, or none needed), page through the search, then decide what vanished.
    ``show`` gets a line per difference, ``progress`` a line per page (both: nothing by default)."""

    def __init__(self, options: Options, url: str, *, show: Callable[[str], None] | None = None,
                 progress: Callable[[str], None] | None = None) -> None:
        self.options = options
        self.store = db.store(url)
        self.show = show or (lambda line: None)
        self.progress = progress or (lambda line: None)
        self.report = Report(apply=options.apply)
        self.deadline = None if options.seconds is None else clock() + options.seconds
        self.estimate = FIRST_PAGE_SECONDS
        self.expression = ""
        self.cursor: str | None = None
        self.every_asset = False  # the search covers every asset, from its first page: what it misses is gone
        self.searched_all = False
        self.started = now()  # the pass's start (a resumed pass: when it first started)
        self.pass_id: int | None = None
        self.finished = False
        self.seen: set[str] = set()  # a dry run's: the keys its search returned
        self.mirror = True  # a dry run's: whether the database has the tables at all
        self.page_calls = 0
        self.waited_for: float | None = None

    # --- the run ---

    def run(self) -> Report:
        if config.cloudinary_credentials() is None:
            raise ConfigError("reconcile searches Cloudinary: set CLOUDINARY_URL (cloudinary://KEY:SECRET@CLOUD)")
        try:
            self._choose_pass()
            if self.report.status == "running":
                self._search()
            if self.report.status == "running" and self.searched_all:
                self._vanished()
            if self.report.status == "running":
                self.report.status = "complete"
        finally:
            self.report.cursor = self.cursor
            if self.pass_id is not None and not self.finished:
                self._release()
        return self.report

    def _choose_pass(self) -> None:
        options, store = self.options, self.store
        moment = iso(now())
        if not options.apply:
            self.mirror = store.has_table("cloudinary_assets")
        if options.resume:
            stored = self._stored_pass()
            self.expression = stored["expression"]
            if options.apply:
                self._hold(lambda: store.take_pass(stored["id"], now=moment, lease_until=self._lease()))
            else:  # a dry run reads where the pass is; what vanished needs the pass's own record of what it saw
                self.cursor, self.searched_all = stored["next_cursor"], stored["searched_all"]
        else:
            since = since_time(options.since, now()) if options.since else None
            self.expression = search_expression(options.expression, since)
            self.cursor = options.cursor
            self.every_asset = not self.expression and not options.cursor
            if options.apply:
                self._open_pass(moment)
        self.report.expression = self.expression
        if self.report.status == "running":
            self._stored_budget()

    def _stored_pass(self) -> dict[str, Any]:
        store = self.store
        passes = []
        if self.options.apply or store.has_table("cloudinary_reconcile"):
            passes = store.reconcile_passes(unfinished=True, migrate=self.options.apply)
        if not passes:
            raise ConfigError("Nothing to resume: the database holds no unfinished reconcile pass (run reconcile "
                              "--apply to start one, or give --cursor).")
        return passes[0]

    def _open_pass(self, moment: str) -> None:
        store, options = self.store, self.options
        unfinished = store.reconcile_passes(expression=self.expression, unfinished=True)
        if options.new_pass_after is not None and unfinished:  # a schedule continues the pass under way
            self._hold(lambda: store.take_pass(unfinished[0]["id"], now=moment, lease_until=self._lease()))
            return
        if options.new_pass_after is not None:
            last = store.reconcile_passes(expression=self.expression)
            if last and last[0]["finished_at"] > iso(now() - timedelta(seconds=options.new_pass_after)):
                self.report.status = "up_to_date"
                self.report.message = f"the last pass finished at {last[0]['finished_at']}: the next starts later"
                return
        continuing = [row for row in unfinished if self.cursor and row["next_cursor"] == self.cursor]
        if continuing:  # --cursor printed by a stopped --apply run: the same as --resume
            self._hold(lambda: store.take_pass(continuing[0]["id"], now=moment, lease_until=self._lease()))
            return
        self._hold(lambda: store.start_pass(self.expression, self.every_asset, self.cursor, now=moment,
                                            lease_until=self._lease()))

    def _hold(self, take: Callable[[], dict[str, Any]]) -> None:
        """Lease the pass ``take`` returns and continue it where it is, or report that another run holds it."""
        try:
            held = take()
        except db.PassBusy as busy:
            self.report.status = "busy"
            self.report.message = (f"another reconcile run is continuing this pass (it holds it until "
                                   f"{busy.lease_until}); try again later")
            return
        self.pass_id = self.report.pass_id = held["id"]
        self.cursor, self.searched_all, self.every_asset = held["next_cursor"], held["searched_all"], \
            held["every_asset"]
        self.started = _moment(held["started_at"])

    def _stored_budget(self) -> None:
        """The account's hourly budget as the last answer to any pass left it, while that hour lasts: a run started
        within it (a dry one too) makes no call the reserve forbids."""
        apply = self.options.apply
        if not apply and not self.store.has_table("cloudinary_reconcile"):
            return
        last = next((row for row in self.store.reconcile_passes(migrate=apply) if row["rate_reset_at"]), None)
        if last is not None and _moment(last["rate_reset_at"]) > now():
            self.report.remaining = last["rate_remaining"]
            self.report.reset_at = _moment(last["rate_reset_at"]).timestamp()

    def _lease(self, seconds: float = 0.0) -> str:
        return iso(now() + timedelta(seconds=LEASE_SECONDS + seconds))

    def _release(self) -> None:
        try:
            self.store.release_pass(self.pass_id, now=iso(now()), stopped=self.report.reason,
                                    add={"calls": self.page_calls}, **self._rate())
        except Exception:  # the database failed already: the lease expires by itself
            return

    def _stop(self, reason: str, message: str) -> None:
        self.report.status, self.report.reason, self.report.message = "stopped", reason, message

    # --- paging ---

    def _search(self) -> None:
        while not self.searched_all:
            if self._stop_before_page():
                return
            began, searched_at = clock(), now()
            page = self._fetch()
            if page is None:
                return
            self._page(page, searched_at)
            self.estimate = max(self.estimate, clock() - began)

    def _stop_before_page(self) -> bool:
        remaining = self.report.remaining
        if remaining is not None and remaining <= self.options.reserve and not self._wait_for_reset():
            self._stop("rate_budget", f"{remaining} Search API calls are left this hour, and --reserve keeps "
                                      f"{self.options.reserve} free for everything else{self._reset_text()}")
            return True
        if self.deadline is not None and clock() + self.estimate > self.deadline:
            self._stop("time_budget", "the time budget is nearly spent")
            return True
        return False

    def _wait_for_reset(self) -> bool:
        """--wait: sleep until the hourly reset the last answer named; False when it cannot (no --wait, no reset
        time, too far, past the time budget, or already waited for this one)."""
        reset_at = self.report.reset_at
        if not self.options.wait or reset_at is None or reset_at == self.waited_for:
            return False
        seconds = max(0.0, reset_at - now().timestamp() + 1)
        if seconds > MAX_WAIT_SECONDS or (self.deadline is not None and clock() + seconds > self.deadline):
            return False
        self.progress(f"reconcile: {self.report.remaining} Search API calls left this hour (--reserve "
                      f"{self.options.reserve}): waiting {seconds / 60:.0f} min for the reset{self._reset_text()}")
        if self.pass_id is not None:
            with self.store.transaction():
                self.store.update_pass(self.pass_id, now=iso(now()), lease_until=self._lease(seconds))
        sleep(seconds)
        self.waited_for = reset_at
        self.report.remaining = None
        return True

    def _rate(self) -> dict[str, Any]:
        """The hourly budget as the last answer left it, for the pass's row."""
        reset = self.report.reset_at
        return {"rate_remaining": self.report.remaining,
                "rate_reset_at": None if reset is None else iso(datetime.fromtimestamp(reset, UTC))}

    def _reset_text(self) -> str:
        if self.report.reset_at is None:
            return ""
        return f" (the limit resets at {datetime.fromtimestamp(self.report.reset_at, UTC):%H:%M:%S} UTC)"

    def _fetch(self) -> Page | None:
        """The next page; None when the run stops here (rate limited, or Cloudinary unavailable after retries)."""
        failures = 0
        while True:
            timeout = SEARCH_TIMEOUT_SECONDS
            if self.deadline is not None:
                timeout = min(timeout, self.deadline - clock())
                if timeout < 1:
                    self._stop("time_budget", "the time budget is nearly spent")
                    return None
            self.report.calls += 1
            self.page_calls += 1
            try:
                page = search_page(self.expression, self.cursor, timeout)
            except DependencyUnavailable as error:
                detail = error.log_detail or error.message
                if error.code == "cloudinary_rate_limited":
                    self.report.remaining = 0  # whatever the last answer said: none is left this hour
                    if self.report.reset_at is None or self.report.reset_at <= now().timestamp():
                        # No answer said when the hour turns: the limits are hourly, so the next full hour.
                        hour = now().replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
                        self.report.reset_at = hour.timestamp()
                    if self._wait_for_reset():
                        continue
                    self._stop("rate_limited", f"Cloudinary answered that the hourly limit is reached ({detail})"
                                               f"{self._reset_text()}")
                    return None
                failures += 1
                pause = BACKOFF_SECONDS[min(failures, len(BACKOFF_SECONDS)) - 1]
                fits = self.deadline is None or clock() + pause + self.estimate < self.deadline
                if failures >= ATTEMPTS or not fits:
                    self._stop("unavailable", f"Cloudinary's search failed {failures} time(s): {detail}")
                    return None
                self.progress(f"reconcile: the search failed ({detail}); trying again in {pause:.0f} s")
                sleep(pause)
                continue
            if page.remaining is not None:
                self.report.remaining, self.report.reset_at = page.remaining, page.reset_at
            return page

    def _page(self, page: Page, searched_at: datetime) -> None:
        """Compare one page with the mirror; with --apply, write its events and the pass's new cursor at once."""
        found = []
        for resource in page.resources:
            try:
                found.append((resource, *self._planned(resource, searched_at)))
            except BadRequest as error:  # a result this version cannot read: left for the next version's pass
                self.progress(f"reconcile: skipped a search result: {error.message}")
        keys = [db.storage_key(change.ref.asset_id) for _resource, _payload, change in found]
        rows = self.store.asset_rows(keys, migrate=self.options.apply) if self.mirror else {}
        events, counts = [], {"missing": 0, "stale": 0}
        for (resource, payload, change), key in zip(found, keys, strict=True):
            difference, event = self._compare(resource, payload, change, rows.get(key))
            if difference is None:
                continue
            self.show(difference.line())
            setattr(self.report, difference.kind, getattr(self.report, difference.kind) + 1)
            if event is not None:
                counts[difference.kind] += 1
                events.append(event)
        self.report.pages += 1
        self.report.assets += len(page.resources)
        searched_all = page.next_cursor is None
        if self.options.apply:
            finished = searched_all and not self.every_asset  # nothing can have vanished from a partial search
            seen = keys if self.every_asset else []
            calls, self.page_calls = self.page_calls, 0

            def bookkeeping(store: db.Store) -> None:
                store.update_pass(self.pass_id, now=iso(now()), seen=seen, finished=finished,
                                  add={"pages": 1, "assets": len(page.resources), "calls": calls, **counts},
                                  next_cursor=page.next_cursor, searched_all=searched_all,
                                  lease_until=self._lease(), **self._rate())

            written = self.store.record_batch(events, bookkeeping)
            self.report.recorded += written["recorded"]
            self.report.quarantined += written["quarantined"]
            self.finished = finished
        else:
            self.seen.update(keys)
        self.cursor, self.searched_all = page.next_cursor, searched_all
        left = "" if self.report.remaining is None else f", {self.report.remaining} Search API calls left this hour"
        self.progress(f"reconcile: page {self.report.pages}: {self.report.assets:,} assets, "
                      f"{self.report.missing + self.report.stale:,} differences ({self.report.missing:,} missing, "
                      f"{self.report.stale:,} stale, {self.report.kept:,} kept){left}")

    def _planned(self, resource: Mapping[str, Any], searched_at: datetime) -> tuple[dict[str, Any], AssetChange]:
        """The reconcile event's payload for ``resource`` (before the difference is known) and its change."""
        payload = {
            "notification_type": "reconcile", "source": "search",
            "timestamp": iso(searched_at - timedelta(seconds=INDEX_LAG_SECONDS)), "searched_at": iso(searched_at),
            "expression": self.expression, "fields": list(WITH_FIELDS),
            **{name: resource.get(name) for name in ("asset_id", "public_id", "resource_type", "type")},
            "resource": dict(resource),
        }
        if not isinstance(resource.get("asset_id"), str) or not resource["asset_id"]:
            raise BadRequest("it has no asset_id.")
        (change,) = plan_for("reconcile", payload, _text(payload), own=True).assets
        return payload, change

    def _compare(self, resource: Mapping[str, Any], payload: dict[str, Any], change: AssetChange,
                 row: dict[str, Any] | None) -> tuple[Difference | None, tuple[db.Event, Plan] | None]:
        """The difference between the search's asset and its row, and the event that writes it (None: the row
        agrees, or a newer notification set what differs)."""
        ref = change.ref
        named = (ref.asset_id, ref.public_id, ref.resource_type, ref.type)
        if row is None:
            payload = {**payload, "reconcile": "missing"}
            return Difference("missing", *named), self._event(payload, change)
        searched = db.row_of(merge(new_state(), change, payload["timestamp"]))
        differing = [column for column in _compared(change) if searched[column] != row[column]]
        if not differing:
            return None, None
        payload = {**payload, "reconcile": "stale", "differences": differing}
        event, plan = self._event(payload, change)
        before = db.row_of(row["sync_state"])
        after = db.row_of(merge(row["sync_state"], change, event.event_clock))
        changed = [column for column in differing if after[column] != before[column]]
        if not changed:
            return Difference("kept", *named, fields=differing), None
        return Difference("stale", *named, fields=changed), (event, plan)

    def _event(self, payload: dict[str, Any], change: AssetChange | None = None) -> tuple[db.Event, Plan]:
        """The event that writes ``payload`` and its plan (``change``'s when the payload's was made already)."""
        key = dedupe_key(payload)
        received_at = iso(now())
        event = db.Event(dedupe_key=key, notification_type="reconcile",
                         asset_id=storable.storable_text(payload.get("asset_id")), received_at=received_at,
                         event_clock=make_clock(event_time(payload, received_at), key), payload=_text(payload))
        plan = Plan([change]) if change is not None else plan_for("reconcile", payload, event.payload, own=True)
        return event, plan

    # --- what vanished ---

    def _vanished(self) -> None:
        """After the last page of a search over every asset: the live rows it never returned are gone."""
        if not self.every_asset:
            self._finish()
            return
        if not self.mirror:
            return
        apply = self.options.apply
        before = iso(self.started - timedelta(seconds=INDEX_LAG_SECONDS))
        candidates: list[dict[str, Any]] = []
        after = ""
        while len(candidates) <= self.options.max_vanished:
            rows = self.store.unseen_assets(before=before, after=after, pass_id=self.pass_id, migrate=apply)
            if not rows:
                break
            after = rows[-1]["asset_id"]
            candidates += [row for row in rows if apply or row["asset_id"] not in self.seen]
        live = self.store.live_assets(migrate=apply)
        for row in candidates:
            self.show(Difference("vanished", row["asset_id"], row["public_id"], row["resource_type"],
                                 row["type"]).line())
        self.report.vanished += len(candidates)
        if len(candidates) > self.options.max_vanished or (len(candidates) > 10 and 2 * len(candidates) > live):
            more = "more than " if len(candidates) > self.options.max_vanished else ""
            self._stop("too_many_vanished", f"the search did not return {more}{len(candidates):,} of the mirror's "
                                            f"{live:,} live assets: more likely a wrong CLOUDINARY_URL than deletions, "
                                            "so none is marked deleted (to write them: --resume --max-vanished N)")
            return
        if not apply:
            return
        for start in range(0, len(candidates), db.BATCH):
            if self.deadline is not None and clock() + self.estimate > self.deadline:
                self._stop("time_budget", "the time budget is nearly spent (marking what vanished)")
                return
            batch = candidates[start:start + db.BATCH]
            events = [self._event({
                "notification_type": "reconcile", "source": "search", "reconcile": "vanished",
                "timestamp": before, "searched_at": iso(self.started), "expression": self.expression,
                **{name: row[name] for name in ("asset_id", "public_id", "resource_type", "type")}}) for row in batch]
            last = start + db.BATCH >= len(candidates)

            def bookkeeping(store: db.Store, count: int = len(batch), last: bool = last) -> None:
                store.update_pass(self.pass_id, now=iso(now()), add={"vanished": count}, finished=last,
                                  lease_until=self._lease())

            written = self.store.record_batch(events, bookkeeping)
            self.report.recorded += written["recorded"]
            self.report.quarantined += written["quarantined"]
            self.finished = last
        if not candidates:
            self._finish()

    def _finish(self) -> None:
        if self.pass_id is not None and not self.finished:
            with self.store.transaction():
                self.store.update_pass(self.pass_id, now=iso(now()), finished=True)
            self.finished = True


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _text(payload: Mapping[str, Any]) -> str:
    """An event's payload as the event log keeps it: ASCII JSON (no lone surrogate or NUL reaches a text column)."""
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":"))


# --- entry points ----------------------------------------------------------------------------------------

def database_url() -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url and config.serverless_platform():
        raise ConfigError("asset_sync: not configured: DATABASE_URL must be set where it is deployed")
    return url or DEFAULT_DATABASE_URL


def scheduled(options: Mapping[str, Any], seconds: float | None) -> dict[str, Any]:
    """A scheduled reconcile (deploy.toml's ``reconcile``; its input ``{"reconcile": {options}}``): continue the pass
    under way, or start one when the last finished ``new_pass_after_hours`` (20) ago or more, within ``seconds``;
    what is done is saved with each page, and the next invocation resumes. Writes unless DRY_RUN is set.
    Options: ``expression`` (default every asset), ``reserve``, ``max_vanished``, ``new_pass_after_hours``."""
    unknown = sorted(set(options) - {"expression", "reserve", "max_vanished", "new_pass_after_hours"})
    if unknown:
        raise ConfigError(f"asset_sync: the reconcile schedule's input has unknown option(s): {', '.join(unknown)}")
    expression = options.get("expression", "")
    if not isinstance(expression, str):
        raise ConfigError("asset_sync: the reconcile schedule's expression must be a string")
    run = Options(expression=expression, apply=not config.flag("DRY_RUN"),
                  reserve=_whole(options, "reserve", DEFAULT_RESERVE),
                  max_vanished=_whole(options, "max_vanished", DEFAULT_MAX_VANISHED),
                  seconds=DEFAULT_SCHEDULED_SECONDS if seconds is None else seconds,
                  new_pass_after=3600 * _number(options, "new_pass_after_hours", NEW_PASS_AFTER_HOURS))
    return Reconciler(run, database_url()).run().summary()  # the connection stays for the instance's next request


def _whole(options: Mapping[str, Any], name: str, default: int) -> int:
    value = options.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ConfigError(f"asset_sync: the reconcile schedule's {name} must be a whole number of at least 0")
    return value


def _number(options: Mapping[str, Any], name: str, default: float) -> float:
    value = options.get(name, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 10_000:
        raise ConfigError(f"asset_sync: the reconcile schedule's {name} must be a number of hours")
    return float(value)


def resume_hint(report: Report, options: Options) -> str:
    """How to continue a run that stopped: the command lines, exactly."""
    command = "python -m shared run asset_sync reconcile"
    lines = []
    if options.apply and report.pass_id is not None:
        lines.append(f"Resume with: {command} --apply --resume")
    if report.cursor:
        expression = f" --expression {shlex.quote(report.expression)}" if report.expression else ""
        apply = " --apply" if options.apply else ""
        lines.append(f"{'  or' if lines else 'Continue'} from the cursor: {command}{expression} --cursor "
                     f"{shlex.quote(report.cursor)}{apply}")
    return "\n".join(lines)


def describe(report: Report) -> str:
    """The last line a person reads."""
    counts = (f"{report.pages:,} page(s), {report.assets:,} assets, {report.calls:,} Search API call(s); "
              f"{report.differences:,} difference(s): {report.missing:,} missing, {report.stale:,} stale, "
              f"{report.vanished:,} vanished")
    if report.kept:
        counts += f" ({report.kept:,} kept: a notification newer than the search changed them)"
    if report.apply:
        written = f"; written as {report.recorded:,} reconcile event(s)"
        if report.quarantined:
            written += f", {report.quarantined:,} quarantined (see status)"
    else:
        written = "; dry run: nothing written (--apply writes them)"
    if report.status == "complete":
        return f"reconcile: complete: {counts}{written}"
    if report.status in ("busy", "up_to_date"):
        return f"reconcile: {report.status.replace('_', ' ')}: {report.message}"
    return f"reconcile: stopped ({report.reason}): {report.message}.\n  So far: {counts}{written}"
