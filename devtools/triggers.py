"""``python -m shared triggers plan|apply|test``: the account's notification triggers, as code.

The triggers wanted come from the functions themselves: one per notification type a function ``accepts``
(``"*"`` is Cloudinary's event type ``all``), pointing at the function's address, which is one of

    --base-url URL   <URL>/<name>                       e.g. https://<project>.vercel.app/api
    --deployed       deploy/deploy.toml: [functions.<name>] url, else [netlify.targets] <name>, else
                     [netlify] base_url + /api/<name>; a function with delivery = "poll" gets its poll channel
    --poll           poll://<name> (uri_type "poll"), drained by `python -m shared listen`

``plan`` reads the account's triggers (Admin API ``triggers``) and prints, for each function and type, what it
would create, change (a trigger of ours for that function and type, at another address of the same kind, moved
with ``update_trigger``) or leave. ``apply`` does it after a confirmation (``--yes``: none); a second ``apply``
finds nothing to do. A trigger is *ours* when its URI is under the given base URL or deploy.toml's base URL (one
path segment below it), one of deploy.toml's targets, or ``poll://<one of our function names>``; any other
trigger is never changed or deleted. Ours but not wanted (another address, a type a function no longer accepts,
a removed function) is listed and kept; ``--prune`` deletes it.

``test NAME [SAMPLE ...]`` runs ``test_trigger`` with the function's samples against each of its triggers and
prints whether each sample would be delivered (the trigger's filter, if any, evaluated by Cloudinary).

Every call is the Admin API, rate-limited per hour: each answer's ``X-FeatureRateLimit-Remaining`` (the SDK's
``Response.rate_limit_remaining``) is read, and a command stops, saying when the budget resets, before it would
leave fewer than ``--reserve`` calls for the functions themselves. 420/429 and 5xx are one clear line; a read
is retried twice on a 5xx, a write never (a create that timed out may have been done: ``plan`` tells).
"""

from __future__ import annotations

import argparse
import calendar
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from devtools.arguments import whole_number
from devtools.cli import FUNCTIONS_DIR, CliError, function_names, load_webhook, printable
from shared.webhook import ANY_TYPE

ALL_EVENTS = "all"  # Cloudinary's event type for "every notification type"
WEBHOOK, POLL = "webhook", "poll"
DEFAULT_RESERVE = 10  # Admin API calls a command leaves unspent for the functions themselves
CALL_TIMEOUT_SECONDS = 20.0
READ_RETRY_DELAYS = (1.0, 3.0)  # a read answered 5xx (or unreachable) is tried again after these pauses
sleep: Callable[[float], None] = time.sleep  # replaced by the tests: they never wait

_BARE_STATUS = re.compile(r"^Error (\d{3}) - ")  # the SDK's Exception for a status it has no class for
_CONSOLE_HINT = "cloudinary://API_KEY:API_SECRET@CLOUD_NAME (Console > Settings > API Keys)"


# --- addresses: where each function is, and which URIs are ours ------------------------------------

@dataclass(frozen=True)
class Address:
    uri: str
    uri_type: str = WEBHOOK


def event_types(name: str) -> list[str]:
    """The event types a function's triggers are for: what it ``accepts``, ``"*"`` being ``all``."""
    accepts = load_webhook(name).accepts
    return [ALL_EVENTS] if ANY_TYPE in accepts else sorted(accepts)


def _deploy_config() -> dict[str, Any]:
    from devtools import deploy

    try:
        return deploy.load_config()
    except (OSError, ValueError) as error:  # tomllib.TOMLDecodeError is a ValueError
        raise CliError(f"cannot read deploy/deploy.toml: {error}") from None


def _check_base_url(url: str, what: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url.strip())
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise CliError(f"{what} {url!r} is not an http(s) URL without a query, e.g. https://<project>.vercel.app/api")
    return url.strip().rstrip("/")


