#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for trying Parley on PostgreSQL: installs Debian's postgresql package if no
# server is installed, starts a private cluster on a free loopback port (nothing of a system PostgreSQL is
# touched), creates the role and database "parley", and prints the settings to run Parley with.
# It runs in the foreground: Ctrl+C stops the cluster and deletes its data.
#
#   ./scripts/local-postgres.sh            # then, in another terminal, the two lines it prints
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/postgres.sh
. scripts/postgres.sh

sleeper=""
trap '[ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null; stop_postgres; echo "local-postgres.sh: PostgreSQL stopped, its data deleted" >&2' EXIT
trap 'exit 0' INT TERM
ensure_postgres
start_postgres

password=parley
"$PGBIN/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -v ON_ERROR_STOP=1 -q \
  -c "CREATE ROLE parley LOGIN PASSWORD '$password'" \
  -c "CREATE DATABASE parley OWNER parley"

cat <<EOF

PostgreSQL is running on 127.0.0.1:$PGPORT with the role and database "parley" (data in $PGDATA).
In another terminal, in the repository:

  export ConnectionStrings__Postgres="Host=127.0.0.1;Port=$PGPORT;Username=parley;Password=$password;Database=parley"
  dotnet run --project src/Parley.Server -- --Storage:Provider=Postgres

Press Ctrl+C here to stop PostgreSQL and delete its data.
EOF

# Wait for Ctrl+C; sleeping in the background keeps the shell free to run the trap at once.
while true; do
  sleep 3600 &
  sleeper=$!
  wait "$sleeper" || true
done
