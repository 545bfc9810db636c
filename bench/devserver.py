"""`python -m shared serve`'s server and router without its inspector, for bench/load.py: the same
devtools.serving.DevServer (read deadlines, at most 64 requests at once, one thread per process computing at a
time) run by the same worker processes (``serving.Workers``, one per CPU by default: ``serve``'s default) and
Router (one printed line per request), minus devtools/inspector.py's recording of every request, so that the
load test can say how much of serve's latency the recording is.

    python -m bench.devserver PORT [WORKERS]
"""

from __future__ import annotations

import sys

from devtools import serving
from devtools.cli import function_names, load_webhook


def main(argv: list[str]) -> int:
    names = function_names()
    router = serving.Router(names, out=serving.write_line)
    server = serving.make_dev_server("127.0.0.1", int(argv[0]), router)
    workers = int(argv[1]) if len(argv) > 1 else serving.default_workers()
    try:
        if workers > 1:
            for name in names:  # imported before the fork, as serve does
                load_webhook(name)
            return serving.Workers(server, workers).run()
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
