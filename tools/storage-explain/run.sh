#!/usr/bin/env bash
# Query plans of Parley's hot statements on a realistic PostgreSQL data set (1,000 conversations,
# 1,000,000 messages), on a throwaway cluster with default (durable) settings. Output: docs/storage.md's
# numbers come from this script.   Usage: tools/storage-explain/run.sh > plans.txt
# With --serve, it explains nothing: it seeds, positions the events, analyzes, prints the connection string and
# keeps the database until interrupted, for a server and `Parley.Bench` run on a database with history
# (docs/benchmarks.md, "On a database with history").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=../../scripts/postgres.sh
. "$root/scripts/postgres.sh"
trap stop_postgres EXIT

ensure_postgres
start_postgres -c shared_buffers=256MB
psql=("$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -X -q)
"$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres parley
dotnet build "$root/src/Parley.Server" -v q -nologo >/dev/null
dotnet "$root/src/Parley.Server/bin/Debug/net10.0/Parley.Server.dll" migrate --Storage:Provider=Postgres \
  "--ConnectionStrings:Postgres=Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=parley" >&2
start=$(date +%s)
"${psql[@]}" -d parley -f "$here/seed.sql" >&2
pg_log "seeded in $(( $(date +%s) - start )) s"
if [ "${1:-}" = --serve ]; then
  "${psql[@]}" -d parley -f "$here/positions.sql" >&2
  "${psql[@]}" -d parley -c "VACUUM ANALYZE" >&2
  pg_log "ready; Ctrl-C (or kill $$) stops and removes it"
  echo "Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=parley"
  # Bash runs a trap only once its foreground command ends: waiting on a background sleep lets it run as the signal
  # arrives, not up to an hour later.
  trap 'exit 130' INT TERM
  while :; do sleep 3600 & wait $!; done
fi
"${psql[@]}" -d parley -f "$here/explain.sql"
