#!/usr/bin/env bash
# The test command (`make test`): set up .venv if needed, start the services the tests use, lint, test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
if [ -f scripts/postgres.sh ]; then
  # A throwaway PostgreSQL on loopback for asset_sync's tests (exports TEST_DATABASE_URL).
  source scripts/postgres.sh
fi
# Wheels for the Lambda bundle tests, fetched here so that the tests themselves never reach the network.
wheels_stamp=.cache/wheels/.stamp
wheels_wanted="$(cat functions/*/requirements.txt | sha256sum | cut -c1-64)"
if [ ! -f "$wheels_stamp" ] || [ "$(cat "$wheels_stamp")" != "$wheels_wanted" ]; then
  mkdir -p .cache/wheels
  .venv/bin/python -m shared bundle --all --download-wheels .cache/wheels \
    --python-version "$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  echo "$wheels_wanted" > "$wheels_stamp"
fi
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"  # not exec: the EXIT trap of postgres.sh must stop the server
