"""``python -m shared listen`` and ``python -m shared dead-letters``: real notifications on a laptop, no tunnel.

    listen [NAME ...] [--channel CHANNEL] [--once] [--wait SECONDS]
        each function drains the poll channel named after it (``--channel`` overrides it for one NAME), every
        message through the function's own wrapper (``shared.poll``): 200 acknowledged, 503 left for
        redelivery, any other answer stored as a dead letter and then acknowledged. One line per message.
        ``--once``: until a poll comes back empty. Ctrl-C: the message in hand finishes, the rest stay
        unacknowledged (Cloudinary redelivers them after the visibility timeout), exit 0.
    dead-letters                    list the stored refusals
    dead-letters replay ID...|--all run them again through the same path; those answered 200 are removed
    dead-letters drop ID...         forget them

Needs nothing but ``CLOUDINARY_URL`` (the poll API is authenticated with its key and secret) and poll triggers
(``python -m shared triggers apply --poll``). Registered in ``devtools.cli.build_parser`` by ``add_commands``.

Observers: ``OBSERVERS`` holds callables ``observer(function, message, response, ms)`` called for every message
``listen`` handled (after it was acknowledged, kept or stored); the local inspector appends its recorder there.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from devtools import cli
from devtools.arguments import whole_number
from devtools.serving import printable
from shared import config, dead_letters, poll
from shared.errors import ConfigError

OBSERVERS: list[Callable[[str, Mapping[str, Any], Any, float], Any]] = []
ONCE_MAX_FAILURES = 6  # --once gives up after this many transient failures in a row (1+2+4+8+16 s of waiting)
STOP_GRACE_SECONDS = 30.0  # Ctrl-C: how long the message in hand may take to finish (its budget is 15 s)
# How a drain waits before retrying a transient API failure; None: the stop event's wait (Ctrl-C interrupts it).
SLEEP: Callable[[float], Any] | None = None

SETUP_HINT = ("set CLOUDINARY_URL=cloudinary://API_KEY:API_SECRET@CLOUD_NAME (Cloudinary Console > Settings > "
              "API Keys), then create the poll triggers: python -m shared triggers apply --poll")


# --- listen ------------------------------------------------------------------------------------------------

def check_account() -> str:
    """The cloud name of CLOUDINARY_URL, or a one-line ``CliError`` saying what to set."""
    try:
        credentials = config.cloudinary_credentials()
    except ConfigError as error:
        raise cli.CliError(f"{error.log_detail} (your account's is under Cloudinary Console > Settings > API Keys)") \
            from None
    if credentials is None:
        raise cli.CliError("listen reads your Cloudinary account's poll channels, so it needs its API key and "
                           f"secret (demo mode has none): {SETUP_HINT}")
    return credentials[0]


def _configure_logging(log_json: bool) -> None:
    handler = logging.StreamHandler()
    from devtools.serving import PrintableFormatter

    handler.setFormatter(PrintableFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    # `listen` prints one readable line per message; the functions' JSON lines only when asked, except errors.
    logging.getLogger("cloudinary_webhooks").setLevel(logging.INFO if log_json else logging.ERROR)
    # The SDK keeps one connection per host; channels drained at once each open their own: no warning for that.
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)


def cmd_listen(args: argparse.Namespace) -> int:
    names = list(dict.fromkeys(args.names)) or cli.function_names()
    for name in names:
        cli.load_webhook(name)  # an unknown name: one line listing the functions
    if args.channel is not None and len(names) != 1:
        raise cli.CliError("--channel sets the channel of one function: name exactly one, e.g. "
                           f"`python -m shared listen {names[0]} --channel {args.channel}`")
    cloud = check_account()
    try:
        store = dead_letters.open_store()
    except ConfigError as error:
        raise cli.CliError(error.log_detail or str(error)) from None
    _configure_logging(args.log_json)
    _observe_in_inspector()
    webhooks = {name: cli.load_webhook(name) for name in names}
    channels = {name: args.channel or name for name in names}

    print(f"Listening to {len(names)} poll channel(s) of Cloudinary account {printable(cloud)} "
          f"(Ctrl-C stops; the message in hand finishes):")
    width = max(len(name) for name in names)
    for name, webhook in webhooks.items():
        missing = [var for var in webhook.requires if not os.environ.get(var, "").strip()]
        note = (f"  (NOT CONFIGURED: {', '.join(missing)} not set: its notifications become dead letters; "
                "replay them once set)" if missing else "")
        print(f"  {name:<{width}}  poll://{printable(channels[name])}{note}")
    print(f"Dead letters: {store.describe()}.  Nothing arriving? python -m shared triggers apply --poll\n",
          flush=True)
    return run(webhooks, channels=channels, once=args.once, wait_seconds=args.wait, store=store)


def _observe_in_inspector() -> None:
    """`serve`'s inspector (http://127.0.0.1:8888/) lists what `listen` handled too: its recorder observes."""
    try:
        from devtools import inspector

        recorder = inspector.record_poll_message
    except (ImportError, AttributeError):  # an inspector without that hook: listen works the same without it
        return
    if recorder not in OBSERVERS:
        OBSERVERS.append(recorder)


