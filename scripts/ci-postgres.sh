#!/usr/bin/env bash
# Runs a command with DATABASE_URL naming a PostgreSQL server (`make test-postgres`, .ci/run).
#
# Given DATABASE_URL, the command runs on it. Otherwise this starts a PostgreSQL of its own from
# Debian's package (initdb and pg_ctl under /usr/lib/postgresql/*/bin; scripts/install-deps.sh
# installs it with WITH_POSTGRES=1): a new data folder under /tmp, a free port, listening on
# 127.0.0.1 only with trust authentication, as the `postgres` user when this runs as root
# (initdb refuses root). It is a throwaway test server: fsync and synchronous commits are off.
# The server is stopped (by its PID) and its folder removed when the command ends, however it
# ends; the command's exit status is this script's.
set -euo pipefail
if [ $# -eq 0 ]; then
  echo "usage: $0 COMMAND [ARG...]" >&2
  exit 2
fi
if [ -n "${DATABASE_URL:-}" ]; then
  exec "$@"
fi

bindir=""
for d in /usr/lib/postgresql/*/bin; do
  [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && bindir="$d"  # the newest version wins
done
if [ -z "$bindir" ]; then
  echo "PostgreSQL's server is not installed (Debian: the postgresql package);" \
       "run WITH_POSTGRES=1 scripts/install-deps.sh, or give DATABASE_URL" >&2
  exit 1
fi

run_as=()
owner="$(id -un)"
if [ "$(id -u)" -eq 0 ]; then
  if ! id postgres >/dev/null 2>&1; then
    echo "running as root, and there is no postgres user to run the server as" \
         "(Debian's postgresql package makes it)" >&2
    exit 1
  fi
  run_as=(runuser -u postgres --)
  owner=postgres
fi

data="$(mktemp -d /tmp/loa-ci-postgres.XXXXXX)"
chown "$owner" "$data"
chmod 700 "$data"
pid=""
stop() {
  status=$?
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid"  # PostgreSQL's fast shutdown: ends the sessions, then exits
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      echo "PostgreSQL ($pid) did not stop within 10 s: killed" >&2
      kill -KILL "$pid"
    fi
  fi
  rm -rf "$data"
  exit "$status"
}
trap stop EXIT
trap 'exit 130' INT TERM

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"${run_as[@]}" "$bindir/initdb" --pgdata="$data/db" --username=postgres --auth=trust \
  --encoding=UTF8 --locale=C.UTF-8 >"$data/initdb.log" 2>&1 || {
  cat "$data/initdb.log" >&2
  exit 1
}
# the server's socket in its own folder, TCP on loopback only
"${run_as[@]}" "$bindir/pg_ctl" --pgdata="$data/db" --log="$data/server.log" --wait \
  --timeout=60 -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$data \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
  start >/dev/null || {
  cat "$data/server.log" >&2
  exit 1
}
pid="$(head -n 1 "$data/db/postmaster.pid")"
"${run_as[@]}" "$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -qAt \
  -c "CREATE DATABASE loa_test" >/dev/null
echo "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') for the tests" \
     "on 127.0.0.1:$port (data: $data)"
export DATABASE_URL="postgresql://postgres@127.0.0.1:$port/loa_test"
"$@"
