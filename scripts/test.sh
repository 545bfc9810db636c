#!/usr/bin/env bash
# The test command (`make test`): set up .venv if needed, start the services the tests use, lint, test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
if [ -f scripts/postgres.sh ]; then
  # A throwaway PostgreSQL on loopback for asset_sync's tests (exports TEST_DATABASE_URL).
  source scripts/postgres.sh
fi
# Wheels for the Lambda bundle tests, fetched here so that the tests themselves never reach the network:
# for this machine's Python and CPU (tests/deploy), and for Lambda's runtime on both architectures
# (tests/platform/aws_lambda).
wheels_wanted="$(cat functions/*/requirements.txt devtools/bundle.py | sha256sum | cut -c1-64)"
local_python="$(.venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
case "$(uname -m)" in aarch64|arm64) local_arch=arm64 ;; *) local_arch=x86_64 ;; esac
for target in "$local_python-$local_arch" 3.12-x86_64 3.12-arm64; do
  wheels=".cache/wheels/$target"
  if [ ! -f "$wheels/.stamp" ] || [ "$(cat "$wheels/.stamp")" != "$wheels_wanted" ]; then
    mkdir -p "$wheels"
    if ! .venv/bin/python -m shared bundle --all --download-wheels "$wheels" \
        --python-version "${target%-*}" --architecture "${target#*-}" >"$wheels.log" 2>&1; then
      cat "$wheels.log" >&2; echo "test.sh: downloading the wheels for $target failed (log above)" >&2; exit 1
    fi
    echo "$wheels_wanted" > "$wheels/.stamp"
  fi
done
# The platforms' own tools for tests/platform (pinned; network only the first time, cached in .cache/platform):
# Python 3.12 with awslambdaric and with Vercel's launcher, SAM's translator and cfn-lint rules, Netlify's config.
for platform_script in scripts/platform/*.sh; do
  bash "$platform_script" >/dev/null || { echo "test.sh: $platform_script failed" >&2; exit 1; }
done
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"  # not exec: the EXIT trap of postgres.sh must stop the server
