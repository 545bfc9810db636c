"""``python -m shared``: run, try, copy and check the webhook functions locally.

    serve         every function on one local server, as Netlify and Vercel would route them
    send          sign a sample notification exactly as Cloudinary does and POST it
    new           start a function from devtools/skeleton (or copy one with --from)
    check         which environment variables each function needs, and whether they are set
    bundle        dist/NAME.zip for AWS Lambda (devtools.bundle)
    deploy-files  template.yaml, netlify.toml, api/NAME.py from deploy/deploy.toml (devtools.deploy)
    run           a function's own commands (`run asset_sync status`)
    triggers      the account's notification triggers as code: plan, apply, test (devtools.triggers)
    listen        drain each function's poll channel through the webhook code path (devtools.listen)
    dead-letters  list, replay or drop what listen could not deliver

The commands speak to a person at a terminal: an error is one line on stderr and exit status 2, never a
traceback (``CliError``), and whatever a request, an answer or a payload carries is printed escaped
(``serving.printable``). The development server itself is ``devtools.serving``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import http.client
import importlib
import ipaddress
import json
import os
import re
import secrets
import socket
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from devtools import serving
from devtools.arguments import whole_number
from devtools.serving import ROUTE_PREFIXES, Router, printable  # noqa: F401 - Router, ROUTE_PREFIXES: imported from here
from shared import config, verify

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS_DIR = PROJECT_ROOT / "functions"
TESTS_DIR = PROJECT_ROOT / "tests" / "functions"
DEMO_SECRET_FILE = PROJECT_ROOT / ".local" / "demo-signing-secret"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8888
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{1,40}$")


class CliError(SystemExit):
    """A command cannot do what it was asked: ``main`` prints the message as one line and exits 2.

    (A ``SystemExit``, so that code calling a command outside ``main`` still stops with the message.)"""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --- discovering functions ------------------------------------------------------------------------

def function_names() -> list[str]:
    """Every folder under functions/ with a handler.py, sorted."""
    return sorted(path.parent.name for path in FUNCTIONS_DIR.glob("*/handler.py"))


def _check_name(name: str) -> None:
    """An existing function's name, or a clear exit."""
    if name not in function_names():
        raise CliError(f"No function named {name!r}. Functions: {', '.join(function_names())}")


# Names a new function cannot take: its files would not parse (keywords) or its module would shadow one the
# project imports (the standard library, the project's packages, the SDKs the functions use).
PROJECT_MODULES = {"shared", "functions", "devtools", "tests", "bench", "api", "deploy", "docs", "scripts",
                   "cloudinary", "sendgrid", "python_http_client", "boto3", "botocore", "psycopg2", "PIL", "pil",
                   "requests", "urllib3", "pytest", "conftest", "handler", "samples"}


def check_new_name(name: str) -> None:
    import keyword

    if not _NAME_PATTERN.match(name):
        raise CliError("NAME must be snake_case: lower-case letters, digits and _, starting with a letter "
                         "(2 to 41 characters).")
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        raise CliError(f"{name!r} is a Python keyword: `import functions.{name}` would not parse. Pick another.")
    if name in sys.stdlib_module_names or name in PROJECT_MODULES:
        raise CliError(f"{name!r} is the name of a module the project imports ({name}); a function of that "
                         "name would shadow it. Pick another, e.g. "
                         f"{name}_hook.")


def load_webhook(name: str) -> Any:
    """The ``Webhook`` object of ``functions/<name>/handler.py`` (its ``handle``)."""
    if name not in function_names():
        raise CliError(f"No function named {name!r}. Functions: {', '.join(function_names())}")
    return importlib.import_module(f"functions.{name}.handler").handle


# --- demo mode: the local signing secret shared by `serve` and `send` -------------------------------

