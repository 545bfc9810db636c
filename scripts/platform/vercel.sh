#!/usr/bin/env bash
# The tools of the Vercel platform tests (tests/platform/vercel), which run Vercel's own code offline:
#   .cache/platform/vercel-node       @vercel/python 25.0.0, @vercel/fs-detectors, @vercel/build-utils: `npm ci`
#                                     of tests/platform/vercel/package.json + package-lock.json
#   .cache/platform/vercel-tools      bin/uv: uv 0.10.11, the version @vercel/python 25.0.0 pins (its build()
#                                     runs uv), and bin/python3.12: what the build image has on PATH
#   .cache/platform/vercel-py312      a bare Python 3.12 venv: the functions' interpreter (python3.12 is what
#                                     the builder picks for this project); their packages come from the bundle
#   .cache/platform/vercel-uv-cache   uv's cache, filled by one real build of a function with network access, so
#                                     that the tests' builds (every function, each test run) need no network
#
#   bash scripts/platform/vercel.sh
#
# Cached by a stamp (.cache/platform/vercel.stamp): a second run with the same inputs does nothing and needs no
# network. The inputs (tests/platform/vercel/builder.py's fingerprint) are this script, the pins and scripts in
# tests/platform/vercel, and what the builder installs from: pyproject.toml's [project], [build-system] and
# [tool.uv] tables, uv.lock, .python-version. Change the dependencies and this primes the cache again; the tests
# fail, asking for this script, until it has. Installs Node.js from Debian (apt-get) only when `node` is missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
source scripts/platform/lib/common.sh
umask 022

UV_VERSION=0.10.11  # = UV_VERSION in @vercel/python 25.0.0's dist/index.js (the tests check that it still is)
cache=.cache/platform
node_dir="$cache/vercel-node"
tools="$cache/vercel-tools"
venv="$cache/vercel-py312"
uv_cache="$cache/vercel-uv-cache"
stamp="$cache/vercel.stamp"
here=tests/platform/vercel

python312="$(find_python312)" || fail "no Python 3.12 found (tried python3.12 on PATH, ~/.pyenv/versions/3.12*, \
/root/.pyenv/versions/3.12*). @vercel/python builds this project for python3.12 and vercel-runtime needs >= 3.12: \
install Python 3.12 (e.g. pyenv install 3.12) and run this again."

ensure_node 18  # @vercel/python
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || echo "vercel.sh: warning: Node.js $(node --version); Vercel builds with 20+" >&2

base="$("$python312" -c 'import sys; print(sys.base_prefix)')"
wanted="$("$python312" "$here/builder.py" fingerprint) $base"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$wanted" ] && [ -x "$venv/bin/python" ] && [ -x "$tools/bin/uv" ] \
    && [ -f "$node_dir/node_modules/@vercel/python/package.json" ]; then
  exit 0
fi
started=$SECONDS
mkdir -p "$cache"
exec 9>"$cache/vercel.sh.lock"
flock 9  # one vercel.sh at a time (make test, and someone running it by hand)
rm -f "$stamp"

# Vercel's build code, exactly as locked (again only when the lock changed).
lock_hash="$(cat "$here/package.json" "$here/package-lock.json" | sha256sum | cut -c1-64)"
if [ "$(cat "$node_dir/.lock-hash" 2>/dev/null || true)" != "$lock_hash" ]; then
  rm -rf "$node_dir"
  mkdir -p "$node_dir"
  cp "$here/package.json" "$here/package-lock.json" "$node_dir/"
  (cd "$node_dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null) \
    || fail "npm ci failed in $node_dir"
  echo "$lock_hash" > "$node_dir/.lock-hash"
fi

# uv as @vercel/python pins it. (pip's extra local indexes on this machine may print warnings: harmless.)
if ! [ -x "$tools/bin/uv" ] || [ "$("$tools/bin/uv" --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  rm -rf "$tools"
  "$python312" -m pip install --quiet --disable-pip-version-check --no-warn-script-location --root-user-action=ignore \
    --target "$tools" \
    "uv==$UV_VERSION" || fail "could not install uv==$UV_VERSION"
  [ "$("$tools/bin/uv" --version | cut -d' ' -f2)" = "$UV_VERSION" ] || fail "$tools/bin/uv is not uv $UV_VERSION"
fi
# The builder asks uv which Pythons are installed and picks 3.12 for this project only if uv sees one: a plain
# (not venv) python3.12 on the builder's PATH, as Vercel's build image has.
ln -sfn "$("$python312" -c 'import os, sys; print(os.path.realpath(sys.executable))')" "$tools/bin/python3.12"

# The functions' interpreter: Python 3.12 and nothing installed in it.
if [ "$("$venv/bin/python" -c 'import sys; print(sys.base_prefix)' 2>/dev/null || true)" != "$base" ]; then
  rm -rf "$venv"
  "$python312" -m venv --without-pip "$venv" || fail "could not create $venv (Debian: apt-get install python3-venv)"
fi

# One real build with network access; every later build (the tests') runs offline from this cache.
mkdir -p "$uv_cache"
"$python312" "$here/builder.py" prime >/dev/null || fail "the priming build failed (see above)"

# The stamp: builder.py's fingerprint of the inputs (the tests compare it), and the Python 3.12 used.
echo "$wanted" > "$stamp"
echo "vercel.sh: Vercel's tools ready in $((SECONDS - started)) s ($venv, $node_dir, $tools, $uv_cache)" >&2
