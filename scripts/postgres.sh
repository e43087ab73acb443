# Functions to run a throwaway PostgreSQL cluster on a free loopback port (sourced by test.sh and tools).
# After start_postgres: PGBIN, PGPORT, PGDATA are set; stop_postgres removes everything.

pg_log() { echo "postgres.sh: $*" >&2; }

free_port() {
  local p
  for p in $(seq "$1" "$2"); do
    ss -Htln "sport = :$p" | grep -q . || { echo "$p"; return 0; }
  done
  return 1
}

# Installs Debian's postgresql package when no server binaries are present; sets PGBIN (newest version).
ensure_postgres() {
  if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
    pg_log "installing PostgreSQL (Debian package)"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    local attempt
    for attempt in 1 2; do
      $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends postgresql >/dev/null && break
      [ "$attempt" -eq 2 ] && { pg_log "could not install postgresql"; return 1; }
      sleep 3
    done
  fi
  PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
}

# Runs a PostgreSQL binary as the postgres user when we are root (initdb and postgres refuse to run as root).
as_postgres() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

# start_postgres [extra server options...]: initdb into a temp directory and start on a free port.
start_postgres() {
  PGPORT=$(free_port 25432 25999) || { pg_log "no free port for PostgreSQL"; return 1; }
  PGDATA=$(mktemp -d /tmp/parley-pg.XXXXXX)
  [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$PGDATA"
  chmod 700 "$PGDATA"
  as_postgres "$PGBIN/initdb" -D "$PGDATA" -U postgres -A trust -E UTF8 --locale=C.UTF-8 --no-sync >/dev/null || return 1
  as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGDATA $*" \
    start </dev/null >/dev/null 2>&1 || { pg_log "PostgreSQL did not start:"; cat "$PGDATA/server.log" >&2; return 1; }
  pg_log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PGPORT"
}

stop_postgres() {
  if [ -n "${PGDATA:-}" ] && [ -d "$PGDATA" ]; then
    as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -m immediate stop </dev/null >/dev/null 2>&1
    rm -rf "$PGDATA"
  fi
}
