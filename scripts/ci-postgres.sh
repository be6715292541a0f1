#!/usr/bin/env bash
# Runs a command with DATABASE_URL naming a PostgreSQL server (`make test-postgres`, .ci/run).
#
# Given DATABASE_URL, the command runs on it. Otherwise tests/pg_server.py (shared with the tests
# that stop and start their own database) starts a PostgreSQL of its own from Debian's package
# (initdb and pg_ctl under /usr/lib/postgresql/*/bin; scripts/install-deps.sh installs it with
# WITH_POSTGRES=1): a new data folder under /tmp, a free port, listening on
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

exec python3 "$(dirname "$0")/../tests/pg_server.py" "$@"
