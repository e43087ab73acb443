#!/usr/bin/env bash
# Runs every Parley test: installs PostgreSQL if it is missing, starts a throwaway cluster on a free loopback
# port, runs the suite against SQLite and then against PostgreSQL, and prints "N passed, N failed, N skipped".
# Extra arguments go to `dotnet test` (e.g. --filter "FullyQualifiedName~Typing").
# PARLEY_TEST_STORES="sqlite" (or "postgres") runs one pass instead of both.
set -uo pipefail
cd "$(dirname "$0")"
root=$(pwd)

log() { echo "test.sh: $*" >&2; }

# shellcheck source=scripts/postgres.sh
. "$root/scripts/postgres.sh"
trap stop_postgres EXIT

ensure_postgres || exit 1
export PARLEY_TEST_PGBIN="$PGBIN"
# Test settings: no fsync (a crash loses nothing a test needs), enough connections for parallel test classes.
start_postgres -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 || exit 1
export PARLEY_TEST_POSTGRES="Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=postgres;Maximum Pool Size=20"

results="$root/TestResults"
rm -rf "$results"
dotnet build Parley.slnx -v q -nologo || exit 1

# Each test server clones this migrated database; migrating it with the server's own command tests that command too.
"$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres parley_template || exit 1
dotnet src/Parley.Server/bin/Debug/net10.0/Parley.Server.dll migrate --Storage:Provider=Postgres \
  "--ConnectionStrings:Postgres=Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=parley_template" >/dev/null || exit 1

rc=0
# PARLEY_TEST_STORES narrows the passes (e.g. "sqlite" to run the chaos tests, which start both stores, once).
for store in ${PARLEY_TEST_STORES:-sqlite postgres}; do
  log "running the suite against $store"
  # The chaos tests run each store themselves (with the server as a child process): once is enough.
  extra=()
  if [ "$store" = postgres ] && [[ " $* " != *" --filter "* ]]; then extra=(--filter "Category!=Chaos"); fi
  PARLEY_TEST_STORE=$store dotnet test Parley.slnx --no-build --logger "trx;LogFilePrefix=$store" --results-directory "$results" "${extra[@]}" "$@" || rc=1
done

passed=0; failed=0; skipped=0
shopt -s nullglob
for trx in "$results"/*.trx; do
  counters=$(grep -o '<Counters [^>]*>' "$trx")
  get() { sed -E "s/.* $1=\"([0-9]+)\".*/\1/" <<<"$counters"; }
  passed=$((passed + $(get passed)))
  failed=$((failed + $(get failed)))
  skipped=$((skipped + $(get total) - $(get executed)))
done
echo "$passed passed, $failed failed, $skipped skipped"
exit $rc
