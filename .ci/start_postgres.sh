#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on a free port and prints its DATABASE_URL.
# Usage: env=$(.ci/start_postgres.sh DIR) && eval "$env"   (stop with: pg_ctl -D DIR/data stop)
# PG_BINDIR picks the server's bin directory (default: the newest under /usr/lib/postgresql).
# Fails loudly: on any error it prints the reason (and the log that explains it) to stderr and
# exits non-zero, and it prints the export lines only after a query has reached the new server.
set -euo pipefail
dir=${1:-/tmp/yxt-pg}
fail() {
  echo "start_postgres: $*" >&2
  exit 1
}
trap 'fail "failed at line $LINENO: $BASH_COMMAND"' ERR
bindir=${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)} || true
[ -n "$bindir" ] && [ -x "$bindir/initdb" ] || fail "no PostgreSQL server binaries in ${bindir:-/usr/lib/postgresql/*/bin} (apt-get install postgresql)"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# initdb refuses to run as root: as root, the cluster belongs to the postgres user, who must be
# able to reach DIR through every parent directory (a mktemp -d parent is 0700 root).
run() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
rm -rf "$dir"
mkdir -p "$dir"
if [ "$(id -u)" = 0 ]; then
  chown postgres "$dir"
  runuser -u postgres -- test -w "$dir" \
    || fail "the postgres user cannot write $dir (is a parent directory closed to it? $(namei -m "$dir" 2>/dev/null | tail -n +2 | tr -s ' ' | paste -sd ';'))"
fi
run "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
  || { tail -20 "$dir/initdb.log" >&2; fail "initdb failed in $dir/data"; }
cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 400
shared_buffers = 256MB
fsync = on
synchronous_commit = on
CONF
run "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w start >/dev/null 2>&1 \
  || { tail -20 "$dir/server.log" >&2 2>/dev/null; fail "pg_ctl start failed (log: $dir/server.log)"; }
url="postgres://postgres@127.0.0.1:$port/postgres"
version=$(psql "$url" -Atc 'select version()' 2>&1) || fail "the server started but does not answer: $version"
case "$version" in
  PostgreSQL*) ;;
  *) fail "not a PostgreSQL server at $url: $version" ;;
esac
echo "start_postgres: $version on port $port" >&2
echo "export DATABASE_URL=$url"
echo "export YXT_PG_DIR=$dir"