def deployed_address(name: str, config: Mapping[str, Any]) -> Address:
    """A function's address as deploy.toml says: its own ``url``, its Netlify target, or the base URL's /api/NAME."""
    own = config.get("functions", {}).get(name, {})
    if own.get("delivery", config.get("defaults", {}).get("delivery", WEBHOOK)) == POLL:
        return Address(f"poll://{name}", POLL)
    netlify = config.get("netlify", {})
    target = own.get("url") or netlify.get("targets", {}).get(name)
    if target:
        return Address(str(target).strip())
    base_url = str(netlify.get("base_url", "")).strip()
    if not base_url:
        raise CliError(f"deploy/deploy.toml gives {name} no address: set [netlify] base_url, [netlify.targets] "
                       f"{name} or [functions.{name}] url, or use --base-url URL / --poll")
    return Address(f"{_check_base_url(base_url, 'deploy.toml [netlify] base_url')}/api/{name}")


@dataclass
class Ownership:
    """Which URIs are ours, and whose: the only triggers ``apply`` may ever change or delete."""

    names: frozenset[str]
    prefixes: tuple[str, ...] = ()  # "<base>/": one path segment below is ours (a function's, or a removed one's)
    exact: dict[str, str] = field(default_factory=dict)  # uri -> function

    def owner(self, uri: str) -> str | None:
        """The function a URI of ours belongs to ("" for ours but no current function's); None: not ours."""
        if uri.startswith("poll://"):
            channel = uri[len("poll://"):]
            return channel if channel in self.names else None
        if uri in self.exact:
            return self.exact[uri]
        if uri.rstrip("/") in self.exact:
            return self.exact[uri.rstrip("/")]
        for prefix in self.prefixes:
            if uri.startswith(prefix):
                segment = uri[len(prefix):]
                segment = segment[:-1] if segment.endswith("/") else segment
                if segment and "/" not in segment and "?" not in segment and "#" not in segment:
                    return segment if segment in self.names else ""
        return None


def ownership(base_url: str | None, config: Mapping[str, Any]) -> Ownership:
    names = frozenset(function_names())
    prefixes = []
    if base_url:
        prefixes.append(base_url + "/")
    netlify = config.get("netlify", {})
    if str(netlify.get("base_url", "")).strip():
        prefixes.append(str(netlify["base_url"]).strip().rstrip("/") + "/api/")
    exact = {}
    for name in sorted(names):
        own = config.get("functions", {}).get(name, {})
        for uri in (netlify.get("targets", {}).get(name), own.get("url")):
            if uri:
                exact[str(uri).strip()] = name
                exact[str(uri).strip().rstrip("/")] = name
    return Ownership(names, tuple(prefixes), exact)


def wanted_addresses(names: Iterable[str], args: argparse.Namespace, config: Mapping[str, Any]) -> dict[str, Address]:
    if args.poll:
        return {name: Address(f"poll://{name}", POLL) for name in names}
    if args.base_url:
        return {name: Address(f"{args.base_url}/{name}") for name in names}
    return {name: deployed_address(name, config) for name in names}


# --- the account: the Admin API, its errors and its rate limit -------------------------------------

@dataclass(frozen=True)
class Trigger:
    id: str
    uri: str
    event_type: str
    uri_type: str

    @classmethod
    def from_api(cls, item: Mapping[str, Any]) -> Trigger:
        uri = str(item.get("uri", ""))
        uri_type = str(item.get("uri_type") or (POLL if uri.startswith("poll://") else WEBHOOK))
        return cls(str(item.get("id", "")), uri, str(item.get("event_type", "")), uri_type)


