#!/usr/bin/env bash
# Runs every Parley test: installs PostgreSQL if it is missing, starts a throwaway cluster on a free loopback
# port, runs the suite against SQLite and then against PostgreSQL, and prints "N passed, N failed, N skipped".
# Extra arguments go to `dotnet test` (e.g. --filter "FullyQualifiedName~Typing").
set -uo pipefail
cd "$(dirname "$0")"
root=$(pwd)

log() { echo "test.sh: $*" >&2; }

free_port() {
  local p
  for p in $(seq "$1" "$2"); do
    ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}

ensure_postgres() {
  if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
    log "installing PostgreSQL (Debian package)"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    for attempt in 1 2; do
      $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null && break
      [ "$attempt" -eq 2 ] && { log "could not install postgresql"; return 1; }
      sleep 3
    done
  fi
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
  export PARLEY_TEST_PGBIN="$PGBIN"
}

# Runs a PostgreSQL binary as the postgres user when we are root (initdb and postgres refuse to run as root).
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start_postgres() {
  PGPORT=$(free_port 25432 25999) || { log "no free port for PostgreSQL"; return 1; }
  PGDATA=$(mktemp -d /tmp/parley-pg.XXXXXX)
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  as_postgres "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null || return 1
  # Test settings: no fsync (a crash loses nothing a test needs), enough connections for parallel test classes.
  as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDATA -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    start </dev/null >/dev/null 2>&1 || { log "PostgreSQL did not start:"; cat "$PGDATA/server.log" >&2; return 1; }
  export PARLEY_TEST_POSTGRES="Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=postgres;Maximum Pool Size=20"
  log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT"
}

stop_postgres() {
  if [ -n "${PGDATA:-}" ] && [ -d "$PGDATA" ]; then
    as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate stop </dev/null >/dev/null 2>&1
    rm -rf "$PGDATA"
  fi
}
trap stop_postgres EXIT

ensure_postgres || exit 1
start_postgres || exit 1

results="$root/TestResults"
rm -rf "$results"
dotnet build Parley.slnx -v q -nologo || exit 1

# Each test server clones this migrated database; migrating it with the server's own command tests that command too.
"$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres parley_template || exit 1
dotnet src/Parley.Server/bin/Debug/net10.0/Parley.Server.dll migrate --Storage:Provider=Postgres \
  "--ConnectionStrings:Postgres=Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=parley_template" >/dev/null || exit 1

rc=0
for store in sqlite postgres; do
  log "running the suite against $store"
  PARLEY_TEST_STORE=$store dotnet test Parley.slnx --no-build --logger "trx;LogFilePrefix=$store" --results-directory "$results" "$@" || rc=1
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
