# The TypeScript client's and the web app's suites (sourced by test.sh): installs the npm packages from the
# committed lock, type-checks and builds @parley/client, checks that the committed app bundle is what the sources
# build, then runs the package's unit tests, its integration tests against a real Parley and the app's browser
# tests in Debian's Chromium (installed when missing), one suite at a time.
# After run_client_suites: clients_passed, clients_failed, clients_skipped hold the counts of the three suites.

clients_log() { echo "test.sh: [clients] $*" >&2; }

# Installs Debian's chromium package when /usr/bin/chromium (or $PARLEY_CHROMIUM) is missing.
ensure_chromium() {
  local chromium=${PARLEY_CHROMIUM:-/usr/bin/chromium}
  [ -x "$chromium" ] && return 0
  clients_log "installing Chromium (Debian package)"
  local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  local attempt
  for attempt in 1 2; do
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null && break
    [ "$attempt" -eq 2 ] && { clients_log "could not install chromium"; return 1; }
    sleep 3
  done
  [ -x "$chromium" ]
}

# run_step NAME LOGFILE COMMAND...: runs a step with its output in LOGFILE; on failure shows the log's end.
run_step() {
  local name=$1 logfile=$2 start=$SECONDS
  shift 2
  if "$@" >"$logfile" 2>&1; then
    clients_log "$name: ok ($((SECONDS - start)) s)"
    return 0
  fi
  clients_log "$name: FAILED ($((SECONDS - start)) s); the end of $logfile:"
  tail -n 40 "$logfile" | sed 's/^/test.sh: [clients]   /' >&2
  return 1
}

# run_suite NAME RESULTS WORKSPACE VITEST-ARGS...: one Vitest suite, with its counts and failing tests from the JSON report.
run_suite() {
  local name=$1 results=$2 workspace=$3 start=$SECONDS
  shift 3
  local json="$results/ts-$name.json" logfile="$results/ts-$name.log"
  rm -f "$json"
  (cd "$root/clients/$workspace" && npx vitest run "$@" --reporter=default --reporter=json --outputFile.json="$json") >"$logfile" 2>&1
  local rc=$?
  local counts
  if [ -f "$json" ]; then
    counts=$(node -e '
      const r = require(process.argv[1]);
      console.log(r.numPassedTests, r.numFailedTests, r.numPendingTests + r.numTodoTests);
      for (const file of r.testResults)
        for (const t of file.assertionResults.filter((a) => a.status === "failed"))
          console.error(`FAILED ${t.fullName}: ${(t.failureMessages[0] || "").split("\n")[0]}`);' "$json" 2> >(sed "s/^/test.sh: [clients] [$name] /" >&2))
  else
    counts="0 1 0"
  fi
  read -r p f s <<<"$counts"
  # A suite that failed without a failing test (a crashed set-up) counts as one failure.
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1
    clients_log "[$name] the suite failed outside its tests; the end of $logfile:"
    tail -n 40 "$logfile" | sed 's/^/test.sh: [clients]   /' >&2
  fi
  clients_passed=$((clients_passed + p)); clients_failed=$((clients_failed + f)); clients_skipped=$((clients_skipped + s))
  clients_log "$name: $p passed, $f failed, $s skipped ($((SECONDS - start)) s)"
  [ "$rc" -eq 0 ]
}

# run_client_suites RESULTS: every step and suite; returns non-zero when any failed (and goes on after a failure
# where the next suites can still run).
run_client_suites() {
  local results=$1 rc=0
  clients_passed=0; clients_failed=0; clients_skipped=0
  if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
    clients_log "Node.js 20.19+ and npm are needed for the TypeScript client's and the web app's tests"
    clients_failed=1
    return 1
  fi
  clients_log "Node $(node --version), npm $(npm --version)"
  run_step "npm ci" "$results/ts-npm-ci.log" bash -c "cd '$root/clients' && npm ci --no-audit --no-fund" || { clients_failed=1; return 1; }
  run_step "type-check and build @parley/client" "$results/ts-build.log" \
    bash -c "cd '$root/clients/typescript' && npx tsc -p tsconfig.json && npx tsc -p tsconfig.build.json && cd ../web && npx tsc -p tsconfig.json" || { clients_failed=$((clients_failed + 1)); rc=1; }
  run_step "committed app bundle is fresh" "$results/ts-bundle.log" bash -c "cd '$root/clients/web' && node scripts/check-bundle.mjs" \
    || { clients_failed=$((clients_failed + 1)); rc=1; }
  run_suite unit "$results" typescript --project unit || rc=1
  run_suite integration "$results" typescript --project integration || rc=1
  if ensure_chromium; then
    run_suite browser "$results" web || rc=1
  else
    clients_failed=$((clients_failed + 1)); rc=1
  fi
  return $rc
}