def demo_secret(create: bool) -> str | None:
    if DEMO_SECRET_FILE.exists():
        return DEMO_SECRET_FILE.read_text().strip() or None
    if not create:
        return None
    DEMO_SECRET_FILE.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(24)
    try:  # created private (never briefly world-readable), and only once if serve and send race
        descriptor = os.open(DEMO_SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return DEMO_SECRET_FILE.read_text().strip() or None
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")
    return secret


def enter_demo_mode_if_unconfigured() -> bool:
    """With no signing secret at all, sign locally with a generated secret and run dry where credentials
    are missing. Returns whether demo mode is on."""
    if config.signing_secrets():
        return False
    os.environ["CLOUDINARY_NOTIFICATION_SECRETS"] = demo_secret(create=True) or ""
    os.environ[config.DEMO_MODE_VAR] = "1"
    return True


# --- serve ---------------------------------------------------------------------------------------

def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    handler = logging.StreamHandler()
    handler.setFormatter(serving.PrintableFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler])
    # The router prints one readable line per request; the functions' JSON lines only when asked,
    # except errors (5xx and their tracebacks), which always show.
    logging.getLogger("cloudinary_webhooks").setLevel(logging.INFO if args.log_json else logging.ERROR)
    names = function_names()
    from devtools.inspector import Inspector

    workers = serving.default_workers() if args.workers is None else args.workers
    if workers > 1 and not hasattr(os, "fork"):
        print(f"--workers {workers}: this platform cannot fork worker processes; serving from one process.",
              file=sys.stderr)
        workers = 1
    workers = min(workers, args.max_connections)  # each worker handles at least one request at once
    # Every notification is recorded for the inspector (devtools/inspector.py), whose page is GET / in a browser.
    # One write per line (serving.write_line): the workers share the terminal.
    inspector = Inspector()
    router = Router(names, out=serving.write_line, inspector=inspector)
    try:
        server = serving.make_dev_server(args.host, args.port, router, read_timeout=args.read_timeout,
                                         max_connections=args.max_connections)
    except OSError as error:
        raise CliError(listen_error(args.host, args.port, error)) from None
    demo = enter_demo_mode_if_unconfigured()
    host = f"[{args.host}]" if ":" in args.host else args.host
    base = f"http://{host}:{server.server_port}"
    print(f"Serving {len(names)} function(s) on {base}")  # the URL ends the line: scripts read it there
    for name in names:
        webhook = load_webhook(name)  # imported here, before the workers fork: each starts with every function
        missing = [var for var in webhook.requires if not os.environ.get(var, "").strip()]
        note = ""
        if missing and demo:
            note = f"  (dry run: {', '.join(missing)} not set)"
        elif missing:
            note = f"  (NOT CONFIGURED: {', '.join(missing)} not set; requests answer 500)"
        print(f"  {name:<22} {base}/api/{name}   {base}/.netlify/functions/{name}{note}")
    print(f"\n{_inspector_line(args.host, server.server_port)}")
    if demo:
        print("\nDEMO MODE: no CLOUDINARY_URL or CLOUDINARY_NOTIFICATION_SECRETS is set, so notifications are\n"
              f"verified with a generated local secret ({DEMO_SECRET_FILE.relative_to(PROJECT_ROOT)}), which\n"
              "`python -m shared send` also uses. Functions whose credentials are missing only report what\n"
              "they would do. Set the variables from each function's README to run them for real.")
    why = "one per CPU this process may use" if args.workers is None else "--workers"
    print(f"\n{workers} worker processes answer ({why})" if workers > 1 else "\nOne process answers.")
    example = "hello_tag" if "hello_tag" in names else (names[0] if names else "NAME")
    print(f"\nTry: python -m shared send {example}    (Ctrl-C stops the server)\n",
          flush=True)
    status = 0
    try:
        if workers > 1:
            inspector.prepare_workers(workers)
            status = serving.Workers(server, workers, on_start=inspector.worker_started,
                                     on_exit=inspector.close).run()
        else:
            server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    print("\nStopped." if status == 0 else "\nStopped: the workers kept ending.")
    return status


def _inspector_line(host: str, port: int) -> str:
    """Where the inspector is: it answers clients on this machine only, so at a loopback address."""
    with contextlib.suppress(ValueError):
        address = ipaddress.ip_address(host)
        if address.is_unspecified or address.is_loopback:
            local = "[::1]" if address.version == 6 else "127.0.0.1"
            return f"Inspector: http://{local}:{port}/  (the latest notifications; answers this machine only)"
        return (f"Inspector: not reachable ({host} is not this machine's loopback, and the inspector answers this "
                f"machine only): use --host 127.0.0.1 or 0.0.0.0 to see it at http://127.0.0.1:{port}/")
    return f"Inspector: http://localhost:{port}/  (the latest notifications; answers this machine only)"


