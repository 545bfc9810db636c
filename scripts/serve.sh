#!/usr/bin/env bash
# `make serve [PORT=8899] [HOST=0.0.0.0]`: set up .venv if needed, then serve every function locally (the
# arguments, `--host ... --port ...` from the Makefile, go to `python -m shared serve`).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
exec .venv/bin/python -m shared serve "$@"