class Budget:
    """What is left of the Admin API's hourly budget, as the last answer said (None: not told)."""

    def __init__(self, reserve: int) -> None:
        self.reserve = reserve
        self.remaining: int | None = None
        self.allowed: int | None = None
        self.reset_at: float | None = None

    def note(self, response: Any) -> None:
        remaining = getattr(response, "rate_limit_remaining", None)
        if isinstance(remaining, int):
            self.remaining = remaining
        allowed = getattr(response, "rate_limit_allowed", None)
        if isinstance(allowed, int):
            self.allowed = allowed
        reset = getattr(response, "rate_limit_reset_at", None)  # email.utils.parsedate's tuple, in UTC
        if isinstance(reset, tuple) and len(reset) >= 6:
            self.reset_at = float(calendar.timegm((*reset[:6], 0, 1, -1)))

    def when_reset(self) -> str:
        if self.reset_at is None:
            return "when the hour's budget resets"
        return time.strftime("after %H:%M UTC", time.gmtime(self.reset_at))

    def left(self) -> str:
        of = f" of {self.allowed}" if self.allowed is not None else ""
        return f"{self.remaining}{of} Admin API calls left"

    def require(self, calls: int, doing: str, done: str = "Nothing changed") -> None:
        """Stop, before spending them, if ``calls`` more calls would leave fewer than ``reserve``."""
        if self.remaining is not None and self.remaining - calls < self.reserve:
            raise CliError(f"Cloudinary's Admin API rate limit: {self.left()}; {doing} needs {calls} and keeps "
                           f"{self.reserve} for your functions (--reserve). {done}: try again {self.when_reset()}.")


class Account:
    """The account's triggers through pycloudinary's Admin API, with clear errors and the budget kept."""

    def __init__(self, reserve: int) -> None:
        from shared import config
        from shared.errors import ConfigError

        try:
            credentials = config.cloudinary_credentials()
        except ConfigError as error:
            raise CliError(f"{error.log_detail} (the Cloudinary Console shows it: Settings > API Keys)") from None
        if credentials is None:
            raise CliError("CLOUDINARY_URL is not set: triggers live in your Cloudinary account; set "
                           f"CLOUDINARY_URL={_CONSOLE_HINT}")
        self.cloud_name = credentials[0]
        from shared import cloudinary_api

        try:
            self.api = cloudinary_api.sdk().api
        except Exception as error:  # the SDK's own reading of the URL (e.g. its query string)
            raise CliError(f"CLOUDINARY_URL cannot be used: {type(error).__name__}: {str(error)[:200]}") from None
        self.budget = Budget(reserve)
        self.progress = ""  # what a failure message adds: "3 of 5 changes made"

    def call(self, what: str, method: Callable[..., Any], *arguments: Any, write: bool) -> Any:
        from cloudinary import exceptions

        delays = () if write else READ_RETRY_DELAYS
        for attempt in range(len(delays) + 1):
            try:
                response = method(*arguments, timeout=CALL_TIMEOUT_SECONDS)
            except exceptions.RateLimited as error:
                raise CliError(f"Cloudinary's Admin API rate limit is reached ({what}: {_short(error)}). "
                               f"{self._so_far()}Try again {self.budget.when_reset()}.") from None
            except (exceptions.AuthorizationRequired, exceptions.NotAllowed) as error:
                raise CliError(f"Cloudinary refused CLOUDINARY_URL's credentials ({what}: {_short(error)}): "
                               "check its API key and secret, and that the key may manage triggers.") from None
            except exceptions.NotFound as error:
                raise CliError(f"{what}: Cloudinary answered 404 ({_short(error)}): the trigger changed meanwhile? "
                               f"{self._so_far()}Run `triggers plan` again.") from None
            except (exceptions.BadRequest, exceptions.AlreadyExists) as error:
                raise CliError(f"Cloudinary refused {what}: {_short(error)}. {self._so_far()}".rstrip()) from None
            except Exception as error:  # 5xx (GeneralError or the SDK's bare "Error 502 - ..."), resets, timeouts
                status = _BARE_STATUS.match(str(error)) if type(error) is Exception else None
                if status and not status.group(1).startswith("5"):  # a 4xx the SDK has no class for
                    raise CliError(f"Cloudinary refused {what}: {_short(error)}. {self._so_far()}".rstrip()) from None
                if not isinstance(error, exceptions.Error) and not status:
                    raise
                if attempt < len(delays):
                    sleep(delays[attempt])
                    continue
                if write:
                    raise CliError(f"Cloudinary failed during {what} ({_short(error)}); it may or may not have "
                                   f"been done. {self._so_far()}`triggers plan` shows where things stand; `apply` "
                                   "again does only what is still missing.") from None
                raise CliError(f"Cloudinary is unavailable ({what}: {_short(error)}); try again later.") from None
            self.budget.note(response)
            return response
        raise AssertionError("unreachable")

    def _so_far(self) -> str:
        return f"{self.progress}. " if self.progress else ""

    def triggers(self) -> list[Trigger]:
        answer = self.call("listing the triggers", self.api.triggers, write=False)
        if answer.get("next_cursor"):
            raise CliError("The account has more triggers than Cloudinary lists in one answer; a plan from part of "
                           "them could duplicate triggers, so nothing is planned.")
        items = answer.get("triggers") or []
        return [Trigger.from_api(item) for item in items if isinstance(item, Mapping)]


