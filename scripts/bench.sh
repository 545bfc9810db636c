#!/usr/bin/env bash
# `make bench`: regenerate BENCHMARKS.md. Starts a throwaway PostgreSQL for asset_sync's figures, and installs
# what only the benchmark uses: Debian's `wrk` (the load generator; apt-get, when run as root) and gunicorn and
# waitress in .cache/bench-tools (pip --target: never project dependencies, never in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    echo "bench.sh: installing wrk (apt-get)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk; } >/dev/null \
      || echo "bench.sh: apt-get install wrk failed: the load test will say it was not measured" >&2
  else
    echo "bench.sh: wrk is not installed (sudo apt-get install wrk): the load test will say it was not measured" >&2
  fi
fi

tools=.cache/bench-tools
if [ ! -d "$tools/gunicorn" ] || [ ! -d "$tools/waitress" ]; then
  echo "bench.sh: installing gunicorn and waitress into $tools (for the benchmark only)..." >&2
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --target "$tools" gunicorn waitress \
    >/dev/null 2>&1 || echo "bench.sh: pip could not install gunicorn/waitress: those rows will say so" >&2
fi

source scripts/postgres.sh
.venv/bin/python -m bench "$@"