def listen_error(host: str, port: int, error: OSError) -> str:
    """Why the server cannot listen on host:port, and what to type instead, in one line."""
    if error.errno == errno.EADDRINUSE:
        return (f"port {port} is in use on {host} (another server, perhaps a `serve` already running) — "
                f"use another: {_serve_command(port=_free_port_near(host, port))}")
    if error.errno == errno.EACCES:
        return (f"port {port} needs administrator rights on this machine (ports below 1024 do) — "
                f"use another: {_serve_command(port=DEFAULT_PORT if port != DEFAULT_PORT else 8080)}")
    if error.errno == errno.EADDRNOTAVAIL:
        return (f"{host} is not an address of this machine — use {_serve_command(host='127.0.0.1')} (this machine "
                f"only) or {_serve_command(host='0.0.0.0')} (every network interface)")  # noqa: S104 - a suggestion
    if isinstance(error, socket.gaierror):
        return f"cannot listen on {host}: no such host ({error.strerror}) — try {_serve_command(host='127.0.0.1')}"
    return f"cannot listen on {host}:{port}: {error.strerror or error}"


def _serve_command(port: int | None = None, host: str | None = None) -> str:
    """The command that does it, in the form the person typed: `make serve PORT=...` under make."""
    if os.environ.get("MAKELEVEL"):  # GNU make sets it for its recipes: `make serve` started us
        return f"`make serve {f'PORT={port}' if port is not None else f'HOST={host}'}`"
    return f"`python -m shared serve {f'--port {port}' if port is not None else f'--host {host}'}`"


