"""How many notifications per second asset_sync applies, through the local server, on a given database.

    python -m functions.asset_sync.bench --database-url sqlite:////tmp/bench.sqlite3 --count 2000
    python -m functions.asset_sync.bench --database-url postgresql://... --count 2000

It starts the project's local server (the one ``python -m shared serve`` runs) on a free loopback port,
then POSTs signed notifications to ``/api/asset_sync`` one after another, as Cloudinary does: every request
pays for HTTP, signature verification, JSON parsing and one database transaction. The mix is the sample
notifications spread over many assets (a new upload for every fifth notification, edits for the rest).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from devtools import cli
from shared import verify

EDITS = ("resource_tags_changed", "resource_context_changed", "resource_metadata_changed", "rename", "move",
         "resource_display_name_changed", "access_control_changed", "eager", "moderation", "info", "delete")


def notifications(count: int) -> list[bytes]:
    samples = {path.stem: json.loads(path.read_text())
               for path in (Path(__file__).parent / "samples").glob("*.json")}
    bodies = []
    for number in range(count):
        asset = number // 5
        name = "upload" if number % 5 == 0 else EDITS[number % len(EDITS)]
        text = json.dumps(samples[name])
        text = text.replace("3515c6000a548515f1134043f9785c2f", f"{asset:032x}")
        text = text.replace("oak_chair", f"chair_{asset}")
        payload = json.loads(text)
        payload["notification_context"]["triggered_at"] = f"2024-05-06T09:{number // 60000 % 60:02d}:" \
                                                          f"{number // 1000 % 60:02d}.{number % 1000:03d}Z"
        bodies.append(json.dumps(payload).encode())
    return bodies


class _Server(ThreadingMixIn, WSGIServer):
    """Like ``python -m shared serve``: one thread per request."""

    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def post(url: str, body: bytes, secret: str) -> int:
    """POST ``body`` signed as Cloudinary signs it; the HTTP status."""
    headers = {**verify.signed_headers(body, secret), "User-Agent": "Cloudinary"}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=25) as response:  # noqa: S310
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def run(database_url: str, count: int) -> dict[str, Any]:
    os.environ["DATABASE_URL"] = database_url
    secret = secrets.token_urlsafe(24)
    os.environ["CLOUDINARY_NOTIFICATION_SECRETS"] = secret
    server = make_server("127.0.0.1", 0, cli.Router(["asset_sync"]), server_class=_Server, handler_class=_Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/api/asset_sync"
    bodies = notifications(count)
    try:
        post(url, bodies[0], secret)  # the first request migrates the schema: not part of the rate
        started = time.perf_counter()
        statuses = [post(url, body, secret) for body in bodies[1:]]
        elapsed = time.perf_counter() - started
    finally:
        server.shutdown()
        server.server_close()
    return {"database": database_url.split(":", 1)[0], "notifications": len(statuses),
            "non_200": sum(1 for status in statuses if status != 200), "seconds": round(elapsed, 2),
            "per_second": round(len(statuses) / elapsed, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m functions.asset_sync.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="an empty database to fill")
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args(argv)
    sys.stdout.write(json.dumps(run(args.database_url, args.count)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
