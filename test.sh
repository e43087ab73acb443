#!/usr/bin/env bash
# Runs every Parley test: installs PostgreSQL if it is missing, starts a throwaway cluster on a free loopback
# port, runs the suite against SQLite and then against PostgreSQL, and prints "N passed, N failed, N skipped".
# Extra arguments go to `dotnet test` (e.g. --filter "FullyQualifiedName~Typing").
# PARLEY_TEST_STORES="sqlite" (or "postgres") runs one pass instead of both.
# Then the TypeScript client's and the web app's suites (scripts/clients.sh): unit, integration against a real
# Parley, and browser tests in Chromium. PARLEY_TEST_CLIENTS="no" skips them, "only" runs them alone; by default they
# run unless a --filter narrows the run. The closing line counts every suite; a line before it splits the counts.
#
# While a pass runs it prints a progress line a minute (counts so far) and each failure as it happens; the whole
# console output of a pass is kept in TestResults/<store>.log, the results in TestResults/<store>*.trx.
#
# Store-independent tests run in the first pass only. A test class that does not use the store PARLEY_TEST_STORE
# selects (a unit test on fakes, a class that picks its store itself such as the store contracts, the PostgreSQL
# multi-instance and outage tests or the chaos test) carries [Trait("Store", "Independent")]: later passes add
# "Store!=Independent" to the filter. A class that builds its server with ParleyFactory or ServerFactory (without
# sharedPostgres) depends on the store and must not carry the trait.
#
# Redis fan-out tests start their own redis-server processes on free ports; Debian's package is installed if missing,
# and any such server a test left running is stopped when test.sh exits.
set -uo pipefail
cd "$(dirname "$0")"
root=$(pwd)

log() { echo "test.sh: $*" >&2; }

# The caller's --filter is combined with the pass's own; every other argument goes to dotnet test unchanged.
user_filter=""
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --filter) [ $# -ge 2 ] || { log "--filter needs a value"; exit 2; }; user_filter=$2; shift 2 ;;
    --filter=*) user_filter=${1#--filter=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

clients=${PARLEY_TEST_CLIENTS:-auto}
if [ "$clients" = auto ]; then
  if [ -n "$user_filter" ]; then clients=no; else clients=yes; fi
fi

# shellcheck source=scripts/postgres.sh
. "$root/scripts/postgres.sh"
# shellcheck source=scripts/clients.sh
. "$root/scripts/clients.sh"
# shellcheck source=scripts/redis.sh
. "$root/scripts/redis.sh"
trap 'stop_test_redis; stop_postgres' EXIT

if [ "$clients" != only ]; then
  ensure_postgres || exit 1
  ensure_redis || exit 1
  export PARLEY_TEST_PGBIN="$PGBIN"
  # Test settings: no fsync (a crash loses nothing a test needs), enough connections for parallel test classes.
  start_postgres -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 || exit 1
  export PARLEY_TEST_POSTGRES="Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=postgres;Maximum Pool Size=20"
fi

results="$root/TestResults"
rm -rf "$results"
mkdir -p "$results"
dotnet build Parley.slnx -v q -nologo || exit 1

if [ "$clients" != only ]; then
  # Each test server clones this migrated database; migrating it with the server's own command tests that command too.
  "$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres parley_template || exit 1
  dotnet src/Parley.Server/bin/Debug/net10.0/Parley.Server.dll migrate --Storage:Provider=Postgres \
    "--ConnectionStrings:Postgres=Host=127.0.0.1;Port=$PGPORT;Username=postgres;Database=parley_template" >/dev/null || exit 1
fi

# report_progress STORE LOGFILE: reads `dotnet test` output (console logger, verbosity normal) on stdin, keeps all
# of it in LOGFILE, and prints on stderr a line a minute with the counts so far, each failing test's name and
# error message as it arrives, xunit's long-running-test notices and catastrophic failures, and lines it does
# not know (a crashed test host says so in one). Passing tests and stack traces stay in the log file and the TRX.
report_progress() {
  local store=$1 logfile=$2 line pending="" start=$SECONDS next=$((SECONDS + 60))
  local passed=0 failed=0 skipped=0 block="" shown=0
  while :; do
    # A timeout (status > 128) only wakes the loop for the minute line; a partial line waits for its end.
    if IFS= read -r -t 5 line; then
      report_line "$pending$line"
      pending=""
    elif [ $? -gt 128 ]; then
      pending+=$line
    else
      [ -n "$pending$line" ] && report_line "$pending$line"
      break
    fi
    if [ "$SECONDS" -ge "$next" ]; then
      log "[$store] $(((SECONDS - start) / 60)) min: $passed passed, $failed failed, $skipped skipped so far"
      next=$((next + 60))
    fi
  done
  log "[$store] pass done in $(((SECONDS - start) / 60)) min $(((SECONDS - start) % 60)) s: $passed passed, $failed failed, $skipped skipped"
}

# One line of report_progress's input (uses its variables).
report_line() {
  local line=$1
  printf '%s\n' "$line" >>"$logfile"
  case $line in
    "  Passed "*) passed=$((passed + 1)); block="" ;;
    "  Skipped "*) skipped=$((skipped + 1)); block="" ;;
    "  Failed "*) failed=$((failed + 1)); block=failed; shown=0; log "[$store] FAILED ${line#  Failed }" ;;
    "  Error Message:") [ "$block" = failed ] && block=message ;;
    "  Stack Trace:" | "  Standard Output Messages:" | "  Standard Error Messages:" | "  Additional Information:") [ -n "$block" ] && block=details ;;
    *"[Long Running Test]"* | *"Catastrophic failure"*) log "[$store] ${line#\[xUnit.net *\] }" ;;
    "[xUnit.net "* | "Test run for "* | "A total of "* | "No test matches the given testcase filter"* | "Results File: "* | "Test Run Successful." | "Test Run Failed." | "Total tests:"* | \
      "     Passed:"* | "     Failed:"* | "     Skipped:"* | " Total time:"* | "") ;;
    *)
      if [ "$block" = message ]; then
        # The assertion's message, capped: a long one stays in the log file.
        shown=$((shown + 1))
        [ "$shown" -le 30 ] && log "[$store]   ${line#"${line%%[! ]*}"}"
        [ "$shown" -eq 31 ] && log "[$store]   ... (the rest in $logfile)"
      elif [ -z "$block" ]; then
        log "[$store] $line"
      fi
      ;;
  esac
}