def _short(error: BaseException) -> str:
    return str(error)[:300]


# --- the plan --------------------------------------------------------------------------------------

@dataclass
class Step:
    kind: str  # create | change | leave | extra | foreign
    event_type: str
    function: str
    address: Address | None = None  # what is wanted (create, change, leave)
    trigger: Trigger | None = None  # what is there (change, leave, extra, foreign)


@dataclass
class Plan:
    cloud_name: str
    source: str
    steps: list[Step]
    prune: bool

    def of(self, kind: str) -> list[Step]:
        return [step for step in self.steps if step.kind == kind]

    @property
    def writes(self) -> list[Step]:
        return [step for step in self.steps if step.kind in ("change", "create")
                or (self.prune and step.kind == "extra")]


def make_plan(names: list[str], addresses: Mapping[str, Address], owned: Ownership, existing: list[Trigger],
              *, all_functions: bool, prune: bool, cloud_name: str = "", source: str = "") -> Plan:
    """For each wanted (function, event type): leave the trigger at its address, else change one of ours for the
    same function and type with the same kind of address (webhook or poll), else create one. What is ours for
    these functions and was not claimed is extra; everything not ours is foreign, and is only ever shown."""
    steps: list[Step] = []
    claimed: set[str] = set()
    owners = {trigger.id: owned.owner(trigger.uri) for trigger in existing}
    for name in names:
        address = addresses[name]
        for event_type in event_types(name):
            same = [trigger for trigger in existing if trigger.id not in claimed and trigger.event_type == event_type
                    and trigger.uri == address.uri and trigger.uri_type == address.uri_type]
            movable = [trigger for trigger in existing if trigger.id not in claimed and owners[trigger.id] == name
                       and trigger.event_type == event_type and trigger.uri_type == address.uri_type]
            if same:
                claimed.add(same[0].id)
                steps.append(Step("leave", event_type, name, address, same[0]))
            elif movable:
                claimed.add(movable[0].id)
                steps.append(Step("change", event_type, name, address, movable[0]))
            else:
                steps.append(Step("create", event_type, name, address))
    for trigger in existing:
        owner = owners[trigger.id]
        if trigger.id in claimed:
            continue
        if owner is None:
            steps.append(Step("foreign", trigger.event_type, "", trigger=trigger))
        elif owner in names or (owner == "" and all_functions):
            steps.append(Step("extra", trigger.event_type, owner, trigger=trigger))
        elif owner:  # ours, a function this run was not asked about: shown as left alone
            steps.append(Step("other", trigger.event_type, owner, trigger=trigger))
    return Plan(cloud_name, source, steps, prune)


