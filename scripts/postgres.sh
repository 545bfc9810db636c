# Sourced (bash) by scripts/test.sh: a throwaway PostgreSQL on 127.0.0.1 for asset_sync's tests.
#
# Installs Debian's `postgresql` package when no server binaries are found, initialises a cluster in a
# temporary directory (as the `postgres` user when we are root: initdb refuses to run as root), starts it
# on a free loopback port with durability off (fsync: a test database need not survive a power cut),
# waits until it accepts connections, creates a database and exports TEST_DATABASE_URL. The cluster is
# stopped and its directory removed when the sourcing shell exits: by an EXIT trap that keeps any EXIT
# trap already set, and by a watchdog for the case where the shell `exec`s into pytest (no trap runs).
# Sourcing it twice in one shell reuses the running cluster.

_pgtest_main() {
  if [ -n "${_PGTEST_DIR:-}" ] && [ -n "${TEST_DATABASE_URL:-}" ] && [ -d "$_PGTEST_DIR/data" ]; then
    echo "postgres.sh: reusing the throwaway PostgreSQL at 127.0.0.1:${_PGTEST_PORT}"
    return 0
  fi

  local bin
  bin="$(_pgtest_bindir)"
  if [ -z "$bin" ]; then
    if [ "$(id -u)" != 0 ]; then
      echo "postgres.sh: PostgreSQL is not installed; run as root, or: sudo apt-get install postgresql" >&2
      return 1
    fi
    echo "postgres.sh: installing PostgreSQL (apt-get)..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null \
      && apt-get install -y -qq --no-install-recommends postgresql >/dev/null \
      || { echo "postgres.sh: apt-get install postgresql failed" >&2; return 1; }
    bin="$(_pgtest_bindir)"
    [ -n "$bin" ] || { echo "postgres.sh: installed, but found no initdb/pg_ctl" >&2; return 1; }
  fi

  local python_bin=python3
  [ -x .venv/bin/python ] && python_bin=.venv/bin/python
  local dir port password
  dir="$(mktemp -d "${TMPDIR:-/tmp}/pgtest.XXXXXX")" || return 1
  port="$("$python_bin" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')" \
    || { rm -rf "$dir"; return 1; }
  password="$("$python_bin" -c 'import secrets; print(secrets.token_hex(16))')" || { rm -rf "$dir"; return 1; }
  printf '%s\n' "$password" > "$dir/pwfile"

  # initdb and the server refuse to run as root: run them as the `postgres` user the package creates.
  local -a as_owner=()
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" --shell /usr/sbin/nologin postgres
    chown -R postgres: "$dir"
    chmod 700 "$dir"
    as_owner=(runuser -u postgres --)
  fi

  "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 --pwfile="$dir/pwfile" \
    -E UTF8 --no-locale >"$dir/initdb.log" 2>&1 \
    || { echo "postgres.sh: initdb failed:" >&2; cat "$dir/initdb.log" >&2; rm -rf "$dir"; return 1; }
  "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null \
    || { echo "postgres.sh: the server did not start:" >&2; tail -20 "$dir/server.log" >&2; rm -rf "$dir"; return 1; }

  _PGTEST_DIR="$dir"
  _PGTEST_PORT="$port"
  _PGTEST_BIN="$bin"
  _PGTEST_AS_OWNER="${as_owner[*]}"
  PGPASSWORD="$password" "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres asset_sync_test \
    || { echo "postgres.sh: createdb failed" >&2; _pgtest_stop; return 1; }

  export TEST_DATABASE_URL="postgresql://postgres:${password}@127.0.0.1:${port}/asset_sync_test"

  # Keep an EXIT trap someone already set: run it after ours.
  _PGTEST_PREV_EXIT_TRAP=""
  local previous
  previous="$(trap -p EXIT)"
  if [ -n "$previous" ]; then
    # `trap -p` prints: trap -- '<command, shell-quoted>' EXIT. Let the shell unquote it.
    eval "_pgtest_grab ${previous#trap }"
  fi
  trap '_pgtest_stop; eval "$_PGTEST_PREV_EXIT_TRAP"' EXIT

  # `exec pytest` replaces this shell without running the EXIT trap: stop the cluster when this
  # process (same PID after exec) is gone. Its output goes nowhere, so it holds no pipe open.
  ( while kill -0 "$$" 2>/dev/null; do sleep 1; done; _pgtest_stop ) </dev/null >/dev/null 2>&1 &
  disown $! 2>/dev/null || true

  echo "postgres.sh: throwaway PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port" \
    "(stops on exit); TEST_DATABASE_URL exported"
}

_pgtest_bindir() {
  local candidate
  candidate="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)"
  if [ -n "$candidate" ] && [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then
    echo "$candidate"
  elif command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"
  fi
}

_pgtest_grab() { _PGTEST_PREV_EXIT_TRAP="$2"; }

_pgtest_stop() {
  [ -n "${_PGTEST_DIR:-}" ] && [ -d "$_PGTEST_DIR" ] || return 0
  # shellcheck disable=SC2086  # the runuser prefix is words on purpose
  $_PGTEST_AS_OWNER "$_PGTEST_BIN/pg_ctl" -D "$_PGTEST_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$_PGTEST_DIR"
}

_pgtest_main