# xunit names a test that has run for two minutes (and again every two minutes): a hang shows which test it is.
# Run settings come after `--`; the caller's own, if any, already opened that list.
runsettings=(xUnit.LongRunningTestSeconds=120 xUnit.DiagnosticMessages=true)
[[ " ${args[*]} " == *" -- "* ]] || runsettings=(-- "${runsettings[@]}")

rc=0
first=1
# PARLEY_TEST_STORES narrows the passes; the first pass, whichever store it runs, also runs the store-independent tests.
stores=${PARLEY_TEST_STORES:-sqlite postgres}
[ "$clients" = only ] && stores=""
for store in $stores; do
  log "running the suite against $store"
  filter=$user_filter
  if [ "$first" -eq 0 ]; then filter="${user_filter:+($user_filter)&}Store!=Independent"; fi
  first=0
  filter_args=()
  [ -n "$filter" ] && filter_args=(--filter "$filter")
  PARLEY_TEST_STORE=$store dotnet test Parley.slnx --no-build --logger "trx;LogFilePrefix=$store" --logger "console;verbosity=normal" \
    --results-directory "$results" "${filter_args[@]}" "${args[@]}" "${runsettings[@]}" 2>&1 | report_progress "$store" "$results/$store.log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
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
if [ "$clients" != no ]; then
  log "running the TypeScript client's and the web app's suites"
  run_client_suites "$results" || rc=1
  log ".NET: $passed passed, $failed failed, $skipped skipped; TypeScript and browser: $clients_passed passed, $clients_failed failed, $clients_skipped skipped"
  passed=$((passed + clients_passed)); failed=$((failed + clients_failed)); skipped=$((skipped + clients_skipped))
fi
echo "$passed passed, $failed failed, $skipped skipped"
exit $rc
