# Sourced by scripts/platform/*.sh (not a platform script itself: test.sh runs scripts/platform/*.sh only).
# What every installer of the platform tests' tools needs: a loud failure, Debian packages installed as root,
# Node.js, and a Python 3.12 that really runs.

_script="scripts/platform/$(basename "$0")"

fail() {  # fail MESSAGE...: a failure nobody can miss in a long log, then exit 1 (never a silent skip)
  echo "" >&2
  echo "########################################################################################" >&2
  echo "$_script: $*" >&2
  echo "########################################################################################" >&2
  exit 1
}

apt_install() {  # apt_install PACKAGE...: as root, with apt-get; otherwise a failure naming the command
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "$(basename "$0"): installing Debian's $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "$@" >/dev/null; } \
      || fail "apt-get could not install $*"
  else
    fail "$* missing: install them as root (Debian: apt-get install $*)"
  fi
}

ensure_node() {  # ensure_node MAJOR [MINOR]: node and npm, from Debian if missing; at least MAJOR.MINOR
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm
  fi
  node -e "const [a, b] = process.versions.node.split('.').map(Number); process.exit(a > $1 || (a === $1 && b >= ${2:-0}) ? 0 : 1)" \
    || fail "Node $(node --version) is too old: this needs Node $1.${2:-0} or newer"
}

is_python312() {
  [ -x "$1" ] && "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1
}

find_python312() {  # the path of a Python 3.12 that runs, newest patch first; status 1 when there is none
  local candidate
  # python3.12 on PATH may be a pyenv shim that refuses to run: every candidate is tried, not just found.
  for candidate in "$(command -v python3.12 2>/dev/null || true)" \
      $(ls -d "${HOME:-/nonexistent}"/.pyenv/versions/3.12*/bin/python3 /root/.pyenv/versions/3.12*/bin/python3 2>/dev/null \
        | sort -V -r); do
    if [ -n "$candidate" ] && is_python312 "$candidate"; then
      echo "$candidate"
      return 0
    fi
  done
  return 1
}