_LABELS = {"create": "create", "change": "change", "leave": "leave", "extra": "extra", "foreign": "foreign",
           "other": "leave"}


def print_plan(plan: Plan) -> None:
    """One line per trigger: what happens to it, its event type, its function, its URI (and why, when kept)."""
    print(f"Triggers of cloud {printable(plan.cloud_name)} (addresses: {printable(plan.source)})")
    for step in plan.steps:
        label = "delete" if step.kind == "extra" and plan.prune else _LABELS[step.kind]
        note = ""
        if step.kind == "create":
            assert step.address
            where = _uri(step.address)
        elif step.kind == "change":
            assert step.address and step.trigger
            where = f"{printable(step.trigger.uri)} -> {_uri(step.address)}"
        else:
            assert step.trigger
            where = _uri(Address(step.trigger.uri, step.trigger.uri_type))
            if step.kind == "extra":
                note = "ours, not wanted" + ("" if plan.prune else ": kept (--prune deletes it)")
            elif step.kind == "foreign":
                where, note = printable(step.trigger.uri), "not ours: never touched"
        whose = step.function or ("-" if step.kind == "foreign" else "(no function)")
        line = f"  {label:<8} {printable(step.event_type):<29} {printable(whose):<20} {where}"
        print(f"{line}   ({note})" if note else line)
    counts = {kind: len(plan.of(kind)) for kind in ("create", "change", "leave", "extra", "foreign", "other")}
    extra = (f"{counts['extra']} to delete" if plan.prune else f"{counts['extra']} extra kept")
    print(f"Plan: {counts['create']} to create, {counts['change']} to change, {extra}, "
          f"{counts['leave'] + counts['other']} unchanged, {counts['foreign']} not ours.")


def _uri(address: Address) -> str:
    shown = printable(address.uri)
    return shown if address.uri_type == WEBHOOK else f"{shown} ({printable(address.uri_type)})"


# --- commands --------------------------------------------------------------------------------------

def _selected(args: argparse.Namespace) -> list[str]:
    available = function_names()
    for name in args.names:
        if name not in available:
            raise CliError(f"No function named {name!r}. Functions: {', '.join(available)}")
    return sorted(set(args.names)) or available


def _source(args: argparse.Namespace) -> str:
    if args.poll:
        return "--poll: poll://<name>"
    if args.base_url:
        return f"--base-url {args.base_url}/<name>"
    return "deploy/deploy.toml"


def build_plan(args: argparse.Namespace) -> tuple[Account, Plan]:
    if args.base_url:
        args.base_url = _check_base_url(args.base_url, "--base-url")
    names = _selected(args)
    config = _deploy_config()
    addresses = wanted_addresses(names, args, config)
    owned = ownership(args.base_url, config)
    account = Account(args.reserve)
    existing = account.triggers()
    plan = make_plan(names, addresses, owned, existing, all_functions=not args.names, prune=args.prune,
                     cloud_name=account.cloud_name, source=_source(args))
    return account, plan


