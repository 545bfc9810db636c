#!/usr/bin/env bash
# The test command (`make test`): set up .venv if needed, start the services the tests use, lint, test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
if [ -f scripts/postgres.sh ]; then
  # A throwaway PostgreSQL on loopback for asset_sync's tests (exports TEST_DATABASE_URL).
  source scripts/postgres.sh
fi
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
