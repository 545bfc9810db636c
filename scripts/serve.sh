#!/usr/bin/env bash
# `make serve`: set up .venv if needed, then serve every function locally (extra arguments go to serve).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
exec .venv/bin/python -m shared serve "$@"