class _Printer:
    """One line per message (and per retry), whichever channel's thread it comes from."""

    def __init__(self, width: int, out: Callable[[str], Any]) -> None:
        self.width = width
        self.out = out
        self.lock = threading.Lock()

    def line(self, text: str) -> None:
        with self.lock:
            self.out(text)

    def outcome(self, outcome: poll.Outcome) -> None:
        where = {
            poll.Outcome.ACKED: "acknowledged",
            poll.Outcome.DEAD_LETTER: f"dead letter #{outcome.dead_letter}, acknowledged",
            poll.Outcome.KEPT: "NOT acknowledged: " + (outcome.note or "Cloudinary redelivers it"),
            poll.Outcome.ACK_FAILED: "NOT acknowledged: " + outcome.note,
        }[outcome.disposition]
        fields = [time.strftime("%H:%M:%S"), f"{outcome.function:<{self.width}}",
                  printable(outcome.notification_type or "-"), printable((outcome.public_id or "-")[:100]),
                  f"{outcome.status} {printable(outcome.result)}", printable(where), f"{outcome.ms:.1f} ms"]
        self.line("  ".join(fields))

    def retry(self, function: str) -> Callable[[poll.PollError, float], None]:
        def report(error: poll.PollError, seconds: float) -> None:
            detail = f" [{printable(error.detail[:200])}]" if error.detail else ""
            self.line(f"{time.strftime('%H:%M:%S')}  {function:<{self.width}}  {printable(error.message)}{detail}; "
                      f"retrying in {seconds:g} s")

        return report


def _observe(function: str, message: Mapping[str, Any], response: Any, ms: float) -> None:
    for observer in list(OBSERVERS):
        observer(function, message, response, ms)


def run(webhooks: Mapping[str, Any], *, channels: Mapping[str, str] | None = None, once: bool = False,
        wait_seconds: int = poll.DEFAULT_WAIT_SECONDS, store: Any = None, api: Any = None,
        stop: threading.Event | None = None, sleep: Callable[[float], Any] | None = None,
        out: Callable[[str], Any] | None = None, err: Callable[[str], Any] | None = None,
        visibility_timeout: int = poll.DEFAULT_VISIBILITY_TIMEOUT) -> int:
    """Drain each function's channel in its own thread until ``once`` finds them empty, or Ctrl-C (a
    KeyboardInterrupt in this thread, or ``stop`` set). Exit status: 0, or 2 after a permanent API error."""
    stop = stop if stop is not None else threading.Event()
    api = api if api is not None else poll.NotificationsAPI()
    out = out or (lambda text: print(text, flush=True))
    err = err or (lambda text: print(text, file=sys.stderr, flush=True))
    channels = channels or {name: name for name in webhooks}
    printer = _Printer(max(len(name) for name in webhooks), out)
    sleep = sleep if sleep is not None else SLEEP
    if store is None:
        store = dead_letters.open_store()

    drains = [poll.Drain(webhook, channel=channels[name], api=api, store=store, once=once,
                         wait_seconds=wait_seconds, visibility_timeout=visibility_timeout, stop=stop, sleep=sleep,
                         max_failures=ONCE_MAX_FAILURES if once else None, on_message=_observe,
                         on_outcome=printer.outcome, on_retry=printer.retry(name))
              for name, webhook in webhooks.items()]
    errors: list[poll.PollError] = []
    # Each thread's own "finished" event, not Thread.is_alive(): a join() that Ctrl-C interrupted can leave a
    # running thread reported as finished (CPython 3.11).
    finished = [threading.Event() for _ in drains]

    def work(drain: poll.Drain, done: threading.Event) -> None:
        try:
            drain.run()
        except poll.PollError as error:
            errors.append(error)
            stop.set()  # the same credentials serve every channel: stop them all, say it once
        except Exception as error:  # a bug: say so on this thread's line, stop the others
            errors.append(poll.PollError(f"{drain.function}: {type(error).__name__}: {error}"))
            stop.set()
        finally:
            done.set()

    for drain, done in zip(drains, finished, strict=True):
        threading.Thread(target=work, args=(drain, done), name=f"listen-{drain.channel}", daemon=True).start()
    interrupted = False
    try:
        for done in finished:
            while not done.wait(0.2):
                pass
    except KeyboardInterrupt:
        interrupted = True
        stop.set()
        if any(drain.busy for drain in drains):
            printer.line("Stopping: finishing the message in hand; the others stay unacknowledged (Cloudinary "
                         "redelivers them after the visibility timeout).")
        _wait_for_messages_in_hand(drains, finished)

    totals = {key: sum(drain.counts[key] for drain in drains) for key in ("messages", "acked", "dead_letters",
                                                                         "kept", "ack_failed")}
    printer.line(f"{'Stopped' if interrupted else 'Done'}: {totals['messages']} message(s): {totals['acked']} "
                 f"acknowledged, {totals['dead_letters']} dead letter(s), "
                 f"{totals['kept'] + totals['ack_failed']} left for redelivery."
                 + ("  See them: python -m shared dead-letters" if totals["dead_letters"] else ""))
    if errors:
        for message in dict.fromkeys(printable(error.message) for error in errors):
            err(message)
        return 2
    return 0