def cmd_plan(args: argparse.Namespace) -> int:
    _, plan = build_plan(args)
    print_plan(plan)
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    account, plan = build_plan(args)
    print_plan(plan)
    writes = plan.writes
    if not writes:
        print("Nothing to do: the account has every trigger wanted.")
        return 0
    account.budget.require(len(writes), f"applying {len(writes)} change(s)")
    if not args.yes and not _confirm(f"Apply these {len(writes)} change(s) to cloud {plan.cloud_name}? [y/N] "):
        print("Not confirmed: nothing changed. (--yes applies without asking.)")
        return 1
    api = account.api
    for done, step in enumerate(writes):
        account.progress = f"{done} of {len(writes)} change(s) made"
        if done:
            account.budget.require(1, "the next change", done=f"Stopped after {account.progress}")
        if step.kind == "change":
            assert step.trigger and step.address
            account.call(f"updating trigger {step.trigger.id}", api.update_trigger, step.trigger.id,
                         step.address.uri, write=True)
            print(f"changed  {printable(step.event_type)} {printable(step.trigger.uri)} -> {_uri(step.address)}")
        elif step.kind == "create":
            assert step.address
            uri_type = POLL if step.address.uri_type == POLL else None  # the SDK's default: a webhook
            created = account.call(f"creating the {step.event_type} trigger of {step.function}", api.create_trigger,
                                   step.address.uri, step.event_type, uri_type, write=True)
            trigger_id = printable(str(created.get("id")))
            print(f"created  {printable(step.event_type)} {_uri(step.address)}  (id {trigger_id})")
        else:
            assert step.trigger
            account.call(f"deleting trigger {step.trigger.id}", api.delete_trigger, step.trigger.id, write=True)
            print(f"deleted  {printable(step.event_type)} {printable(step.trigger.uri)}")
    left = f" ({account.budget.left()})" if account.budget.remaining is not None else ""
    print(f"Done: {len(writes)} change(s) applied{left}.")
    return 0


def _confirm(question: str) -> bool:
    try:
        answer = input(question)
    except EOFError:  # no one to ask (CI, a pipe that ended): not a yes
        print()
        return False
    return answer.strip().lower() in ("y", "yes")


