"""The WSGI app the load benchmarks serve with gunicorn and waitress: every function behind the local server's
router (devtools.serving.Router, as `python -m shared serve` runs it), printing nothing per request.

    gunicorn --workers 2 bench.wsgi_app:app        (what bench/load.py runs; see README "Hosting the WSGI apps")

Someone hosting one function serves its own ``app`` instead: ``gunicorn functions.hello_tag.handler:app``.
"""

from __future__ import annotations

import os

from devtools.cli import function_names
from devtools.serving import Router

_only = os.environ.get("BENCH_FUNCTIONS", "").split()
app = Router(_only or function_names())