def _wait_for_messages_in_hand(drains: list[poll.Drain], finished: list[threading.Event]) -> None:
    """After Ctrl-C: wait (bounded) for each thread that holds a message; one blocked in a long poll is left
    (its claims, if any, run out by themselves). A second Ctrl-C stops waiting."""
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    try:
        for drain, done in zip(drains, finished, strict=True):
            while drain.busy and not done.is_set() and time.monotonic() < deadline:
                done.wait(0.1)
    except KeyboardInterrupt:
        return


# --- dead-letters --------------------------------------------------------------------------------------------

def _open_store() -> dead_letters.Store:
    try:
        return dead_letters.open_store()
    except ConfigError as error:
        raise cli.CliError(error.log_detail or str(error)) from None


def _guarded(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except dead_letters.StoreUnavailable as error:
        raise cli.CliError(f"the dead-letter store did not answer: {error}") from None


def cmd_dead_letters(args: argparse.Namespace) -> int:
    action = getattr(args, "action", None) or "list"
    if action == "replay":
        return cmd_replay(args)
    if action == "drop":
        return cmd_drop(args)
    store = _open_store()
    letters = _guarded(store.letters)
    if not letters:
        print(f"No dead letters ({store.describe()}).")
        return 0
    print(f"{len(letters)} dead letter(s) in {store.describe()}:")
    print(f"{'ID':>5}  {'stored':<19}  {'function':<20}  {'type':<24}  {'status':<30}  public_id")
    for letter in letters:
        payload = letter.payload() or {}
        kind = payload.get("notification_type")
        from shared.webhook import Notification

        public_id = Notification(payload).public_id if payload else None
        stored = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(letter.stored_at))
        status = f"{letter.status} {letter.error}"
        seen = f"  ({letter.deliveries} deliveries)" if letter.deliveries > 1 else ""
        replays = f"  ({letter.replays} replay(s))" if letter.replays else ""
        print(f"{letter.id:>5}  {stored:<19}  {printable(letter.function):<20}  "
              f"{printable(kind if isinstance(kind, str) else '-')[:24]:<24}  {printable(status)[:30]:<30}  "
              f"{printable((public_id or '-')[:100])}{seen}{replays}")
    print("\nReplay once the cause is fixed: python -m shared dead-letters replay ID... | --all")
    return 0


def replay_letter(letter: dead_letters.DeadLetter) -> Any:
    """Run a stored delivery through its function's wrapper exactly as `listen` did: the same bytes, timestamp
    and signature. Returns the ``Response``."""
    webhook = cli.load_webhook(letter.function)
    envelope = {"timestamp": letter.timestamp or None, "signature": letter.signature or None}
    request = poll.message_request(envelope, letter.channel or letter.function, letter.body)
    return webhook(request)


