#!/usr/bin/env bash
# `make bench`: regenerate BENCHMARKS.md (with a throwaway PostgreSQL for asset_sync's figures).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
source scripts/postgres.sh
.venv/bin/python -m bench "$@"