def sample_files(name: str, wanted: list[str]) -> list[tuple[str, dict[str, Any]]]:
    samples_dir = FUNCTIONS_DIR / name / "samples"
    available = {path.stem: path for path in sorted(samples_dir.glob("*.json"))}
    if not available:
        raise CliError(f"{name} has no samples in functions/{name}/samples")
    for sample in wanted:
        if sample.removesuffix(".json") not in available:
            raise CliError(f"{name} has no sample {sample!r}. Samples: {', '.join(available)}")
    chosen = [sample.removesuffix(".json") for sample in wanted] or list(available)
    loaded = []
    for stem in dict.fromkeys(chosen):
        try:
            payload = json.loads(available[stem].read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise CliError(f"functions/{name}/samples/{stem}.json is not readable JSON: {error}") from None
        if not isinstance(payload, dict):
            raise CliError(f"functions/{name}/samples/{stem}.json is not a JSON object")
        loaded.append((f"{stem}.json", payload))
    return loaded


def cmd_test(args: argparse.Namespace) -> int:
    name = args.name
    if name not in function_names():
        raise CliError(f"No function named {name!r}. Functions: {', '.join(function_names())}")
    if args.base_url:
        args.base_url = _check_base_url(args.base_url, "--base-url")
    samples = sample_files(name, args.samples)
    owned = ownership(args.base_url, _deploy_config())
    account = Account(args.reserve)
    mine = [trigger for trigger in account.triggers() if _belongs_to(trigger, name, owned)]
    if not mine:
        raise CliError(f"{name} has no trigger in cloud {account.cloud_name}: `python -m shared triggers plan {name} "
                       "--poll` (or --base-url URL, --deployed) shows what `apply` would create.")
    calls = [(trigger, sample, payload) for trigger in mine for sample, payload in samples
             if _fires_on(trigger, payload)]
    account.budget.require(len(calls), f"testing {len(calls)} sample(s)")
    print(f"{name}: {len(mine)} trigger(s) in cloud {printable(account.cloud_name)}, {len(samples)} sample(s)")
    for trigger in mine:
        print(f"  {printable(trigger.event_type)}  {_uri(Address(trigger.uri, trigger.uri_type))}  "
              f"(id {printable(trigger.id)})")
        for sample, payload in samples:
            if not _fires_on(trigger, payload):
                kind = payload.get("notification_type")
                verdict = f"not delivered: a {printable(str(kind))} notification, not {printable(trigger.event_type)}"
            else:
                account.budget.require(1, "the next test")
                answer = account.call(f"testing trigger {trigger.id} with {sample}", account.api.test_trigger,
                                      trigger.id, payload, write=False)
                verdict = _verdict(answer)
            print(f"    {sample:<40} {verdict}")
    return 0


def _belongs_to(trigger: Trigger, name: str, owned: Ownership) -> bool:
    """``name``'s trigger: ours for it, or any webhook whose last path segment is the function's name (testing
    delivers nothing, so a trigger at an address deploy.toml does not know is tested too)."""
    if owned.owner(trigger.uri) == name:
        return True
    if trigger.uri.startswith("poll://"):
        return False
    path = trigger.uri.split("?", 1)[0].split("#", 1)[0].rstrip("/")
    return "://" in path and path.rsplit("/", 1)[-1] == name


def _fires_on(trigger: Trigger, payload: Mapping[str, Any]) -> bool:
    return trigger.event_type == ALL_EVENTS or payload.get("notification_type") == trigger.event_type


def _verdict(answer: Mapping[str, Any]) -> str:
    present, result = answer.get("filter_present"), answer.get("filter_result")
    if present is False:
        return "delivered (no filter)"
    if result is True:
        return "delivered (the filter matches)"
    if result is False:
        return "not delivered: the filter does not match"
    return f"answer: {printable(json.dumps(dict(answer), default=str)[:300])}"


# --- the command line --------------------------------------------------------------------------------

reserve_count = whole_number("a whole number of calls (0 or more)")


def add_parser(commands: Any) -> None:
    """``triggers plan|apply|test`` under ``python -m shared`` (called from ``devtools.cli.build_parser``)."""
    triggers = commands.add_parser(
        "triggers", help="the account's notification triggers as code: plan, apply, test",
        description="Create the triggers the functions need (one per notification type each accepts) at their "
                    "addresses, never touching a trigger that is not ours. Needs CLOUDINARY_URL.")
    actions = triggers.add_subparsers(dest="triggers_command", required=True, metavar="ACTION")

    def where(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("names", nargs="*", metavar="NAME", help="only these functions (default: all)")
        address = parser.add_mutually_exclusive_group(required=True)
        address.add_argument("--base-url", metavar="URL", help="functions at URL/NAME, e.g. https://x.vercel.app/api")
        address.add_argument("--deployed", action="store_true",
                             help="functions where deploy/deploy.toml says ([netlify] base_url/api/NAME, targets, url)")
        address.add_argument("--poll", action="store_true",
                             help="poll channels poll://NAME, drained by `python -m shared listen`")
        parser.add_argument("--prune", action="store_true",
                            help="also delete triggers of ours that are not wanted (never anyone else's)")
        budget(parser)

    def budget(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--reserve", type=reserve_count, default=DEFAULT_RESERVE, metavar="N",
                            help="Admin API calls to leave for the functions this hour (default %(default)s)")

    plan = actions.add_parser("plan", help="show what apply would create, change and leave",
                              description="Read the account's triggers and show what apply would do. Changes nothing.")
    where(plan)
    plan.set_defaults(run=cmd_plan)

    apply = actions.add_parser("apply", help="create and change the triggers, after a confirmation",
                               description="Do what plan shows, after a confirmation. A second apply does nothing.")
    where(apply)
    apply.add_argument("--yes", action="store_true", help="do not ask for a confirmation")
    apply.set_defaults(run=cmd_apply)

    test = actions.add_parser("test", help="evaluate a function's triggers against its samples (test_trigger)",
                              description="For each trigger of NAME, ask Cloudinary whether each sample of "
                                          "functions/NAME/samples would be delivered. Delivers nothing.")
    test.add_argument("name", metavar="NAME", help="function name")
    test.add_argument("samples", nargs="*", metavar="SAMPLE", help="only these samples (default: all)")
    test.add_argument("--base-url", metavar="URL", help="also count URL/NAME as the function's address")
    budget(test)
    test.set_defaults(run=cmd_test)