def _free_port_near(host: str, port: int) -> int | str:
    """A port after ``port`` that nobody listens on right now, to suggest; 0 (any free port) if none."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for candidate in range(port + 1, min(port + 50, 65536)):
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            return candidate
    return 0


# --- send -----------------------------------------------------------------------------------------

def sample_path(name: str, sample: str | None) -> Path:
    """``sample`` as a file, else as the name of one of the function's samples; none given: the sample of
    a type the function accepts."""
    _check_name(name)
    samples_dir = FUNCTIONS_DIR / name / "samples"
    if sample:
        candidate = Path(sample).expanduser()
        if candidate.is_file():
            return candidate
        if candidate.is_dir():
            raise CliError(f"{sample!r} is a folder; give a JSON file or a sample name.")
        if os.sep in sample or "/" in sample or sample.startswith(("~", ".")):
            raise CliError(f"{sample!r}: file not found.")
        named = samples_dir / (sample if sample.endswith(".json") else f"{sample}.json")
        if named.is_file():
            return named
        available = ", ".join(path.stem for path in sorted(samples_dir.glob("*.json")))
        raise CliError(f"{sample!r}: file not found, and {name} has no sample of that name. "
                       f"Samples: {available or 'none'}")
    webhook = load_webhook(name)
    for accepted in [*sorted(webhook.accepts), "upload"]:  # a function of every type ("*"): its upload
        if (samples_dir / f"{accepted}.json").is_file():
            return samples_dir / f"{accepted}.json"
    found = sorted(samples_dir.glob("*.json"))
    if not found:
        raise CliError(f"{name} has no samples in {samples_dir}")
    return found[0]


def signing_secret_for_send() -> str:
    configured = config.signing_secrets()
    if configured:
        return configured[0]
    local = demo_secret(create=True)
    assert local
    return local


def check_url(url: str) -> str:
    """``url`` if it is an http(s) URL with a host and a valid port; otherwise a ``CliError`` saying so."""
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError when the port is not a number from 0 to 65535
    except ValueError as error:
        raise CliError(f"--url {url!r} is not a valid URL ({error}).") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise CliError(f"--url {url!r} is not an http:// or https:// URL: send only POSTs to a web address.")
    if not parts.hostname:
        raise CliError(f"--url {url!r} names no host, e.g. https://example.com/api/NAME.")
    return url


def _http_opener() -> urllib.request.OpenerDirector:
    """urllib for http(s) only: no file:, ftp: or data: handler, and redirects not followed (a notification is
    POSTed where it is sent, as Cloudinary does; a 3xx is shown as the answer it is)."""
    opener = urllib.request.OpenerDirector()
    for handler in (urllib.request.ProxyHandler(), urllib.request.UnknownHandler(), urllib.request.HTTPHandler(),
                    urllib.request.HTTPSHandler(), urllib.request.HTTPDefaultErrorHandler(),
                    urllib.request.HTTPErrorProcessor()):
        opener.add_handler(handler)
    return opener


def post_signed(url: str, body: bytes, secret: str, algorithm: str = "sha1",
                timeout: float = 25.0) -> tuple[int, bytes]:
    headers = {**verify.signed_headers(body, secret, algorithm=algorithm), "User-Agent": "Cloudinary"}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - the user's URL
    try:
        with _http_opener().open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def cmd_send(args: argparse.Namespace) -> int:
    if args.url:
        check_url(args.url)
    path = sample_path(args.name, args.sample)
    try:
        body = path.read_bytes()  # sent and signed byte for byte, as Cloudinary signs what it sends
    except OSError as error:
        raise CliError(f"cannot read {str(path)!r}: {error.strerror or error}") from None
    url = args.url or f"http://{DEFAULT_HOST}:{args.port}/api/{args.name}"
    try:
        status, answer = post_signed(url, body, signing_secret_for_send(), args.algorithm)
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        hint = "" if args.url else " Is the local server running? Start it with: python -m shared serve"
        print(printable(f"Could not reach {url}: {reason}.{hint}"), file=sys.stderr)
        return 2
    print(printable(f"POST {url}  ({path.name}, {len(body)} bytes, signed {args.algorithm})"))
    print(f"-> {status}")
    print(printable_answer(answer))
    return 0 if status == 200 else 1


def printable_answer(answer: bytes) -> str:
    """An answer's body for the terminal: JSON pretty-printed, anything else indented under the status line;
    whatever the server sent, no control character reaches the terminal."""
    try:
        # json.dumps escapes C0 controls inside strings, so a raw newline in its output is layout, kept
        return printable(json.dumps(json.loads(answer), indent=2, ensure_ascii=False), keep="\n")
    except (ValueError, RecursionError):
        lines = answer.decode("utf-8", "replace").split("\n")
        return "\n".join(f"  {printable(line)}" for line in lines)


# --- new ------------------------------------------------------------------------------------------

SKELETON_DIR = Path(__file__).resolve().parent / "skeleton"


def render_skeleton(name: str) -> dict[Path, str]:
    """The files of a new function, from devtools/skeleton/*.tmpl (``string.Template``: $name, $prefix, ...)."""
    import string

    values = {"name": name, "prefix": name.upper(), "title": name.replace("_", " ").capitalize(),
              "logical_id": "".join(part.capitalize() for part in name.split("_")) + "Function"}
    folder = FUNCTIONS_DIR / name
    files: dict[Path, str] = {folder / "__init__.py": "",
                              folder / "requirements.txt": "cloudinary>=1.46,<2\n",
                              TESTS_DIR / f"test_{name}.py": ""}
    for source in sorted(SKELETON_DIR.rglob("*")):
        if not source.is_file():
            continue
        relative = source.relative_to(SKELETON_DIR)
        text = source.read_text()
        if source.suffix == ".tmpl":
            text = string.Template(text).substitute(values)
            relative = relative.with_suffix("")
        if relative.name == "test_handler.py":
            files[TESTS_DIR / f"test_{name}.py"] = text
        else:
            files[folder / relative] = text
    return files


def cmd_new(args: argparse.Namespace) -> int:
    name, template = args.name, args.template
    check_new_name(name)
    if template is not None and template not in function_names():
        raise CliError(f"No function {template!r} to copy. Functions: {', '.join(function_names())}")
    target = FUNCTIONS_DIR / name
    if target.exists():
        raise CliError(f"{target.relative_to(PROJECT_ROOT)} already exists; nothing changed.")

    notes = []
    if template is None:
        files = render_skeleton(name)
    else:  # a copy of a working function, its names replaced
        def rename(text: str) -> str:
            return text.replace(template, name).replace(template.upper(), name.upper())

        source = FUNCTIONS_DIR / template
        files = {target / path.relative_to(source): rename(path.read_text()) for path in sorted(source.rglob("*"))
                 if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"}
        template_test = TESTS_DIR / f"test_{template}.py"
        if template_test.is_file():
            files[TESTS_DIR / f"test_{name}.py"] = rename(template_test.read_text())
        else:
            notes.append(f"{template}'s tests are not a single tests/functions/test_{template}.py, so none were "
                         f"copied: write tests/functions/test_{name}.py")
    written = []
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    from devtools import deploy

    written += deploy.write_deploy_files()  # template.yaml, api/NAME.py, netlify.toml know the new function
    print(f"Created {name}" + (f" from {template}" if template else "") + ":")
    for path in written:
        print(f"  {path.relative_to(PROJECT_ROOT)}")
    for note in notes:
        print(f"\nNote: {note}")
    print(f"\nNext: edit functions/{name}/handler.py, run its tests (.venv/bin/pytest tests/functions/test_{name}.py),"
          f"\nand restart `make serve` if it is running: it serves the functions it found when it started.")
    return 0


# --- check ----------------------------------------------------------------------------------------

def cmd_check(args: argparse.Namespace) -> int:
    all_set = True
    try:
        secrets_configured = len(config.signing_secrets())
    except Exception as error:  # a malformed CLOUDINARY_URL: say so, never print it
        print(f"signing secret: CLOUDINARY_URL is malformed ({type(error).__name__})")
        secrets_configured, all_set = 0, False
    print(f"signing secret: {'set' if secrets_configured else 'MISSING'} "
          f"({secrets_configured} configured; from CLOUDINARY_URL / CLOUDINARY_NOTIFICATION_SECRETS)")
    all_set &= bool(secrets_configured)
    for name in function_names():
        webhook = load_webhook(name)
        print(f"\n{name}  (accepts: {', '.join(sorted(webhook.accepts))})")
        for var in webhook.requires:
            present = bool(os.environ.get(var, "").strip())
            all_set &= present
            print(f"  {var:<34} {'set' if present else 'MISSING'}  required")
        for var in webhook.optional:
            present = bool(os.environ.get(var, "").strip())
            if var in webhook.serverless_requires:
                print(f"  {var:<34} {'set' if present else 'not set'}  optional here; REQUIRED on AWS Lambda, "
                      "Vercel and Netlify (500 not configured without it)")
                on_platform = config.serverless_platform()
                all_set &= present or not on_platform
            else:
                print(f"  {var:<34} {'set' if present else 'not set'}  optional")
        if "IDEMPOTENCY_TABLE" in webhook.optional:
            all_set &= _check_idempotency_store()
    return 0 if all_set else 1


def _check_idempotency_store() -> bool:
    """Where a function that sends emails or messages records them (shared/idempotency.py): say which store,
    and warn where none can work (a serverless platform without IDEMPOTENCY_TABLE or DATABASE_URL)."""
    from shared import idempotency
    from shared.errors import ConfigError

    try:
        backend = idempotency.configured_backend()
    except ConfigError as error:
        print(f"  idempotency store: UNUSABLE: {error.log_detail}")
        return False
    if backend is None:
        print(f"  idempotency store: MISSING on {config.serverless_platform()}: set IDEMPOTENCY_TABLE (DynamoDB) or "
              "DATABASE_URL (postgresql://...); every request answers 500 until then")
        return False
    for variable in ("IDEMPOTENCY_TABLE", "DATABASE_URL"):  # check never prints a configured value
        value = os.environ.get(variable, "").strip()
        if value:
            backend = backend.replace(value, f"${variable}")
    print(f"  idempotency store: {backend}")
    return True


# --- bundle / deploy-files -----------------------------------------------------------------------

def cmd_bundle(args: argparse.Namespace) -> int:
    from devtools import bundle

    names = function_names() if args.all else args.names
    if not names:
        raise CliError("Name one or more functions, or use --all.")
    for name in names:
        _check_name(name)
    out_dir = Path(args.out).resolve()
    if args.download_wheels:
        bundle.download_wheels(names, Path(args.download_wheels), args.python_version, args.architecture)
        print(f"Wheels for {', '.join(names)} are in {args.download_wheels}")
        return 0
    print(f"{'bundle':<34} {'zipped':>10} {'unzipped':>10} {'files':>6}   (Lambda limits: 50 MB / 250 MB)")
    for name in names:
        built = bundle.build_bundle(name, out_dir=out_dir, python_version=args.python_version,
                                    architecture=args.architecture,
                                    find_links=Path(args.find_links) if args.find_links else None,
                                    no_index=args.no_index)
        print(f"{built.path.relative_to(out_dir.parent)!s:<34} {built.zipped / 1e6:>8.2f}MB "
              f"{built.unzipped / 1e6:>8.2f}MB {built.files:>6}   python{built.python_version} {built.architecture}"
              f"{'' if built.compiled else ' (no bytecode)'}")
    return 0


def cmd_deploy_files(args: argparse.Namespace) -> int:
    from devtools import deploy

    changed = deploy.write_deploy_files()
    for path in changed:
        print(f"wrote {path.relative_to(PROJECT_ROOT)}")
    if not changed:
        print("template.yaml, netlify.toml and api/*.py are up to date.")
    return 0


# --- run: a function's own commands --------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    if args.name not in function_names():
        raise CliError(f"No function named {args.name!r}. Functions: {', '.join(function_names())}")
    if not (FUNCTIONS_DIR / args.name / "__main__.py").exists():
        raise CliError(f"{args.name} has no commands of its own.")
    module = importlib.import_module(f"functions.{args.name}.__main__")
    return int(module.main(args.arguments) or 0)


# --- entry ----------------------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (plus the usage when no command was given: the list of commands
    is then what the person needs), exit status 2."""

    def error(self, message: str) -> Any:
        usage = self.format_usage() if message.endswith("required: COMMAND") else ""
        self.exit(2, f"{usage}{printable(f'{self.prog}: error: {message} (see `{self.prog} --help`)')}\n")


port_number = whole_number("a port number (0 to 65535)", 0, 65535)  # 0: any free port
positive_count = whole_number("a whole number of at least 1", 1)


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def host_name(text: str) -> str:
    """An IP address or a host name, checked before any lookup: no DNS query for something that cannot be one."""
    host = text.strip()
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(host))
    labels = host.rstrip(".").split(".")
    if (0 < len(host) <= 253 and all(_HOST_LABEL.match(label) for label in labels)
            and not labels[-1].isdigit()):  # "999.1.1.1" is a mistyped address, not a name
        return host
    raise argparse.ArgumentTypeError(f"{text!r} is neither an IP address nor a host name "
                                     "(e.g. 127.0.0.1, 0.0.0.0, ::1, localhost)")


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 86400:  # rejects nan too
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m shared",
        description="Run, try, copy and check the Cloudinary webhook functions locally.",
        epilog="Start with `python -m shared serve` in one terminal and `python -m shared send hello_tag` "
               "in another. With nothing configured the server runs in demo mode: it signs and verifies "
               "with a local secret and only reports what each function would do.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve every function locally (demo mode when unconfigured)",
                                description="Serve every function at /.netlify/functions/NAME and /api/NAME.")
    serve.add_argument("--host", type=host_name, default=DEFAULT_HOST,
                       help="address to listen on (default %(default)s: this machine only)")
    serve.add_argument("--port", type=port_number, default=DEFAULT_PORT, help="port (default %(default)s; 0 = any)")
    serve.add_argument("--log-json", action="store_true", help="also print each function's JSON log line")
    serve.add_argument("--read-timeout", type=positive_seconds, default=serving.DEFAULT_READ_TIMEOUT,
                       metavar="SECONDS", help="time for a whole request to arrive (default %(default)g)")
    serve.add_argument("--max-connections", type=positive_count, default=serving.DEFAULT_MAX_CONNECTIONS,
                       metavar="N", help="requests handled at once, by all workers together; more wait their turn "
                                         "(default %(default)s)")
    serve.add_argument("--workers", type=positive_count, default=None, metavar="N",
                       help="processes answering (default: one per CPU this process may use, at most "
                            f"{serving.MAX_DEFAULT_WORKERS}; here {serving.default_workers()}); 1: a single process")
    serve.set_defaults(run=cmd_serve)

    send = commands.add_parser("send", help="sign a sample notification as Cloudinary does and POST it",
                               description="Sign a notification (current timestamp) and POST it. The secret "
                                           "is CLOUDINARY_URL's api_secret, else the local demo secret.")
    send.add_argument("name", help="function name, e.g. eager_email")
    send.add_argument("sample", nargs="?", help="sample name from functions/NAME/samples, or a JSON file")
    send.add_argument("--url", help="where to POST, an http(s) URL (default: the local server's /api/NAME)")
    send.add_argument("--port", type=port_number, default=DEFAULT_PORT,
                      help="local server port (default %(default)s)")
    send.add_argument("--algorithm", choices=("sha1", "sha256"), default="sha1", help="signature hash")
    send.set_defaults(run=cmd_send)

    new = commands.add_parser("new", help="create functions/NAME from the skeleton, or --from a function",
                              description="Start a function from devtools/skeleton (a minimal tagging function with "
                                          "its README, sample and test), or copy an existing one with --from.")
    new.add_argument("name", help="snake_case name of the new function")
    new.add_argument("--from", dest="template", default=None,
                     help="copy this function (and its tests) instead of starting from the skeleton")
    new.set_defaults(run=cmd_new)

    check = commands.add_parser("check", help="list each function's environment variables: set or missing",
                                description="Never prints values. Exits 1 when a required variable is missing.")
    check.set_defaults(run=cmd_check)

    bundle = commands.add_parser("bundle", help="build dist/NAME.zip for AWS Lambda (function + shared + deps)",
                                 description="Build a self-contained Lambda bundle per function: its code, "
                                             "shared/, and its dependencies as Linux wheels for the runtime "
                                             "(boto3 left out: the runtime provides it, unless pinned with ==).")
    bundle.add_argument("names", nargs="*", metavar="NAME", help="function(s) to bundle")
    bundle.add_argument("--all", action="store_true", help="bundle every function")
    bundle.add_argument("--out", default=str(PROJECT_ROOT / "dist"), help="output folder (default dist/)")
    bundle.add_argument("--python-version", default=None,
                        help="Lambda Python version (default: deploy.toml's runtime)")
    bundle.add_argument("--architecture", choices=("x86_64", "arm64"), default=None,
                        help="Lambda architecture (default: deploy.toml's architecture, whatever builds it)")
    bundle.add_argument("--find-links", help="also look for wheels in this folder")
    bundle.add_argument("--no-index", action="store_true", help="do not use the package index (offline)")
    bundle.add_argument("--download-wheels", metavar="DIR", help="only download the wheels into DIR")
    bundle.set_defaults(run=cmd_bundle)

    deploy_files = commands.add_parser("deploy-files", help="regenerate template.yaml, netlify.toml, api/*.py",
                                       description="Regenerate the deploy files from deploy/deploy.toml and "
                                                   "the functions' declarations.")
    deploy_files.set_defaults(run=cmd_deploy_files)

    run = commands.add_parser("run", help="a function's own commands, e.g. `run asset_sync migrate`",
                              description="Run a function's own command line: `run asset_sync migrate|replay|"
                                          "status`, `run video_moderation sweep --dry-run`. "
                                          "`run NAME --help` lists them.")
    run.add_argument("name", help="function name")
    run.add_argument("arguments", nargs=argparse.REMAINDER, help="its command and options")
    run.set_defaults(run=cmd_run)

    # --- triggers (devtools/triggers.py) ---
    from devtools import triggers

    triggers.add_parser(commands)  # triggers plan|apply|test
    # --- end triggers ---

    # --- listen / dead-letters (devtools/listen.py) ---
    from devtools import listen

    listen.add_commands(commands)  # listen [NAME ...] [--channel C] [--once] [--wait S]; dead-letters [replay|drop]
    # --- end listen / dead-letters ---
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except CliError as error:  # for a person at a terminal: one line, no traceback
        print(printable(str(error.message)), file=sys.stderr)
        return 2
    except BrokenPipeError:  # `... | head`: the reader has gone, which is not an error of ours
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130
