"""`python -m shared serve`'s server and router without its inspector, for bench/load.py: the same
devtools.serving.DevServer (threads, read deadlines, at most 64 requests at once) and Router (one printed
line per request), minus devtools/inspector.py's recording of every request, so that the load test can
say how much of serve's latency the recording is.

    python -m bench.devserver PORT
"""

from __future__ import annotations

import sys

from devtools import serving
from devtools.cli import function_names


def main(argv: list[str]) -> int:
    router = serving.Router(function_names(), out=lambda line: print(line, flush=True))
    server = serving.make_dev_server("127.0.0.1", int(argv[0]), router)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
