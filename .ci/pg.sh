#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the tests, as the postgres user (initdb and
# pg_ctl refuse root). Prints the URL the tests should use. Fails loudly if the server cannot start.
set -euo pipefail
PGPORT=${PGPORT:-54329}
PGDATA=${PGDATA:-/tmp/orch-pg}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -x "$bindir/initdb" ] || { echo "PostgreSQL server binaries not found (apt-get install postgresql)" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
if [ ! -f "$PGDATA/PG_VERSION" ]; then
  mkdir -p "$PGDATA"; [ "$(id -u)" = 0 ] && chown postgres:postgres "$PGDATA"
  as_pg "$bindir/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 >/dev/null
fi
if ! as_pg "$bindir/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
  as_pg "$bindir/pg_ctl" -D "$PGDATA" -w -t 60 -l "$PGDATA/server.log" \
    -o "-h 127.0.0.1 -p $PGPORT -k /tmp -F" start >/dev/null
fi
for _ in $(seq 1 30); do
  if as_pg "$bindir/pg_isready" -h 127.0.0.1 -p "$PGPORT" >/dev/null 2>&1; then
    echo "postgresql://postgres@127.0.0.1:$PGPORT/postgres"; exit 0
  fi
  sleep 1
done
echo "PostgreSQL did not become ready; log:" >&2; tail -n 30 "$PGDATA/server.log" >&2; exit 1