def cmd_replay(args: argparse.Namespace) -> int:
    if args.all == bool(args.ids):
        raise cli.CliError("Name the dead letters to replay (their IDs, from `python -m shared dead-letters`) "
                           "or use --all.")
    if args.max_age is not None:  # this process only: the stored timestamp may be older than the 2 h window
        os.environ["WEBHOOK_MAX_AGE_SECONDS"] = str(args.max_age)
    try:
        secrets = config.signing_secrets()
    except ConfigError as error:
        raise cli.CliError(error.log_detail or str(error)) from None
    if not secrets:
        raise cli.CliError("No signing secret is configured, so every replay would answer 500: set CLOUDINARY_URL "
                           "(and CLOUDINARY_NOTIFICATION_SECRETS for a rotated key).")
    store = _open_store()
    _configure_logging(False)
    if args.all:
        letters = _guarded(store.letters)
    else:
        letters = []
        for letter_id in dict.fromkeys(args.ids):
            letter = _guarded(lambda letter_id=letter_id: store.get(letter_id))
            if letter is None:
                raise cli.CliError(f"No dead letter #{letter_id}: see `python -m shared dead-letters`.")
            letters.append(letter)
    failed = 0
    for letter in letters:
        if letter.function not in cli.function_names():
            print(f"#{letter.id}  {printable(letter.function)}: no such function any more; kept")
            failed += 1
            continue
        started = time.perf_counter()
        response = replay_letter(letter)
        ms = (time.perf_counter() - started) * 1000
        word = response.body.get("status") or response.body.get("error") or ""
        if response.status == 200:
            _guarded(lambda letter=letter: store.remove(letter.id))
            verdict = "removed"
        else:
            _guarded(lambda letter=letter, response=response: store.record_replay(letter.id, response.status,
                                                                                 response.body))
            verdict = "kept"
            failed += 1
        print(f"#{letter.id}  {printable(letter.function)}  {response.status} {printable(str(word))}  {verdict}  "
              f"{ms:.1f} ms")
    print(f"{len(letters) - failed} of {len(letters)} replayed with 200 and removed.")
    return 1 if failed else 0


def cmd_drop(args: argparse.Namespace) -> int:
    store = _open_store()
    for letter_id in dict.fromkeys(args.ids):
        removed = _guarded(lambda letter_id=letter_id: store.remove(letter_id))
        print(f"#{letter_id}  {'dropped' if removed else 'not found'}")
    return 0


# --- the parsers (registered by devtools.cli.build_parser) -------------------------------------------------

wait_seconds = whole_number("a whole number of seconds from 0 to 60", 0, 60)
letter_id = whole_number("a dead letter's ID (a number)")
max_age = whole_number("a whole number of seconds above 0", 1)


def channel_name(text: str) -> str:
    name = text.strip()
    if not name or len(name) > 100 or any(char.isspace() or char in "/?#*" or ord(char) < 32 for char in name):
        raise argparse.ArgumentTypeError(f"{text!r} is not a channel name (the part after poll://, e.g. hello_tag)")
    return name


def add_commands(commands: Any) -> None:
    listen = commands.add_parser(
        "listen", help="drain the functions' poll channels: real notifications, no public URL",
        description="Each function drains the Cloudinary poll channel named after it (poll://NAME) and answers "
                    "every message through its own wrapper, exactly as a webhook delivery: 200 is acknowledged, "
                    "503 left for redelivery, any other answer stored as a dead letter and acknowledged. Needs "
                    "CLOUDINARY_URL, and poll triggers (python -m shared triggers apply --poll).")
    listen.add_argument("names", nargs="*", metavar="NAME", help="function(s) to listen for (default: every one)")
    listen.add_argument("--channel", type=channel_name, help="the channel to drain, for one NAME (default: NAME)")
    listen.add_argument("--once", action="store_true", help="stop when a poll comes back empty")
    listen.add_argument("--wait", type=wait_seconds, default=poll.DEFAULT_WAIT_SECONDS, metavar="SECONDS",
                        help="how long each poll waits for a message (0-60, default %(default)s)")
    listen.add_argument("--log-json", action="store_true", help="also print each function's JSON log line")
    listen.set_defaults(run=cmd_listen)

    letters = commands.add_parser(
        "dead-letters", help="list, replay or drop the notifications a function refused in poll mode",
        description="Messages a function answered 400, 401, 413, 415 or 500 in poll mode are stored (SQLite in "
                    ".local/, or DATABASE_URL) and acknowledged. List them; replay them once the cause is fixed "
                    "(a rotated secret: CLOUDINARY_NOTIFICATION_SECRETS); those answered 200 are removed.")
    actions = letters.add_subparsers(dest="action", metavar="ACTION")
    actions.add_parser("list", help="list them (the default)")
    replay = actions.add_parser("replay", help="run them again through their function; 200 removes them",
                                description="Replay stored deliveries byte for byte (same body, timestamp and "
                                            "signature) through their function's wrapper.")
    replay.add_argument("ids", nargs="*", type=letter_id, metavar="ID", help="dead letter ID(s)")
    replay.add_argument("--all", action="store_true", help="replay every dead letter")
    replay.add_argument("--max-age", type=max_age, default=None, metavar="SECONDS",
                        help="accept signatures up to this old for this replay (default: WEBHOOK_MAX_AGE_SECONDS, "
                             "2 h): a letter older than that is otherwise refused as stale")
    drop = actions.add_parser("drop", help="forget dead letters without replaying them")
    drop.add_argument("ids", nargs="+", type=letter_id, metavar="ID", help="dead letter ID(s)")
    letters.set_defaults(run=cmd_dead_letters)
